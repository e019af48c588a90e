"""Training step time on this machine: U2-Netp at 288x288, batch 4 (the upstream crop size).

One step is what `Trainer` does per iteration, minus data loading: forward to the seven logits,
the seven-term BCE, backward and an Adam update. Timed after warm-up steps (oneDNN builds its
kernels on the first steps), per thread count and precision (fp32, and bf16 autocast on CPU).
The data pipeline is timed separately, per sample, for both resize modes, to show whether loader
workers can keep up. Results go to benchmarks/results/train_step.{json,md}.

    python benchmarks/train_step.py                       # u2netp, 288, batch 4, threads 1 and all
    python benchmarks/train_step.py --arch u2net --threads 8 --precision fp32 bf16
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine_info  # noqa: E402

from u2deploy.model import create_model  # noqa: E402
from u2deploy.spec import spec_for_task  # noqa: E402
from u2deploy.train.data import TrainTransform, read_image  # noqa: E402
from u2deploy.train.loss import multi_bce_loss  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def time_steps(arch: str, size: int, batch: int, threads: int, precision: str, warmup: int, steps: int) -> dict:
    """Median/min/mean seconds per optimizer step on random data (the step does not depend on values)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_model(arch).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0)
    images = torch.randn(batch, 3, size, size)
    labels = (torch.rand(batch, 1, size, size) > 0.5).float()
    times = []
    for index in range(warmup + steps):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = model.forward_logits(images)
        loss = multi_bce_loss(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.total.backward()
        optimizer.step()
        if index >= warmup:
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {"arch": arch, "size": size, "batch": batch, "threads": threads, "precision": precision,
            "steps": steps, "median_s": median, "min_s": min(times), "mean_s": statistics.fmean(times),
            "img_per_s": batch / median, "loss_finite": bool(torch.isfinite(loss.total))}  # fmt: skip


def time_data_pipeline(repeat: int = 20) -> list[dict]:
    """Per-sample cost of RescaleT(320) + RandomCrop(288) + ToTensorLab on a 400x300 JPEG (DUTS-sized)."""
    import tempfile

    from PIL import Image

    from u2deploy.train.synth import make_sample

    image, mask = make_sample(0, 0, (300, 400))
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.jpg"
        Image.fromarray(image).save(path, quality=95)
        for resize in ("reference", "fast"):
            transform = TrainTransform(spec_for_task("sod"), crop=(288, 288), resize=resize)
            rng = np.random.default_rng(0)
            start = time.perf_counter()
            for _ in range(repeat):
                transform(read_image(path), mask.astype(np.float64), rng)
            rows.append({"resize": resize, "ms_per_sample": (time.perf_counter() - start) / repeat * 1e3})
    return rows


def write_results(results: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "train_step.json").write_text(json.dumps(results, indent=2) + "\n")
    machine = results["machine"]
    lines = ["# Training step time", "",
             f"{machine.get('cpu')}, {machine['cores']} cores, torch {machine['packages'].get('torch')}, "
             f"load average {results['load_average_before']} before / {results['load_average_after']} after "
             "(1, 5, 15 min; the benchmark itself adds about 1-2).", "",
             "| model | input | batch | threads | precision | median s/step | min s/step | img/s |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for row in results["steps"]:
        lines.append(f"| {row['arch']} | {row['size']}x{row['size']} | {row['batch']} | {row['threads']} | "
                     f"{row['precision']} | {row['median_s']:.2f} | {row['min_s']:.2f} | {row['img_per_s']:.2f} |")
    lines += ["", "Data pipeline per sample (400x300 JPEG -> 320 -> crop 288, one process):", "",
              "| resize | ms/sample |", "|---|---|"]  # fmt: skip
    lines += [f"| {row['resize']} | {row['ms_per_sample']:.1f} |" for row in results["data_pipeline"]]
    lines += ["", *results["notes"], ""]
    (RESULTS / "train_step.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="u2netp")
    parser.add_argument("--size", type=int, default=288)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, nargs="+", default=sorted({1, os.cpu_count() or 1}))
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=("fp32", "bf16"))
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--note", action="append", default=[], help="a line for the notes section")
    args = parser.parse_args()
    load_before = [round(x, 2) for x in os.getloadavg()]
    rows = []
    for precision in args.precision:
        for threads in args.threads:
            row = time_steps(args.arch, args.size, args.batch, threads, precision, args.warmup, args.steps)
            print(json.dumps(row), flush=True)
            rows.append(row)
    results = {"machine": machine_info(), "load_average_before": load_before, "steps": rows,
               "data_pipeline": time_data_pipeline(), "load_average_after": [round(x, 2) for x in os.getloadavg()],
               "notes": args.note}  # fmt: skip
    write_results(results)
    print((RESULTS / "train_step.md").read_text())


if __name__ == "__main__":
    main()

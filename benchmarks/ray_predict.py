"""Bulk predict throughput: local `predict` vs `predict --ray` with 1 and 2 actors, in one run.

  python benchmarks/ray_predict.py                         # seeded u2netp ONNX, 320x320, 48 images
  python benchmarks/ray_predict.py --images 200 --repeats 3 --arch u2net_test

Every mode runs the whole job as a user would (load the model, read the files, write the masks),
on the same ONNX file (dynamic batch) and the same JPEGs, one inference thread per model copy so
that actors do not fight over cores: ``local-1t`` is `u2deploy predict` in this process,
``ray-1`` and ``ray-2`` are `ray_predict` with 1 and 2 actors on a local Ray
(`ray.init(num_cpus=CPUS)`, started once, its start-up time reported apart). ``local`` (default
threads) is listed for reference. Modes alternate, `--repeats` times each, and medians are
compared, because on a shared machine the load changes from one second to the next.

Results go to benchmarks/results/ray_predict.json and .md with the machine and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine_info  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
MODES = ("local", "local-1t", "ray-1", "ray-2")


def make_images(folder: Path, count: int) -> Path:
    """Textured 640x480 JPEGs with a bright disc: decoding and resizing cost what photos cost."""
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:480, :640]
    for i in range(count):
        frame = np.roll(texture, 7 * i, axis=1) // 2
        disc = (yy - 240) ** 2 + (xx - 160 - 3 * i % 320) ** 2 < 90**2
        frame[disc] = (40, 200, 240)
        Image.fromarray(frame).save(folder / f"img_{i:04d}.jpg", quality=90)
    return folder


def seeded_onnx(arch: str, size: int, folder: Path) -> Path:
    """Random weights (speed does not depend on them), exported once with a dynamic batch."""
    import torch

    from u2deploy.export import export
    from u2deploy.model import create_model, save_checkpoint
    from u2deploy.spec import spec_for_task

    torch.manual_seed(0)
    checkpoint = save_checkpoint(create_model(arch).eval(), folder / f"{arch}.pth", spec_for_task("sod", arch=arch),
                                 {"source": "seeded random weights (benchmark)"})  # fmt: skip
    return export(checkpoint, f"{folder}/", fmt="onnx", input_size=(size, size), dynamic=("batch",),
                  verify=False, progress=False).path  # fmt: skip


def run_mode(mode: str, model: Path, images: Path, out: Path, batch: int) -> float:
    """Images per second of the whole job."""
    from u2deploy.cli import main
    from u2deploy.scale import ray_predict

    count = len(list(images.iterdir()))
    start = time.perf_counter()
    if mode.startswith("local"):
        threads = ["--threads", "1"] if mode == "local-1t" else []
        code = main(["predict", str(model), str(images), "-o", str(out), "--batch", str(batch), *threads])
        assert code == 0
    else:
        result = ray_predict(model, [str(images)], out, concurrency=int(mode[-1]), batch_size=batch, threads=1,
                             num_cpus=1)  # fmt: skip
        assert result.written == count
    return count / (time.perf_counter() - start)


def measure(args: argparse.Namespace, work: Path) -> dict:
    import ray

    model = Path(args.model) if args.model else seeded_onnx(args.arch, args.size, work)
    images = make_images(work / "images", args.images)
    os.environ["TQDM_DISABLE"] = "1"
    start = time.perf_counter()
    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - start
    ray.data.DataContext.get_current().enable_progress_bars = False
    load_before = os.getloadavg()
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    try:
        for repeat in range(args.repeats):  # alternate so a load spike hits every mode
            for mode in MODES:
                rates[mode].append(run_mode(mode, model, images, work / f"out_{mode}_{repeat}", args.batch))
                print(f"{mode}: {rates[mode][-1]:.2f} images/s", file=sys.stderr)
    finally:
        ray.shutdown()
    median = {mode: statistics.median(values) for mode, values in rates.items()}
    return {"machine": machine_info(), "load_average_before": load_before, "load_average_after": os.getloadavg(),
            "model": str(args.model or f"{args.arch} {args.size}x{args.size} ONNX (seeded random weights)"),
            "images": args.images, "batch": args.batch, "ray_cpus": args.cpus, "ray_start_s": ray_start,
            "images_per_s": rates, "images_per_s_median": median,
            "ray2_vs_ray1": median["ray-2"] / median["ray-1"], "ray1_vs_local_1t": median["ray-1"] / median["local-1t"],
            "ray2_vs_local": median["ray-2"] / median["local"]}  # fmt: skip


def markdown(result: dict) -> str:
    m = result["machine"]
    rows = {"local": "`u2deploy predict` (default threads)", "local-1t": "`u2deploy predict --threads 1`",
            "ray-1": "`predict --ray`, 1 actor, 1 thread", "ray-2": "`predict --ray --ray-actors 2`, 1 thread each"}
    return "\n".join([
        f"# Bulk predict: local vs Ray Data ({time.strftime('%Y-%m-%d')})",
        "",
        f"- Machine: {m.get('cpu')}, {m['cores']} cores, {m['platform']}; Python {m['python']}",
        f"- **Shared machine**: other engineers' jobs ran beside this one; load average before/after "
        f"{result['load_average_before'][0]:.2f} / {result['load_average_after'][0]:.2f} (1 min). Compare the rows "
        "as ratios within this run, not with other runs.",
        f"- Model: {result['model']}; {result['images']} JPEGs 640x480; batch {result['batch']}; masks written as PNG",
        f"- Ray: local cluster `ray.init(num_cpus={result['ray_cpus']})`, started once in "
        f"{result['ray_start_s']:.1f} s (not counted); each Ray job includes actor start-up and model load",
        "",
        "| mode | images/s (median) | repeats |",
        "|---|---|---|",
        *(f"| {rows[mode]} | {result['images_per_s_median'][mode]:.2f} | {', '.join(f'{v:.2f}' for v in values)} |"
          for mode, values in result["images_per_s"].items()),
        "",
        f"- Ray 2 actors vs 1: **{result['ray2_vs_ray1']:.2f}x**; Ray 1 actor vs local with one thread: "
        f"{result['ray1_vs_local_1t']:.2f}x; Ray 2 actors vs local (default threads): {result['ray2_vs_local']:.2f}x",
        "",
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="an artifact with a dynamic batch (default: seeded --arch)")
    parser.add_argument("--arch", default="u2netp")
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        result = measure(args, Path(folder))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ray_predict.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "ray_predict.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()

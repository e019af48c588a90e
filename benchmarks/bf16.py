"""OpenVINO bf16 on the pretrained U2-Net: f32 vs plain bf16 vs the bf16 IR (large-bias convs kept f32).

Three configurations in one run, on the same photos and input tensors, interleaved so machine
load hits them alike:

* `f32`: the fp32 IR as `Runtime` runs it by default (f32, ACCURACY: what its gate verified);
* `bf16 plain`: the same IR forced to bf16 (`inference_precision="bf16"`): OpenVINO's default on
  CPUs with AVX512_BF16/AMX before u2deploy recorded settings;
* `bf16 mixed`: `u2deploy export --fmt openvino --bf16`, the four convs with huge biases kept f32.

Prints and records (benchmarks/results/bf16.{json,md}) mask IoU at 0.5 and max |diff| per photo
against PyTorch FP32, and the median latency of each. Needs a CPU with bf16; elsewhere it says so
and records nothing.

    python benchmarks/bf16.py [--repeat 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine_info  # noqa: E402

from u2deploy import Runtime, weights  # noqa: E402
from u2deploy.compare import mask_iou  # noqa: E402
from u2deploy.export import export  # noqa: E402
from u2deploy.export.verify import reference_inputs, torch_reference  # noqa: E402
from u2deploy.model import load_checkpoint  # noqa: E402
from u2deploy.runtimes.ov import cpu_bf16_reason  # noqa: E402

RESULTS = Path(__file__).parent / "results"
CONFIGS = {"f32": ("fp32", {}), "bf16 plain": ("fp32", {"inference_precision": "bf16", "execution_mode": "performance"}),
           "bf16 mixed": ("bf16", {})}  # fmt: skip


def _latency(runtime: Runtime, batch, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        runtime.infer(batch)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20, help="timed runs per configuration (default 20)")
    args = parser.parse_args()
    if reason := cpu_bf16_reason():
        print(f"bf16 benchmark not run: {reason}")
        return 1
    checkpoint = weights.resolve_weights("u2net", progress=False)
    loaded = load_checkpoint(checkpoint)
    names, batch = reference_inputs(loaded.spec)
    reference = next(iter(torch_reference(loaded.model, batch, "fused").values()))
    with tempfile.TemporaryDirectory() as folder:
        irs = {precision: export(checkpoint, f"{folder}/", fmt="openvino", precision=precision, verify=False,
                                 progress=False).path for precision in ("fp32", "bf16")}  # fmt: skip
        runtimes = {label: Runtime(irs[precision], **options) for label, (precision, options) in CONFIGS.items()}
        rows, times = [], {label: [] for label in CONFIGS}
        for label, runtime in runtimes.items():
            maps = runtime.infer(batch)
            for i, name in enumerate(names):
                rows.append({"config": label, "photo": name, "iou": mask_iou(reference[i, 0], maps[i, 0]),
                             "max_abs": float(abs(reference[i, 0] - maps[i, 0]).max()),
                             "engine": runtime.describe()["inference_precision"]})  # fmt: skip
        single = batch[:1]
        for _ in range(args.repeat):  # interleaved: one run of each per round
            for label, runtime in runtimes.items():
                times[label] += _latency(runtime, single, 1)
        for runtime in runtimes.values():
            runtime.close()
    medians = {label: statistics.median(values) for label, values in times.items()}
    _record(rows, medians, args.repeat)
    return 0


def _record(rows: list[dict], medians: dict[str, float], repeat: int) -> None:
    speedup = {label: medians["f32"] / ms for label, ms in medians.items()}
    kept = (speedup["bf16 mixed"] - 1) / (speedup["bf16 plain"] - 1) if speedup["bf16 plain"] > 1 else None
    result = {"machine": machine_info(), "repeat": repeat, "rows": rows, "median_ms": medians, "speedup": speedup,
              "share_of_plain_bf16_speedup": kept}  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bf16.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["| config | photo | engine | IoU@0.5 vs PyTorch | max abs |", "|---|---|---|---|---|"]
    lines += [f"| {r['config']} | {r['photo']} | {r['engine']} | {r['iou']:.4f} | {r['max_abs']:.4f} |" for r in rows]
    lines += ["", "| config | median ms (1x3x320x320) | speed-up vs f32 |", "|---|---|---|"]
    lines += [f"| {label} | {ms:.1f} | {speedup[label]:.2f}x |" for label, ms in medians.items()]
    if kept is not None:
        lines += ["", f"bf16 mixed keeps {kept:.0%} of plain bf16's speed-up."]
    text = "\n".join(lines)
    machine = result["machine"]
    (RESULTS / "bf16.md").write_text(f"Machine: {machine.get('cpu')}, {machine['cores']} cores, load average at the end "
                                     f"{machine.get('load_average')} (timings from one interleaved run)\n\n" + text + "\n")
    print(text)


if __name__ == "__main__":
    raise SystemExit(main())

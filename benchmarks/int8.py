"""INT8 against FP32 on this CPU: latency of ONNX Runtime and OpenVINO, and the INT8 quality gate.

    python benchmarks/int8.py [--runs 20] [--calib DIR --calib-count N] [--method mse]

One process, pretrained U2-Net at 320x320, batch 1. The four artifacts are made by `u2deploy.export`
itself, so each INT8 one has passed (or failed, which is recorded) the same gate as `u2deploy
export --int8`: the TensorRT-form Q/DQ ONNX is judged on ONNX Runtime with graph optimisation off
(Q/DQ computed literally), the NNCF IR on OpenVINO. Latency is then measured with the variants
interleaved, one call each per round, so load on a shared machine hits them alike. Calibration
defaults to the bundled stand-in photos (`calibration.source.sample_calibration_names()`);
calibrated models are cached, so a second run skips the minute of calibration per format.
Writes benchmarks/results/int8.json and int8.md.
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
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
#: label -> (artifact key, Runtime options, the FP32 label it is compared with). OpenVINO's FP32 IR
#: runs in bf16 by default on CPUs with AMX/AVX512-BF16, so true FP32 asks for f32 explicitly.
VARIANTS = {
    "ONNX Runtime FP32": ("onnx_fp32", {"device": "cpu"}, "ONNX Runtime FP32"),
    "ONNX Runtime INT8 (Q/DQ ONNX, default session)": ("onnx_int8", {"device": "cpu"}, "ONNX Runtime FP32"),
    "OpenVINO FP32 IR, f32": ("openvino_fp32", {"hint": "latency", "inference_precision": "f32"},
                              "OpenVINO FP32 IR, f32"),
    "OpenVINO FP32 IR, default precision": ("openvino_fp32", {"hint": "latency"}, "OpenVINO FP32 IR, f32"),
    "OpenVINO INT8 IR (NNCF)": ("openvino_int8", {"hint": "latency"}, "OpenVINO FP32 IR, f32"),
    "OpenVINO reading the Q/DQ ONNX": ("onnx_int8", {"backend": "openvino", "hint": "latency"},
                                       "OpenVINO FP32 IR, f32"),
}


def _export(folder: Path, fmt: str, precision: str, calibration: Any) -> dict[str, Any]:
    """Export through u2deploy with the parity gate on; a failed gate is kept as a result."""
    from u2deploy.errors import ParityError
    from u2deploy.export import export

    start = time.perf_counter()
    fields = {"calibration": calibration} if precision == "int8" else {}
    try:
        result = export("u2net", f"{folder}/", fmt=fmt, precision=precision, progress=True, **fields)
    except ParityError as exc:  # record it, then judge the artifact anyway without writing it twice
        result = export("u2net", f"{folder}/", fmt=fmt, precision=precision, verify=False, progress=True, **fields)
        return {"path": result.path, "gate": {"passed": False, "error": str(exc)},
                "seconds": round(time.perf_counter() - start, 1), "manifest": result.manifest}
    return {"path": result.path, "gate": result.parity.to_dict(), "seconds": round(time.perf_counter() - start, 1),
            "manifest": result.manifest}


def _ort_optimised_quality(path: Path) -> dict[str, Any]:
    """The Q/DQ ONNX as ONNX Runtime runs it by default on this CPU (its int8 kernels), vs PyTorch FP32."""
    from u2deploy.compare import parity_report
    from u2deploy.export.verify import reference_inputs, torch_reference
    from u2deploy.model import load_checkpoint
    from u2deploy.runtimes.runtime import Runtime

    loaded = load_checkpoint("u2net")
    names, batch = reference_inputs(loaded.spec)
    reference = torch_reference(loaded.model, batch, "fused")
    with Runtime(path, device="cpu") as runtime:
        candidate = {"mask": runtime.infer(batch)}
    return parity_report(reference, candidate, names, "int8").to_dict()


def _latency(paths: dict[str, Path], runs: int, warmup: int = 3) -> dict[str, dict[str, float]]:
    """Median/mean/p90 ms per variant, rounds interleaved: every round times each variant once."""
    from u2deploy.runtimes.runtime import Runtime

    batch = np.random.default_rng(0).normal(size=(1, 3, 320, 320)).astype(np.float32)
    runtimes = {label: Runtime(paths[key], **opts) for label, (key, opts, _) in VARIANTS.items()}
    times: dict[str, list[float]] = {label: [] for label in runtimes}
    try:
        for round_index in range(warmup + runs):
            for label, runtime in runtimes.items():
                start = time.perf_counter()
                runtime.infer(batch)
                if round_index >= warmup:
                    times[label].append((time.perf_counter() - start) * 1000)
            print(f"round {round_index + 1}/{warmup + runs}", file=sys.stderr, flush=True)
    finally:
        for runtime in runtimes.values():
            runtime.close()
    return {label: {"median_ms": round(statistics.median(t), 1), "mean_ms": round(statistics.fmean(t), 1),
                    "p90_ms": round(float(np.percentile(t, 90)), 1), "min_ms": round(min(t), 1), "runs": len(t)}
            for label, t in times.items()}  # fmt: skip


def _gate_row(gate: dict[str, Any]) -> dict[str, Any]:
    if "images" not in gate:
        return {"passed": False, "error": gate.get("error")}
    images = gate["images"]
    return {"passed": gate["passed"], "mean_iou": round(gate["summary"]["mean_iou"], 4),
            "iou": {r["image"]: round(r["iou"], 4) for r in images},
            "map_mae": {r["image"]: round(r["map_mae"], 4) for r in images},
            "max_fbeta": {r["image"]: round(r["max_fbeta"], 4) for r in images},
            "max_fbeta_torch": {r["image"]: round(r["max_fbeta_reference"], 4) for r in images},
            "failures": gate.get("failures", [])}  # fmt: skip


def _ov_quality(path: Path) -> dict[str, Any]:
    """The Q/DQ ONNX run by OpenVINO (f32 for the float parts), vs PyTorch FP32."""
    from u2deploy.compare import parity_report
    from u2deploy.export.verify import reference_inputs, torch_reference
    from u2deploy.model import load_checkpoint
    from u2deploy.runtimes.runtime import Runtime

    loaded = load_checkpoint("u2net")
    names, batch = reference_inputs(loaded.spec)
    reference = torch_reference(loaded.model, batch, "fused")
    with Runtime(path, backend="openvino", inference_precision="f32", execution_mode="accuracy") as runtime:
        candidate = {"mask": runtime.infer(batch)}
    return parity_report(reference, candidate, names, "int8").to_dict()


def _markdown(result: dict[str, Any]) -> str:
    lat, quality, machine = result["latency"], result["quality"], result["machine"]
    lines = ["# INT8 vs FP32 on this CPU (pretrained U2-Net, 320x320, batch 1)", "",
             f"Recorded {result['time']} by `python benchmarks/int8.py`; machine: {machine.get('cpu')}, "
             f"{machine.get('cores')} cores, flags {', '.join(machine.get('cpu_flags', []))}; load average "
             f"before/after: {result['load_before']} / {result['load_after']} (1, 5, 15 min). Calibration: "
             f"{result['calibration']['count']} images ({result['calibration']['source']}), method "
             f"{result['method']}. Variants interleaved, {next(iter(lat.values()))['runs']} rounds.", "",
             "| variant | median ms | p90 ms | speed vs its FP32 |", "|---|---|---|---|"]
    for label, row in lat.items():
        base = lat[VARIANTS[label][2]]["median_ms"]
        lines.append(f"| {label} | {row['median_ms']} | {row['p90_ms']} | {base / row['median_ms']:.2f}x |")
    lines += ["", "\"default precision\" is what OpenVINO picks for an FP32 IR on this CPU: bf16 where the CPU has "
              "AMX or AVX512-BF16, f32 elsewhere. Each INT8 variant is compared with true f32 FP32; OpenVINO INT8 "
              f"against the default-precision FP32 IR: {result['speedup']['openvino_int8_vs_fp32_default']:.2f}x."]
    lines += ["", "Quality against PyTorch FP32 on the five held-out photos (IoU at 0.5 after min-max; map MAE = "
              "mean |int8 - fp32| after min-max). Gate: mean IoU >= 0.95 and map MAE <= 0.02 on every photo.", "",
              "| artifact, judged on | gate | mean IoU | IoU per photo | map MAE per photo | max F-beta per photo |",
              "|---|---|---|---|---|---|"]
    for label, row in quality.items():
        if "iou" not in row:
            lines.append(f"| {label} | failed | | | {row.get('error')} | |")
            continue
        ious, maes, fbetas = (" ".join(f"{v:.{digits}f}" for v in row[key].values())
                              for key, digits in (("iou", 3), ("map_mae", 4), ("max_fbeta", 3)))  # fmt: skip
        lines.append(f"| {label} | {'pass' if row['passed'] else 'FAIL'} | {row['mean_iou']:.4f} | {ious} | {maes} "
                     f"| {fbetas} |")
    torch_fbeta = " ".join(f"{v:.3f}" for v in next(iter(quality.values()))["max_fbeta_torch"].values())
    lines += ["", f"Max F-beta of the FP32 map itself against its own 0.5 mask: {torch_fbeta}."]
    lines += ["", f"Photos in order: {', '.join(next(iter(quality.values())).get('iou', {}))}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="timed rounds (each times every variant once)")
    parser.add_argument("--calib", default=None, help="calibration images (default: the bundled stand-ins)")
    parser.add_argument("--calib-count", type=int, default=None, help="default: every image of --calib")
    parser.add_argument("--method", default=None, help="--calib-method for both INT8 artifacts (default: u2deploy's)")
    parser.add_argument("--out", default=str(RESULTS), help="folder for int8.json and int8.md")
    args = parser.parse_args(argv)

    from u2deploy.calibration.source import select_images, write_sample_images
    from u2deploy.export import CalibrationOptions
    from u2deploy.weights import cache_dir

    calib = args.calib or str(write_sample_images(cache_dir() / "calibration" / "samples"))
    count = args.calib_count or select_images(calib, 8).found
    calibration = CalibrationOptions(calib, count=count, **({"method": args.method} if args.method else {}))
    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory() as folder:
        made = {f"{fmt}_{precision}": _export(Path(folder), fmt, precision, calibration)
                for fmt in ("onnx", "openvino") for precision in ("fp32", "int8")}  # fmt: skip
        quality = {
            "Q/DQ ONNX (TensorRT form), ONNX Runtime graph optimisation off = exact INT8 math":
                _gate_row(made["onnx_int8"]["gate"]),
            "Q/DQ ONNX, ONNX Runtime default (its CPU int8 kernels)":
                _gate_row(_ort_optimised_quality(made["onnx_int8"]["path"])),
            "NNCF INT8 IR, OpenVINO CPU": _gate_row(made["openvino_int8"]["gate"]),
            "Q/DQ ONNX read by OpenVINO (correct on this CPU; wrong on AVX2-only CPUs, BASELINES.md)":
                _gate_row(_ov_quality(made["onnx_int8"]["path"])),
        }  # fmt: skip
        latency = _latency({key: made[key]["path"] for key in made}, args.runs)
    int8 = latency["OpenVINO INT8 IR (NNCF)"]["median_ms"]
    ov = latency["OpenVINO FP32 IR, f32"]["median_ms"] / int8
    ov_default = latency["OpenVINO FP32 IR, default precision"]["median_ms"] / int8
    ort_int8 = latency["ONNX Runtime INT8 (Q/DQ ONNX, default session)"]["median_ms"]
    ort = latency["ONNX Runtime FP32"]["median_ms"] / ort_int8
    result = {"time": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine_info(),
              "load_before": load_before, "load_after": [round(x, 2) for x in os.getloadavg()],
              "method": calibration.method, "calibration": made["openvino_int8"]["manifest"]["calibration"],
              "export_seconds": {key: made[key]["seconds"] for key in made}, "latency": latency,
              "speedup": {"openvino_int8_vs_fp32_f32": round(ov, 2),
                          "openvino_int8_vs_fp32_default": round(ov_default, 2),
                          "onnxruntime_int8_vs_fp32": round(ort, 2)},
              "target": {"openvino_int8_vs_fp32": 1.8, "met": min(ov, ov_default) >= 1.8
                         and quality["NNCF INT8 IR, OpenVINO CPU"].get("passed", False)},
              "quality": quality}  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "int8.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "int8.md").write_text(_markdown(result))
    print(_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""INT8 against FP32 on this CPU: latency of ONNX Runtime and OpenVINO, and the INT8 quality gate.

    python benchmarks/int8.py [--runs 20] [--calib DIR --calib-count N] [--method mse]
    python benchmarks/int8.py --held-out DIR [--runs 20]    # full INT8 vs --keep-float auto, 8 photos

One process, pretrained U2-Net at 320x320, batch 1. The four artifacts are made by `u2deploy.export`
itself, so each INT8 one has passed (or failed, which is recorded) the same gate as `u2deploy
export --int8`: the TensorRT-form Q/DQ ONNX is judged on ONNX Runtime with graph optimisation off
(Q/DQ computed literally), the NNCF IR on OpenVINO. Latency is then measured with the variants
interleaved, one call each per round, so load on a shared machine hits them alike. Calibration
defaults to the bundled stand-in photos (`calibration.source.sample_calibration_names()`);
calibrated models are cached, so a second run skips the minute of calibration per format.
Writes benchmarks/results/int8.json and int8.md.

`--held-out DIR` judges artifacts made earlier in DIR (names in `HELD_OUT_ARTIFACTS`: the full-INT8
and the `--keep-float auto` Q/DQ ONNX and OpenVINO IR) on the widened held-out set
(`calibration.sensitivity.held_out_photos`: the five parity photos plus scikit-learn's china and
flower and matplotlib's grace_hopper, none of them calibration images), per photo, against PyTorch
FP32; Q/DQ graphs in exact INT8 emulation (ONNX Runtime, optimisation off), IRs on OpenVINO CPU; then
times the two OpenVINO INT8 IRs interleaved. Writes int8_held_out.{json,md}.
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


#: label -> (file in the --held-out folder, how it is run)
HELD_OUT_ARTIFACTS = {
    "Q/DQ ONNX, full INT8 (exact INT8 emulation)": ("u2net_320_int8.onnx", "emulated"),
    "Q/DQ ONNX, --keep-float auto, float part fp16 (exact INT8 emulation)": ("u2net_320_mixed.onnx", "emulated"),
    "OpenVINO INT8 IR, full INT8": ("u2net_320_int8.xml", "openvino"),
    "OpenVINO INT8 IR, --keep-float auto": ("u2net_320_int8_auto.xml", "openvino"),
}


def _held_out_maps(path: Path, kind: str, batch: np.ndarray) -> np.ndarray:
    """One map per photo: Q/DQ computed literally (ORT, optimisation off), or OpenVINO CPU in f32 for float parts."""
    from u2deploy.runtimes.runtime import Runtime

    options = ({"graph_optimization": "disable", "device": "cpu"} if kind == "emulated"
               else {"inference_precision": "f32", "execution_mode": "accuracy"})  # fmt: skip
    with Runtime(path, **options) as runtime:
        return np.concatenate([runtime.infer(batch[i:i + 1]) for i in range(len(batch))])


def _held_out(folder: Path, runs: int) -> dict[str, Any]:
    """Per-photo quality of each artifact in `folder` vs PyTorch FP32, and OpenVINO INT8 auto vs full speed."""
    from u2deploy.calibration.sensitivity import boundary_f, held_out_photos
    from u2deploy.compare import mask_iou
    from u2deploy.export.verify import torch_reference
    from u2deploy.model import load_checkpoint
    from u2deploy.processing import min_max, preprocess_batch

    loaded = load_checkpoint("u2net")
    spec = loaded.spec.replace(input_size=(320, 320))
    photos = held_out_photos()
    batch, _ = preprocess_batch(list(photos.values()), spec, mode="reference")
    reference = torch_reference(loaded.model, batch, "fused")["mask"]

    quality = {}
    for label, (name, kind) in HELD_OUT_ARTIFACTS.items():
        if not (folder / name).is_file():
            quality[label] = {"missing": name}
            continue
        maps = _held_out_maps(folder / name, kind, batch)
        pairs = [(min_max(r[0]), min_max(m[0])) for r, m in zip(reference, maps, strict=True)]
        iou = {n: round(mask_iou(r, m), 4) for n, (r, m) in zip(photos, pairs, strict=True)}
        quality[label] = {"mean_iou": round(float(np.mean(list(iou.values()))), 4), "worst_iou": min(iou.values()),
                          "worst_image": min(iou, key=iou.get), "iou": iou,
                          "boundary_f": {n: round(boundary_f(r, m), 4) for n, (r, m) in zip(photos, pairs, strict=True)},
                          "map_mae": {n: round(float(np.mean(np.abs(r - m))), 5)
                                      for n, (r, m) in zip(photos, pairs, strict=True)}}  # fmt: skip
    return {"photos": list(photos), "quality": quality, "latency": _ov_latency(folder, runs)}


def _ov_latency(folder: Path, runs: int, warmup: int = 3) -> dict[str, Any]:
    """OpenVINO INT8 IR with --keep-float auto against the full-INT8 IR, interleaved rounds (median ms)."""
    from u2deploy.runtimes.runtime import Runtime

    names = {"full INT8": "u2net_320_int8.xml", "keep-float auto": "u2net_320_int8_auto.xml"}
    if not all((folder / n).is_file() for n in names.values()):
        return {}
    batch = np.random.default_rng(0).normal(size=(1, 3, 320, 320)).astype(np.float32)
    runtimes = {label: Runtime(folder / name, hint="latency") for label, name in names.items()}
    times: dict[str, list[float]] = {label: [] for label in runtimes}
    for index in range(warmup + runs):
        for label, runtime in runtimes.items():
            start = time.perf_counter()
            runtime.infer(batch)
            if index >= warmup:
                times[label].append((time.perf_counter() - start) * 1000)
    for runtime in runtimes.values():
        runtime.close()
    medians = {label: round(statistics.median(t), 1) for label, t in times.items()}
    return {"median_ms": medians, "runs": runs,
            "auto_vs_full_speed": round(medians["full INT8"] / medians["keep-float auto"], 3)}


def _held_out_markdown(result: dict[str, Any]) -> str:
    lines = [f"# INT8 on {len(result['photos'])} held-out photos: full INT8 vs --keep-float auto", "",
             f"Recorded {result['time']} by `python benchmarks/int8.py --held-out DIR`; load average before/after "
             f"{result['load_before']} / {result['load_after']} (a 2-core machine shared with other jobs: timings "
             "are ratios within one interleaved run). Against PyTorch FP32, IoU at 0.5 after min-max. Goal: mean "
             ">= 0.985, worst >= 0.95.", "",
             "| artifact | mean IoU | worst | " + " | ".join(result["photos"]) + " |",
             "|---|---|---|" + "---|" * len(result["photos"])]
    for label, row in result["quality"].items():
        if "iou" not in row:
            lines.append(f"| {label} | not made ({row['missing']}) | | " + " | " * len(result["photos"]))
            continue
        cells = " | ".join(f"{row['iou'][p]:.3f}" for p in result["photos"])
        lines.append(f"| {label} | {row['mean_iou']:.4f} | {row['worst_iou']:.3f} ({row['worst_image']}) | {cells} |")
    latency = result["latency"]
    if latency:
        lines += ["", f"OpenVINO CPU, median of {latency['runs']} interleaved rounds: full INT8 "
                      f"{latency['median_ms']['full INT8']} ms, keep-float auto {latency['median_ms']['keep-float auto']} "
                      f"ms (auto runs at {latency['auto_vs_full_speed']:.2f}x the full-INT8 speed; goal >= 0.85x)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="timed rounds (each times every variant once)")
    parser.add_argument("--calib", default=None, help="calibration images (default: the bundled stand-ins)")
    parser.add_argument("--calib-count", type=int, default=None, help="default: every image of --calib")
    parser.add_argument("--method", default=None, help="--calib-method for both INT8 artifacts (default: u2deploy's)")
    parser.add_argument("--out", default=str(RESULTS), help="folder for int8.json and int8.md")
    parser.add_argument("--held-out", default=None, metavar="DIR",
                        help="judge the artifacts of DIR (HELD_OUT_ARTIFACTS) on the widened held-out set instead")
    args = parser.parse_args(argv)
    if args.held_out:
        return _main_held_out(Path(args.held_out), args.runs, Path(args.out))

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


def _main_held_out(folder: Path, runs: int, out: Path) -> int:
    load_before = [round(x, 2) for x in os.getloadavg()]
    result = {"time": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine_info(),
              "load_before": load_before, **_held_out(folder, runs),
              "load_after": [round(x, 2) for x in os.getloadavg()]}
    manifests = {name: folder / f"{name}.json" for name, _ in HELD_OUT_ARTIFACTS.values()}
    result["manifests"] = {name: json.loads(path.read_text()) for name, path in manifests.items() if path.is_file()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "int8_held_out.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "int8_held_out.md").write_text(_held_out_markdown(result))
    print(_held_out_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

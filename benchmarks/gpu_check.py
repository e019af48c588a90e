#!/usr/bin/env python
"""Check u2deploy's TensorRT support on your NVIDIA GPU or Jetson: build, parity, speed, a report.

Our machines and CI have no GPU, so this script is how TensorRT support gets verified. It makes
the checks the CPU tests make with a fake TensorRT, on real hardware:

1. the `u2deploy doctor` facts (versions, GPU, driver, JetPack) open the report;
2. each precision (fp32, fp16, int8) is exported with `--fmt trt`: the export's own parity gate
   (against PyTorch FP32 on CPU), the layer-precision check and the manifest;
3. each engine is compared with PyTorch FP32 on CUDA (TF32 off) on the five parity photos, with the
   tolerances of `u2deploy.compare.TOLERANCES`;
4. timing: median / p90 / p99 latency of `Runtime.infer` after a warm-up, with and without CUDA-graph
   replay, next to PyTorch CUDA fp32 and fp16;
5. a dynamic-batch engine (`--dynamic 1:2:4`) runs batches 1, 3, 4 and 5 (as 4 + 1);
6. the engine's manifest matches this host, and a copy claiming another TensorRT is refused;
7. with `--dla-core N` (Jetson AGX Orin / Xavier), an fp16 DLA engine with its GPU-fallback report.

Writes gpu_check_<host>.json and .md into --out, prints a summary, and exits 1 if a check failed.

    python benchmarks/gpu_check.py --model u2netp                  # 4.7 MB weights, a few minutes
    python benchmarks/gpu_check.py --model u2net --calib photos/   # the full model, INT8 included
    python benchmarks/gpu_check.py --model u2net --dla-core 0      # Jetson with DLA
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from u2deploy._deps import require
from u2deploy.errors import MissingDependencyError, U2DeployError, UnsupportedOptionError

RESULTS = Path(__file__).parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="u2netp", help="weights name or checkpoint (default u2netp)")
    parser.add_argument("--size", type=int, default=320, help="input size (default 320)")
    parser.add_argument("--precisions", default="fp32,fp16,int8", help="engines to build (default fp32,fp16,int8)")
    parser.add_argument("--calib", default=None, help="calibration images for int8 (folder or glob)")
    parser.add_argument("--dla-core", type=int, default=None, help="also build an fp16 engine for this DLA core")
    parser.add_argument("--iterations", type=int, default=200, help="timed runs per engine (default 200)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed runs first (default 20)")
    parser.add_argument("--reference-device", default="cuda", choices=("cuda", "cpu"),
                        help="where the PyTorch reference runs (default cuda)")
    parser.add_argument("--out", type=Path, default=RESULTS / "gpu_check", help="report folder")
    return parser.parse_args(argv)


# -- reference --------------------------------------------------------------------------------
def torch_runner(model: Any, device: str, half: bool = False) -> Any:
    """A function batch -> {"mask": fused map} running a copy of `model` on `device` (TF32 off: fp32 is fp32)."""
    import copy

    import torch

    from u2deploy.model import DeployHead

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    head = DeployHead(copy.deepcopy(model)).eval().to(device)
    head = head.half() if half else head

    def run(batch: np.ndarray) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            tensor = torch.from_numpy(batch).to(device)
            output = head(tensor.half() if half else tensor)
        return {"mask": output.float().cpu().numpy()}  # .cpu() waits for the GPU

    return run


def torch_timing(model: Any, batch: np.ndarray, args: argparse.Namespace, half: bool) -> dict[str, float]:
    run = torch_runner(model, "cuda", half)
    return timed(lambda: run(batch), args)


def timed(run: Any, args: argparse.Namespace) -> dict[str, float]:
    for _ in range(args.warmup):
        run()
    times = []
    for _ in range(args.iterations):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1e3)
    p50, p90, p99 = np.percentile(times, [50, 90, 99])
    return {"p50_ms": round(float(p50), 3), "p90_ms": round(float(p90), 3), "p99_ms": round(float(p99), 3),
            "mean_ms": round(float(np.mean(times)), 3), "fps": round(1e3 / float(p50), 1)}


# -- one engine -------------------------------------------------------------------------------
def build(args: argparse.Namespace, precision: str, out: Path, **fields: Any) -> Any:
    from u2deploy.export import CalibrationOptions, export

    if precision == "int8" and args.calib:
        fields["calibration"] = CalibrationOptions(source=args.calib)
    return export(args.model, out, fmt="trt", precision=precision, input_size=(args.size, args.size), **fields)


def engine_report(result: Any, reference: dict, names: list[str], batch: np.ndarray, precision: str,
                  args: argparse.Namespace) -> dict[str, Any]:
    from u2deploy.compare import parity_report
    from u2deploy.runtimes.runtime import Runtime

    with Runtime(result.path) as runtime:
        parity = parity_report(reference, {"mask": runtime.infer(batch)}, names, precision)
        plain = timed(lambda: runtime.infer(batch[:1]), args)
        static_gpu = runtime.batch_size is not None and not runtime.describe()["device"].startswith("dla")
    graph = None
    if static_gpu:
        with Runtime(result.path, cuda_graph=True) as replaying:
            graph = timed(lambda: replaying.infer(batch[:1]), args)
    record = result.manifest["tensorrt"]
    return {"precision": precision, "status": "passed" if parity.passed else "failed", "engine": str(result.path),
            "export_seconds": result.seconds,
            "build": {k: record[k] for k in ("version", "build_mode", "builder_flags")},
            "layers": record["layers"], "dla": record.get("dla"), "export_gate": result.manifest["parity"]["summary"],
            "vs_torch_reference": parity.to_dict(), "timing": plain, "timing_cuda_graph": graph}


def check_precision(args: argparse.Namespace, precision: str, reference: dict, names: list[str],
                    batch: np.ndarray, **fields: Any) -> dict[str, Any]:
    suffix = f"_dla{args.dla_core}" if "tensorrt" in fields else ""
    out = args.out / f"{Path(str(args.model)).stem}_{args.size}_{precision}{suffix}.engine"
    print(f"== {precision}{suffix} engine", flush=True)
    if precision == "int8" and not args.calib:
        return {"precision": precision + suffix, "status": "skipped", "reason": "int8 needs --calib DIR (images)"}
    try:
        result = build(args, precision, out, **fields)
    except (MissingDependencyError, UnsupportedOptionError) as exc:
        return {"precision": precision + suffix, "status": "skipped", "reason": str(exc)}
    except U2DeployError as exc:
        return {"precision": precision + suffix, "status": "failed", "error": str(exc)}
    return engine_report(result, reference, names, batch, precision, args)


# -- dynamic profile and manifest -------------------------------------------------------------
def check_dynamic(args: argparse.Namespace, reference: dict, names: list[str], batch: np.ndarray) -> dict[str, Any]:
    from u2deploy.compare import parity_report
    from u2deploy.runtimes.runtime import Runtime

    print("== fp16 engine with --dynamic 1:2:4", flush=True)
    out = args.out / f"{Path(str(args.model)).stem}_{args.size}_fp16_dynamic.engine"
    try:
        result = build(args, "fp16", out, dynamic=("batch",), profile=(1, 2, 4))
    except U2DeployError as exc:
        return {"status": "failed", "error": str(exc)}
    checks = {}
    with Runtime(result.path) as runtime:  # 5 exceeds the profile: it runs as 4 + 1
        for count in (1, 3, 4, 5):
            maps = {"mask": runtime.infer(batch[:count])}
            part = {"mask": reference["mask"][:count]}
            checks[f"batch_{count}"] = parity_report(part, maps, names[:count], "fp16").passed
    return {"status": "passed" if all(checks.values()) else "failed", "checks": checks}


def check_manifest(engine: Path) -> dict[str, Any]:
    """The engine loads here; a copy whose manifest names another TensorRT is refused with the rebuild command."""
    from u2deploy.errors import BackendError
    from u2deploy.runtimes.runtime import Runtime

    with Runtime(engine):
        pass
    copy = engine.with_name("other_trt_" + engine.name)
    shutil.copy(engine, copy)
    manifest = json.loads(Path(str(engine) + ".json").read_text())
    manifest["tensorrt"]["version"] = "0.0.1"
    Path(str(copy) + ".json").write_text(json.dumps(manifest))
    try:
        Runtime(copy).close()
        refused, message = False, "loaded"
    except BackendError as exc:
        refused, message = "cannot run here" in str(exc) and "rebuild" in str(exc), str(exc)
    return {"status": "passed" if refused else "failed", "message": message}


# -- report -----------------------------------------------------------------------------------
def markdown(report: dict[str, Any]) -> str:
    lines = [f"# TensorRT check on {report['host_name']}", "", f"model `{report['model']}` at {report['size']}; "
             f"TensorRT {report['doctor']['libraries']['tensorrt'].get('version')}; GPU "
             f"{', '.join(d['name'] for d in report['doctor']['gpu'].get('devices', []))}", "",
             "| engine | status | share in precision | IoU min vs torch | max abs vs torch | p50 ms | p50 ms graph |",
             "|---|---|---|---|---|---|---|"]
    for e in report["engines"]:
        if e["status"] in ("skipped", "failed") and "timing" not in e:
            lines.append(f"| {e['precision']} | {e['status']}: {e.get('reason') or e.get('error')} | | | | | |")
            continue
        s = e["vs_torch_reference"]["summary"]
        graph = (e.get("timing_cuda_graph") or {}).get("p50_ms", "")
        lines.append(f"| {e['precision']} | {e['status']} | {e['layers'].get('share')} | {s['min_iou']:.4f} | "
                     f"{s['max_abs']:.2e} | {e['timing']['p50_ms']} | {graph} |")
    for name in ("torch_cuda_fp32", "torch_cuda_fp16"):
        lines.append(f"| PyTorch {name[-4:]} (CUDA) | | | | | {report['torch'].get(name, {}).get('p50_ms')} | |")
    lines += ["", f"dynamic profile: {report['dynamic']['status']}; manifest check: {report['manifest']['status']}"]
    return "\n".join(lines) + "\n"


def run_checks(args: argparse.Namespace) -> dict[str, Any]:
    require("tensorrt", "benchmarks/gpu_check.py")
    from u2deploy.doctor import collect
    from u2deploy.export.verify import reference_inputs
    from u2deploy.model import load_checkpoint

    torch = require("torch", "the PyTorch reference of benchmarks/gpu_check.py")
    if args.reference_device == "cuda" and not torch.cuda.is_available():
        raise MissingDependencyError("PyTorch has no CUDA here; install a CUDA build of PyTorch (on Jetson, NVIDIA's "
                                     "JetPack wheel) or pass --reference-device cpu")
    args.out.mkdir(parents=True, exist_ok=True)
    loaded = load_checkpoint(args.model)
    names, batch = reference_inputs(loaded.spec.replace(input_size=(args.size, args.size)))
    reference = torch_runner(loaded.model, args.reference_device)(batch)
    engines = [check_precision(args, p, reference, names, batch) for p in args.precisions.split(",") if p]
    if args.dla_core is not None:
        from u2deploy.export import TensorRTOptions

        engines.append(check_precision(args, "fp16", reference, names, batch,
                                       tensorrt=TensorRTOptions(dla_core=args.dla_core)))
    built = [e for e in engines if "engine" in e]
    cuda = args.reference_device == "cuda"
    return {"host_name": platform.node(), "model": str(args.model), "size": args.size, "doctor": collect(),
            "engines": engines, "dynamic": check_dynamic(args, reference, names, batch),
            "manifest": check_manifest(Path(built[0]["engine"])) if built else {"status": "skipped"},
            "torch": {"torch_cuda_fp32": torch_timing(loaded.model, batch[:1], args, False),
                      "torch_cuda_fp16": torch_timing(loaded.model, batch[:1], args, True)} if cuda else {}}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = run_checks(args)
    except U2DeployError as exc:
        print(f"gpu_check: error: {exc}", file=sys.stderr)
        return 1
    statuses = [e["status"] for e in report["engines"]] + [report["dynamic"]["status"], report["manifest"]["status"]]
    report["passed"] = "failed" not in statuses
    stem = args.out / f"gpu_check_{report['host_name'] or 'host'}"
    Path(f"{stem}.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    Path(f"{stem}.md").write_text(markdown(report))
    print(markdown(report))
    print(f"{'PASSED' if report['passed'] else 'FAILED'}: report in {stem}.json and {stem}.md")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""`u2deploy doctor`: what this machine can run, and how to fix what is missing.

Each optional library is probed in its own short-lived interpreter, all of them at once: a broken
install (a missing libnvinfer, a CUDA mismatch, OpenCV's static-TLS error on Jetson), or even a
crash in native code, becomes a line of the report instead of taking the doctor down, and the
report takes about as long as the slowest import (PyTorch). Python, u2deploy, the Jetson files,
the cache and the weights are read in-process. Nothing is installed or downloaded.

    >>> from u2deploy.doctor import collect, render
    >>> print(render(collect()))
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import __version__, hardware
from ._deps import EXTRAS, available

__all__ = ["PROBES", "collect", "render", "run_probe", "gstreamer_support"]

#: probe -> module whose presence decides whether it is worth starting an interpreter (None: always)
PROBES: dict[str, str | None] = {"torch": "torch", "onnxruntime": "onnxruntime", "openvino": "openvino",
                                 "tensorrt": "tensorrt", "cuda-python": "cuda", "opencv": "cv2", "gpu": None}
_MARK = "U2DEPLOY-DOCTOR:"
_CHILD = "import sys; from u2deploy.doctor import run_probe; run_probe(sys.argv[1])"
_FIX_MODULE = {"torch": "torch", "onnxruntime": "onnxruntime", "openvino": "openvino", "tensorrt": "tensorrt",
               "cuda-python": "cuda", "opencv": "cv2"}


def gstreamer_support(build_information: str) -> bool | None:
    """`GStreamer: YES (1.20.3)` in `cv2.getBuildInformation()` -> True; NO -> False; absent -> None."""
    match = re.search(r"GStreamer:\s*(\w+)", build_information)
    return None if match is None else match.group(1).upper() == "YES"


# -- probes (run in a child interpreter) ------------------------------------------------------
def _probe_torch() -> dict[str, Any]:
    import torch

    cuda = bool(torch.cuda.is_available())
    devices = [f"{torch.cuda.get_device_name(i)} (sm {'.'.join(map(str, torch.cuda.get_device_capability(i)))})"
               for i in range(torch.cuda.device_count())] if cuda else []  # fmt: skip
    return {"version": torch.__version__, "cuda_build": torch.version.cuda, "cuda": cuda, "devices": devices}


def _probe_onnxruntime() -> dict[str, Any]:
    import onnxruntime

    return {"version": onnxruntime.__version__, "providers": onnxruntime.get_available_providers()}


def _probe_openvino() -> dict[str, Any]:
    import openvino

    core = openvino.Core()
    devices = {d: str(core.get_property(d, "FULL_DEVICE_NAME")) for d in core.available_devices}
    return {"version": openvino.__version__, "devices": devices}


def _probe_tensorrt() -> dict[str, Any]:
    import tensorrt

    from .runtimes.trt_support import detect_features

    features = detect_features(tensorrt)
    result = {"version": tensorrt.__version__, "strongly_typed_only": features.strongly_typed_only}
    try:  # needs a working CUDA driver; reported, not required
        result["dla_cores"] = int(tensorrt.Runtime(tensorrt.Logger(tensorrt.Logger.ERROR)).num_DLA_cores)
    except Exception as exc:  # noqa: BLE001 - any failure here is information for the report
        result["runtime_error"] = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    return result


def _probe_cuda_python() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    from .runtimes._cuda import _cudart

    _cudart()
    for distribution in ("cuda-python", "cuda-bindings"):
        try:
            return {"version": version(distribution)}
        except PackageNotFoundError:
            continue
    return {"version": "unknown"}


def _probe_opencv() -> dict[str, Any]:
    import cv2

    return {"version": cv2.__version__, "gstreamer": gstreamer_support(cv2.getBuildInformation())}


def _probe_gpu() -> dict[str, Any]:
    devices, why = hardware.cuda_devices()
    return {"devices": [d.to_dict() for d in devices], "reason": why, "cuda_driver": hardware.cuda_driver_version()}


_PROBE_FUNCTIONS = {"torch": _probe_torch, "onnxruntime": _probe_onnxruntime, "openvino": _probe_openvino,
                    "tensorrt": _probe_tensorrt, "cuda-python": _probe_cuda_python, "opencv": _probe_opencv,
                    "gpu": _probe_gpu}


def run_probe(name: str) -> None:
    """Child side: print one marked JSON line with the probe's findings (or the error it hit)."""
    try:
        result = {"status": "ok", **_PROBE_FUNCTIONS[name]()}
    except Exception as exc:  # noqa: BLE001 - a broken package is what the doctor reports
        text = str(exc).strip().splitlines()
        result = {"status": "broken", "error": f"{type(exc).__name__}: {text[0] if text else ''}"[:300]}
    print(_MARK + json.dumps(result), flush=True)


# -- parent side ------------------------------------------------------------------------------
def _spawn(name: str) -> subprocess.Popen:
    env = dict(os.environ)
    package_parent = str(Path(__file__).resolve().parent.parent)  # the same u2deploy in the child
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    return subprocess.Popen([sys.executable, "-c", _CHILD, name], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)  # fmt: skip


def _finish(process: subprocess.Popen, deadline: float, timeout: float) -> dict[str, Any]:
    try:
        out, err = process.communicate(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        return {"status": "timeout", "error": f"no answer within {timeout:g} s (a hanging driver or import)"}
    for line in reversed(out.splitlines()):
        if line.startswith(_MARK):
            return json.loads(line[len(_MARK):])
    lines = [line for line in err.strip().splitlines() if line.strip()]
    code = process.returncode
    why = lines[-1][:300] if lines else (f"killed by signal {-code}" if code < 0 else f"exit code {code}")
    return {"status": "crashed", "error": why}


def _probe_all(timeout: float) -> dict[str, dict[str, Any]]:
    """Every probe at once; a library that is not installed gets no interpreter."""
    results: dict[str, dict[str, Any]] = {}
    running = {}
    for name, module in PROBES.items():
        if module is not None and not available(module):
            results[name] = {"status": "missing"}
        else:
            running[name] = _spawn(name)
    deadline = time.monotonic() + timeout
    results.update({name: _finish(process, deadline, timeout) for name, process in running.items()})
    return {name: results[name] for name in PROBES}


def _cache() -> dict[str, Any]:
    try:
        from .weights import cache_dir, list_weights

        rows = list_weights()
        return {"path": str(cache_dir()), "weights": {row["name"]: row["cached"] for row in rows}}
    except Exception as exc:  # noqa: BLE001 - e.g. platformdirs broken: report, do not crash
        return {"path": None, "error": str(exc)[:200], "weights": {}}


#: distribution -> how its CUDA major is spelled: a `-cuNN` suffix, or the version's major (cuda-python)
_CUDA_DISTRIBUTIONS = ("tensorrt-cu11", "tensorrt-cu12", "tensorrt-cu13", "cuda-python", "cuda-bindings",
                       "onnxruntime-gpu")


def cuda_packages() -> dict[str, dict[str, Any]]:
    """Installed CUDA-built packages, read from their metadata (no import): name -> {version, cuda major}."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in _CUDA_DISTRIBUTIONS:
        try:
            installed = version(name)
        except PackageNotFoundError:
            continue
        suffix = name.rsplit("-cu", 1)[1] if "-cu" in name else None
        major = int(suffix) if suffix else int(installed.split(".")[0]) if name.startswith("cuda-") else None
        found[name] = {"version": installed, "cuda": major}
    return found


def cuda_mismatches(driver: str | None, packages: dict[str, dict[str, Any]]) -> list[str]:
    """What cannot work: a package built for a newer CUDA major than the driver supports, or TensorRT and
    cuda-python built for different majors."""
    majors = {name: info["cuda"] for name, info in packages.items() if info.get("cuda")}
    problems = []
    if driver:
        driver_major = int(driver.split(".")[0])
        for name, major in majors.items():
            if major > driver_major:
                problems.append(f"{name} is built for CUDA {major}, but the driver supports CUDA {driver}: update the "
                                f"driver or install the cu{driver_major} build (pip install 'u2deploy[tensorrt-cu"
                                f"{driver_major}]')")
    trt = {major for name, major in majors.items() if name.startswith("tensorrt-")}
    python = {major for name, major in majors.items() if name.startswith("cuda-")}
    if trt and python and trt != python:
        problems.append(f"TensorRT is built for CUDA {'/'.join(map(str, sorted(trt)))} but cuda-python for "
                        f"{'/'.join(map(str, sorted(python)))}: install a matching pair (u2deploy[tensorrt-cu12] or "
                        "[tensorrt-cu13])")
    return problems


def collect(timeout: float = 15.0) -> dict[str, Any]:
    """The whole report as a JSON-able dict (see `render`)."""
    started = time.monotonic()
    probes = _probe_all(timeout)
    report = {
        "python": {"version": platform.python_version(), "executable": sys.executable,
                   "platform": f"{platform.system()} {platform.machine()}"},
        "u2deploy": {"version": __version__, "path": str(Path(__file__).resolve().parent)},
        "libraries": {name: probes[name] for name in PROBES if name != "gpu"},
        "gpu": {**probes["gpu"], "nvidia_driver": hardware.nvidia_driver(), "cuda_packages": cuda_packages()},
        "jetson": hardware.jetson_info(),
        "cache": _cache(),
    }
    report["can_run"] = _can_run(report)
    report["fixes"] = _fixes(report)
    report["seconds"] = round(time.monotonic() - started, 2)
    return report


def _gpus(report: dict[str, Any]) -> list[dict[str, Any]]:
    return report["gpu"].get("devices") or []


def _no_gpu_reason(report: dict[str, Any]) -> str:
    gpu = report["gpu"]
    return gpu.get("reason") or (f"the driver query {gpu['status']}: {gpu.get('error')}" if gpu.get("error")
                                 else "no CUDA device")  # fmt: skip


def _can_run(report: dict[str, Any]) -> list[str]:
    """Backend and device pairs this machine can use now."""
    lib = report["libraries"]
    ok = {name: info for name, info in lib.items() if info.get("status") == "ok"}
    found = []
    if "torch" in ok:
        found.append("torch on cpu" + (" and cuda" if ok["torch"].get("cuda") else ""))
    if "onnxruntime" in ok:
        found.append("onnxruntime on " + ", ".join(p.removesuffix("ExecutionProvider") for p in ok["onnxruntime"]
                                                   .get("providers", []) if p not in _NOT_DEVICES))  # fmt: skip
    if "openvino" in ok:
        found.append("openvino on " + ", ".join(ok["openvino"].get("devices", {})))
    memory = "cuda-python" in ok or ok.get("torch", {}).get("cuda")
    if "tensorrt" in ok and _gpus(report) and memory:
        cores = ok["tensorrt"].get("dla_cores") or 0
        found.append("tensorrt on cuda" + (f" and {cores} DLA core(s)" if cores else ""))
    return found


#: ONNX Runtime providers that are no device of this machine (Azure sends requests to a remote endpoint)
_NOT_DEVICES = ("AzureExecutionProvider",)


def _library_fixes(report: dict[str, Any]) -> list[str]:
    fixes = []
    for name, info in report["libraries"].items():
        status, fix = info.get("status"), EXTRAS.get(_FIX_MODULE[name], ("", ""))[1]
        if name in ("tensorrt", "cuda-python") and not _gpus(report):
            continue  # without an NVIDIA GPU they cannot run anyway: the GPU line says so, first
        if status == "missing" and name not in ("tensorrt", "cuda-python"):
            fixes.append(f"{name} is not installed: {fix}")
        elif status in ("broken", "crashed", "timeout"):
            fixes.append(f"{name} is installed but fails to import ({status}: {info.get('error')}); reinstall it "
                         f"({fix})")
    return fixes


def _gpu_fixes(report: dict[str, Any]) -> list[str]:
    lib, gpus = report["libraries"], _gpus(report)
    trt, torch = lib["tensorrt"], lib["torch"]
    if not gpus:
        return [f"no NVIDIA GPU ({_no_gpu_reason(report)}): TensorRT and the CUDA providers cannot run here; "
                "onnxruntime and openvino run on the CPU"]
    fixes = []
    if trt.get("status") == "missing":
        fixes.append(f"TensorRT is not installed: {EXTRAS['tensorrt'][1]}")
    elif trt.get("status") == "ok" and lib["cuda-python"].get("status") != "ok" and not torch.get("cuda"):
        fixes.append("the TensorRT backend needs cuda-python or a CUDA build of PyTorch: pip install cuda-python")
    if torch.get("status") == "ok" and not torch.get("cuda_build"):
        fixes.append("PyTorch is a CPU build; benchmarks/gpu_check.py compares engines with PyTorch on CUDA: install "
                     "a CUDA build (pytorch.org; on Jetson, NVIDIA's JetPack wheel)")
    elif torch.get("status") == "ok" and not torch.get("cuda"):
        fixes.append(f"PyTorch is built for CUDA {torch['cuda_build']} but cannot use the GPU: the driver is probably "
                     "older than that CUDA; update the driver or install a PyTorch built for an older CUDA")
    providers = lib["onnxruntime"].get("providers") or []
    if lib["onnxruntime"].get("status") == "ok" and "CUDAExecutionProvider" not in providers:
        fixes.append("onnxruntime has no CUDA provider: pip uninstall onnxruntime && pip install onnxruntime-gpu")
    return fixes


def _jetson_fixes(report: dict[str, Any]) -> list[str]:
    jetson, opencv = report["jetson"], report["libraries"]["opencv"]
    if jetson is None:
        return []
    fixes = []
    if opencv.get("status") == "ok" and opencv.get("gstreamer") is False:
        fixes.append("this OpenCV has no GStreamer, so CSI cameras cannot open: pip uninstall opencv-python "
                     "opencv-python-headless, then use JetPack's (sudo apt install python3-opencv, venv with "
                     "--system-site-packages)")
    if jetson.get("dla") is False:
        fixes.append(f"{jetson.get('model')} has no DLA: build engines for the GPU (no --dla-core)")
    return fixes


def _fixes(report: dict[str, Any]) -> list[str]:
    fixes = _gpu_fixes(report) + _library_fixes(report) + _jetson_fixes(report)
    fixes += cuda_mismatches(report["gpu"].get("cuda_driver"), report["gpu"].get("cuda_packages") or {})
    weights = report["cache"].get("weights") or {}
    if weights and not any(weights.values()):
        fixes.append("no pretrained weights cached yet: u2deploy weights get u2net (or u2netp, 4.7 MB)")
    return fixes


# -- text -------------------------------------------------------------------------------------
def _describe(name: str, info: dict[str, Any]) -> str:
    if name == "torch":
        devices = ", ".join(info.get("devices", [])) or "no usable device"
        return f"CUDA {info['cuda_build']} build: {devices}" if info.get("cuda_build") else "CPU build"
    if name == "onnxruntime":
        return ", ".join(p for p in info.get("providers", []) if p not in _NOT_DEVICES)
    if name == "openvino":
        return ", ".join(f"{device} ({full})" for device, full in info.get("devices", {}).items())
    if name == "tensorrt":
        api = "strongly typed only (11.x API)" if info.get("strongly_typed_only") else "10.x API"
        if "dla_cores" in info:
            return f"{api}, {info['dla_cores']} DLA core(s)"
        return f"{api}; its runtime cannot start here ({info.get('runtime_error')})"
    if name == "opencv":
        return f"GStreamer {'YES' if info.get('gstreamer') else 'NO'}"
    return "device memory for the TensorRT backend"


def _library_line(name: str, info: dict[str, Any]) -> str:
    status = info.get("status")
    if status == "missing":
        return "not installed"
    if status != "ok":
        return f"{status.upper()}: {info.get('error')}"
    return f"{info.get('version')}: {_describe(name, info)}"


def _jetson_line(jetson: dict[str, Any] | None) -> str:
    if jetson is None:
        return "no"
    dla = {True: "yes", False: "no", None: "unknown"}[jetson.get("dla")]
    return f"{jetson.get('model')}, L4T R{jetson.get('l4t')} (JetPack {jetson.get('jetpack') or '?'}), DLA {dla}"


def _system_lines(report: dict[str, Any]) -> list[tuple[str, str]]:
    gpu, cache = report["gpu"], report["cache"]
    devices = "; ".join(f"{d['name']} (sm {d['compute_capability']}, {d['memory_gb']} GB)" for d in _gpus(report))
    drivers = [f"{label} {value}" for label, value in (("driver", gpu.get("nvidia_driver")),
                                                       ("CUDA", gpu.get("cuda_driver"))) if value]  # fmt: skip
    gpu_text = "; ".join([devices, *drivers]) if devices else f"none ({_no_gpu_reason(report)})"
    cached = ", ".join(f"{n} ({'cached' if c else 'not cached'})" for n, c in (cache.get("weights") or {}).items())
    packages = gpu.get("cuda_packages") or {}
    cuda_text = "; ".join([f"driver {gpu.get('cuda_driver') or 'none'}",
                           *(f"{name} {info['version']} (CUDA {info['cuda'] or '?'})" for name, info in packages.items())])
    return [("GPU", gpu_text), ("CUDA", cuda_text), ("Jetson", _jetson_line(report["jetson"])),
            ("cache", f"{cache.get('path') or cache.get('error')}: {cached or 'no weights known'}")]


def render(report: dict[str, Any]) -> str:
    """The report as text: one line per component, then what can run, then what to fix."""
    py, pkg = report["python"], report["u2deploy"]
    rows = [("python", f"{py['version']} ({py['executable']}) on {py['platform']}"),
            ("u2deploy", f"{pkg['version']} ({pkg['path']})")]
    rows += [(name, _library_line(name, info)) for name, info in report["libraries"].items()]
    rows += _system_lines(report)
    lines = ["u2deploy doctor: what this machine can run", ""]
    lines += [f"  {label:<12} {text}" for label, text in rows]
    lines += ["", f"  {'can run':<12} {'; '.join(report['can_run']) or 'nothing yet'}", ""]
    if report["fixes"]:
        lines.append(f"to fix or enable ({len(report['fixes'])}):")
        lines += [f"  - {fix}" for fix in report["fixes"]]
    else:
        lines.append("nothing to fix")
    lines.append(f"(checked in {report['seconds']:.1f} s)")
    return "\n".join(lines)

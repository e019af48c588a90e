"""Which combinations to run, why a combination is skipped, and the cache of exported artifacts.

A row is (format, precision, batch). Before any heavy work each row is checked with the same
validation the exporter and the backends use (`ExportOptions.validate`, `_deps.require`, the
quantizer registry), so a combination this machine or release cannot run is `skipped` with the
exporter's own one-line reason instead of failing half-way. Errors that still happen later are
sorted by type: a missing package, an unsupported option or an absent device means `skipped`;
anything else means `failed`. Neither stops the run.

Artifacts are exported once into `cache_dir()/artifacts/<source sha256>/<options key>/` and
reused by later runs; the key covers every option that changes the file.
"""

from __future__ import annotations

import glob
import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .._deps import require
from ..errors import BackendError, MissingDependencyError, U2DeployError, UnsupportedOptionError, first_line
from .rows import Row

__all__ = ["FORMATS", "PRECISIONS", "BACKEND_OF", "plan_rows", "precheck", "classify", "export_options",
           "default_calibration", "artifact_path", "artifact_files", "ensure_artifact",
           "parse_list"]  # fmt: skip

FORMATS = ("torch", "onnx", "openvino", "trt")
#: bf16 is an OpenVINO CPU inference precision (the fp32 IR run in bf16), so only OpenVINO gets bf16 rows
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
#: format -> the runtime backend that runs its artifacts
BACKEND_OF = {"torch": "torch", "onnx": "onnxruntime", "openvino": "openvino", "trt": "tensorrt"}

#: exception types that mean "this machine or release cannot do it", not "it broke"
_SKIP_ERRORS = (MissingDependencyError, UnsupportedOptionError, BackendError)


def parse_list(value: str | list[str] | tuple[str, ...], choices: tuple[str, ...], flag: str) -> tuple[str, ...]:
    """`"onnx,openvino"` -> ("onnx", "openvino"), each checked against `choices` (unknown names raise)."""
    from .._registry import unknown_name

    items = value.split(",") if isinstance(value, str) else list(value)
    names = tuple(item.strip() for item in items if item.strip())
    for name in names:
        if name not in choices:
            raise unknown_name(flag.lstrip("-").rstrip("s"), name, list(choices), flag)
    return names


def classify(exc: BaseException) -> str:
    """`skipped` for a missing package, an unsupported combination or an absent device; else `failed`."""
    return "skipped" if isinstance(exc, _SKIP_ERRORS) else "failed"


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def export_options(fmt: str, precision: str, batch: int, size: tuple[int, int], calibration: Any = None,
                   progress: bool = False) -> Any:
    """The `ExportOptions` of a row's artifact (no parity gate: the bench measures parity itself).

    A bf16 row runs the bf16 IR (`u2deploy export --bf16`: fp32 weights, bf16 settings, the
    large-bias convs kept f32); an int8 row without `calibration` calibrates on the bundled
    stand-in photos (`default_calibration`). `progress` shows the exporter's step lines
    and NNCF's calibration bars on stderr (the longest step of a first run).
    """
    from ..export import ExportOptions

    calib = (calibration or default_calibration()) if precision == "int8" else None
    return ExportOptions(fmt=fmt, precision=precision, input_size=size,
                         batch=batch, verify=False, calibration=calib, command="u2deploy bench",
                         progress=progress)  # fmt: skip


def default_calibration() -> Any:
    """INT8 calibration on the bundled photos the calibration package writes (disjoint from the parity photos).

    A stand-in so that `u2deploy bench` runs INT8 with no arguments; a deployment calibrates on its
    own photos (`--calib`). None when the calibration package cannot write them (the INT8 rows then
    skip with the exporter's reason).
    """
    from ..export import CalibrationOptions
    from ..processing import IMAGE_EXTENSIONS
    from ..weights import cache_dir

    try:
        from ..calibration.source import write_sample_images
    except ImportError:
        return None
    try:
        folder = Path(write_sample_images(cache_dir() / "bench" / "calibration"))
    except U2DeployError:
        return None
    count = sum(1 for path in folder.iterdir() if path.suffix.lower() in IMAGE_EXTENSIONS)
    return CalibrationOptions(source=str(folder), count=count)


def precheck(fmt: str, precision: str, batch: int, size: tuple[int, int], calibration: Any = None,
             cuda: bool | None = None) -> str | None:
    """Why this machine or release cannot run the row, or None.

    Uses the exporter's own checks and imports the libraries the row needs, as the export would,
    so the reasons read the same as `u2deploy export`'s errors and come before any heavy work.
    """
    cuda = _cuda_available() if cuda is None else cuda
    try:
        if fmt == "torch":
            return _torch_reason(precision, cuda)
        if precision == "bf16" and (reason := _bf16_reason(fmt)):
            return reason
        if fmt == "trt" and not cuda:
            return "TensorRT needs an NVIDIA GPU with CUDA; this machine has none"
        options = export_options(fmt, precision, batch, size, calibration).validate()
        for module in (*options.capability.requires, _library(fmt)):
            require(module, f"--fmt {fmt}")
        if precision == "int8":
            from ..export import quantizer_for

            quantizer_for(fmt)
    except U2DeployError as exc:
        return first_line(exc, 300)
    return None


def _library(fmt: str) -> str:
    from ..runtimes.registry import LIBRARIES

    return LIBRARIES[BACKEND_OF[fmt]]


def _torch_reason(precision: str, cuda: bool) -> str | None:
    require("torch", "the PyTorch rows")
    if precision == "int8":
        return "u2deploy has no PyTorch INT8 path (INT8 is exported to onnx, openvino or trt)"
    if precision == "fp16" and not cuda:
        return "PyTorch fp16 runs on CUDA only; this machine has no CUDA device"
    return None


def _bf16_reason(fmt: str) -> str | None:
    if fmt != "openvino":
        return f"no bf16 path for {fmt} in u2deploy (bf16 is OpenVINO's CPU inference precision)"
    ov = require("openvino", "the openvino bf16 row")
    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        return "this CPU has no bf16 instructions (AVX512_BF16 or AMX), so OpenVINO cannot run bf16"
    return None


def plan_rows(formats: tuple[str, ...], precisions: tuple[str, ...], batches: tuple[int, ...],
              size: tuple[int, int], calibration: Any = None) -> list[Row]:
    """Every combination, in format-major order, with the ones this machine cannot run marked skipped."""
    cuda = _cuda_available()
    rows = []
    for fmt in formats:
        for precision in precisions:
            if precision == "bf16" and fmt != "openvino" and "openvino" in formats:
                continue  # only OpenVINO has a bf16 row; asked for bf16 alone, the others say why not
            for batch in batches:
                # no backend options: each file carries the settings its gate verified (OpenVINO f32, or
                # bf16 for the bf16 IR), and `Runtime(path)` applies them, as it does for a user
                row = Row(fmt=fmt, backend=BACKEND_OF[fmt], precision=precision, batch=batch)
                reason = precheck(fmt, precision, batch, size, calibration, cuda)
                rows.append(row.mark("skipped", reason) if reason else row)
    return rows


# --------------------------------------------------------------------------------------------
# Artifact cache


def _files_fingerprint(source: str | None) -> list[list[Any]]:
    """(name, size, mtime) of the files a calibration folder or glob holds: edits change the cache key."""
    if not source:
        return []
    path = Path(source).expanduser()
    found = path.rglob("*") if path.is_dir() else (Path(p) for p in glob.glob(str(path), recursive=True))
    return sorted([str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in found if f.is_file())


def _cache_key(options: Any, source_sha256: str) -> str:
    from .. import __version__

    calibration = asdict(options.calibration) if options.calibration else None
    if calibration:
        calibration["files"] = _files_fingerprint(calibration.get("source"))
    record = {"source": source_sha256, "u2deploy": __version__, "fmt": options.fmt, "precision": options.precision,
              "size": list(options.input_size), "batch": options.batch, "dynamic": list(options.dynamic),
              "outputs": options.outputs, "opset": options.opset, "calibration": calibration}  # fmt: skip
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:12]


def artifact_path(root: Path, spec: Any, options: Any, source_sha256: str) -> Path:
    """Where the artifact of `options` for this source lives in the cache (it may not exist yet)."""
    from ..export.options import default_output_path
    from ..export.pipeline import artifact_spec

    name = default_output_path(artifact_spec(spec, options), options).name
    return root / source_sha256[:16] / _cache_key(options, source_sha256) / name


def artifact_files(path: Path) -> list[Path]:
    """The model file and the data files it needs (an OpenVINO IR's .bin)."""
    files = [path]
    if path.suffix == ".xml" and path.with_suffix(".bin").is_file():
        files.append(path.with_suffix(".bin"))
    return files


def ensure_artifact(source: Path, spec: Any, options: Any, source_sha256: str, root: Path) -> tuple[Path, bool, float]:
    """(artifact path, reused from the cache?, export seconds): export only what is missing.

    An artifact counts as cached when its manifest exists: the exporter writes the manifest last,
    after an atomic move, so a crashed export never looks complete.
    """
    from ..export import export
    from ..runtimes.base import sidecar_path

    target = artifact_path(root, spec, options, source_sha256)
    if target.is_file() and sidecar_path(target).is_file():
        return target, True, 0.0
    result = export(source, target, options=options)
    return result.path, False, round(sum(result.seconds.values()), 2)

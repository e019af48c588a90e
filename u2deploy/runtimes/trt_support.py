"""TensorRT rules that need no GPU: feature detection, profiles, and whether an engine can run here.

Shared by the exporter (`export/trt_build.py`), the backend (`runtimes/trt.py`) and `u2deploy
doctor`. Every function takes plain values or a `tensorrt` module object, never imports TensorRT
itself, and is unit-tested on machines without it. Facts follow DEPLOY_APIS.md: feature-detect
rather than compare versions (no `BuilderFlag.FP16` = TensorRT 11, strongly typed only), and treat
a plan as a cache keyed by TensorRT version and GPU architecture, rebuilt from ONNX elsewhere.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BackendError, InputError, MissingDependencyError, UnsupportedOptionError

__all__ = ["TrtFeatures", "detect_features", "require_supported", "Profile", "shape_text", "batch_chunks",
           "same_version",
           "parse_device", "compatibility_problems", "check_host", "rebuild_command", "cannot_run_message",
           "capturing_logger"]

MIN_MAJOR = 10


@dataclass(frozen=True)
class TrtFeatures:
    """What the installed TensorRT can do, found by looking at its API rather than its version string.

    Attributes:
        version: `tensorrt.__version__`.
        strongly_typed_only: no `BuilderFlag.FP16` (TensorRT 11): precision must be in the graph.
        strongly_typed_flag: `NetworkDefinitionCreationFlag.STRONGLY_TYPED` exists (10.x opt-in).
        legacy_int8: the implicit-quantization calibrator API is there (TensorRT <= 10).
    """

    version: str
    strongly_typed_only: bool
    strongly_typed_flag: bool
    legacy_int8: bool

    @property
    def major(self) -> int:
        head = self.version.split(".")[0]
        return int(head) if head.isdigit() else 0


def detect_features(trt: Any) -> TrtFeatures:
    flags = getattr(trt, "BuilderFlag", None)
    fp16_flag = flags is not None and hasattr(flags, "FP16")
    creation = getattr(trt, "NetworkDefinitionCreationFlag", None)
    return TrtFeatures(
        version=str(getattr(trt, "__version__", "unknown")),
        strongly_typed_only=not fp16_flag,
        strongly_typed_flag=creation is not None and hasattr(creation, "STRONGLY_TYPED"),
        legacy_int8=fp16_flag and hasattr(flags, "INT8") and hasattr(trt, "IInt8EntropyCalibrator2"),
    )


def require_supported(features: TrtFeatures) -> None:
    """TensorRT 10 removed the binding-index API; older releases are not supported here."""
    if features.major < MIN_MAJOR:
        raise MissingDependencyError(
            f"TensorRT {features.version} is too old: u2deploy builds and runs engines with TensorRT 10.x or 11.x; "
            "fix: pip install 'u2deploy[tensorrt]' (x86/SBSA), or on Jetson upgrade to JetPack 6 (TensorRT 10.3)")


def shape_text(shape: Any) -> str:
    return "x".join("?" if d is None or int(d) < 0 else str(int(d)) for d in shape)


@dataclass(frozen=True)
class Profile:
    """One input's optimization profile: the (min, opt, max) shapes TensorRT builds and accepts."""

    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    @classmethod
    def static(cls, name: str, shape: tuple[int, ...]) -> Profile:
        return cls(name, tuple(shape), tuple(shape), tuple(shape))

    @property
    def is_static(self) -> bool:
        return self.min == self.max

    def contains(self, shape: tuple[int, ...]) -> bool:
        if len(shape) != len(self.min):
            return False
        return all(lo <= d <= hi for lo, d, hi in zip(self.min, shape, self.max, strict=True))

    def describe(self) -> str:
        if self.is_static:
            return shape_text(self.min)
        return f"min {shape_text(self.min)}, opt {shape_text(self.opt)}, max {shape_text(self.max)}"

    def check(self, artifact: str, shape: tuple[int, ...]) -> None:
        """InputError naming the profile when `shape` is outside it."""
        if not self.contains(tuple(shape)):
            raise InputError(f"{artifact}: input '{self.name}' has shape {shape_text(shape)}, outside the engine's "
                             f"profile ({self.describe()}); rebuild with --dynamic MIN:OPT:MAX (batch) or --size to "
                             "cover it")

    def to_dict(self) -> dict[str, Any]:
        return {"input": self.name, "min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


def batch_chunks(count: int, low: int, high: int) -> list[tuple[int, int, int]]:
    """(start, stop, padding) slices that run `count` images through a profile whose batch is `low`..`high`.

    A batch beyond the profile runs in chunks of `high`; a chunk below `low` is padded (by repeating
    its last image) and trimmed afterwards, as `Runtime` does for static batches.
    """
    chunks = []
    for start in range(0, count, high):
        stop = min(start + high, count)
        chunks.append((start, stop, max(0, low - (stop - start))))
    return chunks


def same_version(built: str, here: str) -> bool:
    """A plan loads only with the TensorRT it was built with: compare major.minor.patch."""
    return built.split(".")[:3] == here.split(".")[:3]


def parse_device(device: str | None) -> tuple[int, int | None]:
    """`None`/'cuda'/'cuda:N'/'dla'/'dla:N' -> (GPU index, DLA core or None)."""
    text = (device or "cuda").lower()
    kind, _, index = text.partition(":")
    if kind in ("cuda", "gpu") and (index == "" or index.isdigit()):
        return int(index or 0), None
    if kind == "dla" and (index == "" or index.isdigit()):
        return 0, int(index or 0)
    raise UnsupportedOptionError(f"tensorrt device '{device}' is not known; use cuda, cuda:N or dla:N")


def _where(record: dict[str, Any]) -> str:
    jetson = record.get("jetson") or {}
    if jetson.get("jetpack") or jetson.get("l4t"):
        return f" on JetPack {jetson.get('jetpack') or '?'} (L4T R{jetson.get('l4t') or '?'})"
    return ""


def _gpu_text(name: str | None, capability: str | None) -> str:
    return f"compute capability {capability} ({name or 'unknown GPU'})"


def compatibility_problems(record: dict[str, Any], host: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(reasons the engine cannot run here, notes) from its manifest's `tensorrt` record and the host.

    Args:
        record: `manifest["tensorrt"]`: `version`, `built_on` (a `hardware.host_record`), `dla_core`.
        host: `tensorrt` (version here), `host` (a `hardware.host_record`), `dla_cores` (or None).
    """
    built, here = record.get("built_on") or {}, host.get("host") or {}
    problems, notes = [], []
    if record.get("version") and not same_version(record["version"], host["tensorrt"]):
        problems.append(f"it was built with TensorRT {record['version']}{_where(built)}, this machine has TensorRT "
                        f"{host['tensorrt']}{_where(here)}")
    if not here.get("compute_capability"):
        problems.append(f"no NVIDIA GPU was found here ({here.get('no_gpu_reason') or 'unknown reason'})")
    elif built.get("compute_capability") and built["compute_capability"] != here["compute_capability"]:
        problems.append(f"it was built for {_gpu_text(built.get('gpu'), built['compute_capability'])}, this GPU is "
                        f"{_gpu_text(here.get('gpu'), here['compute_capability'])}")
    elif built.get("gpu") and here.get("gpu") and built["gpu"] != here["gpu"]:
        notes.append(f"it was tuned on {built['gpu']}; it runs on {here['gpu']} (same architecture) but may be "
                     "slower than an engine built here")
    core, cores = record.get("dla_core"), host.get("dla_cores")
    if core is not None and cores is not None and core >= cores:
        problems.append(f"it runs on DLA core {core}, this machine has {cores} DLA core(s)")
    return problems, notes


def check_host(artifact: str | Path, record: dict[str, Any], host: dict[str, Any],
               manifest: dict[str, Any] | None) -> list[str]:
    """Raise `BackendError` (what differs, and the rebuild command) unless the engine can run here; return notes."""
    problems, notes = compatibility_problems(record, host)
    if problems:
        raise BackendError(cannot_run_message(artifact, problems, manifest))
    return notes


def _flag_args(options: dict[str, Any]) -> list[str]:
    args = [f"--{options['precision']}"] if options.get("precision") in ("fp16", "int8") else []
    calibration = options.get("calibration") or {}
    if calibration.get("source"):
        args += ["--calib", calibration["source"]]
    if options.get("profile"):
        args += ["--dynamic", ":".join(map(str, options["profile"]))]
    elif options.get("dynamic"):
        args += ["--dynamic", ",".join(options["dynamic"])]
    elif (options.get("batch") or 1) > 1:
        args += ["--batch", str(options["batch"])]
    knobs = options.get("tensorrt") or {}
    for key, flag in (("workspace_gb", "--workspace"), ("opt_level", "--opt-level"), ("dla_core", "--dla-core")):
        if knobs.get(key) is not None:
            args += [flag, str(knobs[key])]
    return args


def rebuild_command(manifest: dict[str, Any] | None, artifact: str | Path) -> str:
    """The command that rebuilds this engine on the current machine."""
    created = (manifest or {}).get("created") or {}
    if created.get("command"):
        return created["command"]
    options = created.get("options")
    source = ((manifest or {}).get("source") or {}).get("path")
    if not options or not source:
        return f"u2deploy export MODEL --fmt trt [--fp16 | --int8 --calib DIR] -o {Path(artifact).name}"
    height, width = ((manifest or {}).get("spec") or {}).get("input_size", (320, 320))
    args = ["u2deploy", "export", source, "--fmt", "trt", *_flag_args(options), "--size", f"{height}x{width}"]
    return " ".join(shlex.quote(str(a)) for a in [*args, "-o", Path(artifact).name])


def cannot_run_message(artifact: str | Path, problems: list[str], manifest: dict[str, Any] | None) -> str:
    """One line: what differs, why that matters, and the rebuild command."""
    return (f"{Path(artifact).name}: this engine cannot run here: {'; '.join(problems)}. A TensorRT plan runs only "
            f"with the TensorRT version and GPU architecture it was built for; rebuild it on this machine: "
            f"{rebuild_command(manifest, artifact)}")


def capturing_logger(trt: Any, echo_warnings: bool = False) -> Any:
    """A `trt.ILogger` that keeps TensorRT's messages, so a None from the builder or runtime can say why.

    The subclass is defined here, after TensorRT was imported by the caller (STYLE.md guideline 3).
    """
    severity = trt.ILogger.Severity
    errors = (severity.INTERNAL_ERROR, severity.ERROR)  # compared with ==, no hashing of pybind enums

    class CapturingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.messages: list[tuple[str, str]] = []

        def log(self, level: Any, message: str) -> None:
            if level in errors or level == severity.WARNING:
                self.messages.append(("error" if level in errors else "warning", str(message)))
                if echo_warnings and level == severity.WARNING:
                    print(f"      TensorRT: {message}", file=sys.stderr, flush=True)

        def error_text(self, limit: int = 3) -> str:
            """The last `limit` errors, joined on one line."""
            found = [m.strip().replace("\n", " ") for kind, m in self.messages if kind == "error"]
            return " | ".join(found[-limit:])

    return CapturingLogger()

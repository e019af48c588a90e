"""The export driver: validate -> prepare -> load -> convert -> verify -> manifest -> commit.

Everything is written into a hidden staging folder beside the target and moved into place only
when every step passed, so a failed export (a parity failure included) leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._deps import require
from .._io import remove_stale_temporaries, removed_on_failure, temp_prefix, writable_dir
from ..compare import ParityReport
from ..errors import BackendError, UnsupportedOptionError
from ..runtimes.base import sidecar_path
from ..runtimes.registry import LIBRARIES
from ..spec import ModelSpec
from . import LAYOUTS, exporter_for, layout_for, quantizer_for
from .manifest import build_manifest, write_manifest
from .options import ExportOptions, default_output_path

__all__ = ["ExportResult", "run_export", "artifact_spec"]


@dataclass
class ExportResult:
    """Where the artifact went, its manifest, and the parity report (None with --no-verify)."""

    path: Path
    files: list[Path]
    manifest: dict[str, Any]
    parity: ParityReport | None
    seconds: dict[str, float] = field(default_factory=dict)


class _Steps:
    """Numbered progress lines on stderr, with the time each step took."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled, self.index = total, enabled, 0
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, key: str, text: str) -> Iterator[None]:
        self.index += 1
        if self.enabled:
            print(f"[{self.index}/{self.total}] {text} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        yield
        self.seconds[key] = round(time.perf_counter() - start, 2)
        if self.enabled:
            print(f"      {key} done in {self.seconds[key]:.1f} s", file=sys.stderr, flush=True)


def _prepare(options: ExportOptions) -> Any:
    """Resolve the exporter and check every package the request needs, before any heavy work."""
    exporter = exporter_for(options.fmt)
    if options.fmt == "trt":
        _require_nvidia_gpu()
    if options.precision == "int8":
        _prepare_int8(options)
    for module in options.capability.requires:
        require(module, f"--fmt {options.fmt}")
    if options.precision == "bf16" and options.verify:
        _prepare_bf16()
    if options.verify:
        feature = f"the parity check of --fmt {options.fmt} (or pass --no-verify)"
        require(LIBRARIES[options.capability.verify_backend], feature)
        require("skimage", feature + ": its photos come from scikit-image's bundled data")
    return exporter


def _require_nvidia_gpu() -> None:
    """TensorRT builds on the GPU that runs the engine: without one, say that first (as `doctor` does), not a package."""
    from .. import hardware

    gpus, why = hardware.cuda_devices()
    if not gpus:
        raise BackendError(f"--fmt trt needs an NVIDIA GPU; none here ({why}). On one: pip install "
                           "'u2deploy[tensorrt]' or JetPack's")


def _prepare_bf16() -> None:
    """The bf16 gate runs the IR in bf16, which needs a CPU that has it: say so in one line, up front."""
    from ..runtimes.ov import cpu_bf16_reason

    reason = cpu_bf16_reason()
    if reason:
        raise UnsupportedOptionError(f"--bf16: {reason}, so the bf16 gate cannot run here; "
                                     "export on a CPU with bf16, or add --no-verify")


def _prepare_int8(options: ExportOptions) -> None:
    """The quantizer, NNCF and the calibration images, checked before the model is loaded."""
    from ..calibration.source import select_images

    quantizer_for(options.fmt)
    require("nncf", f"--int8 --fmt {options.fmt}")
    calibration = options.calibration
    from ..calibration.cache import say

    select_images(calibration.source, calibration.count, calibration.seed, notify=lambda line: say(True, line))


def artifact_spec(spec: ModelSpec, options: ExportOptions) -> ModelSpec:
    """The checkpoint's spec as the artifact will carry it: size, output names, precision, and the
    backend settings its gate runs with (`runtimes.settings`: what `Runtime` applies by default)."""
    from ..model import DeployHead
    from ..runtimes.settings import RUNTIME_KEY, runtime_record
    from .verify import verify_options

    record = runtime_record(options.capability.verify_backend, verify_options(options))
    return spec.replace(input_size=options.input_size or spec.input_size,
                        output_names=DeployHead.output_names(options.outputs),
                        extra={**spec.extra, "precision": options.precision, "format": options.fmt,
                               RUNTIME_KEY: record})  # fmt: skip


def _is_folder(out: str | os.PathLike) -> bool:
    return Path(out).is_dir() or str(out).endswith(("/", os.sep))


def _check_out(out: str | os.PathLike | None, options: ExportOptions) -> None:
    """An explicit `-o` file must have the format's suffix (checked before the model is loaded)."""
    if out is None or _is_folder(out):
        return
    suffixes = options.capability.suffixes
    if Path(out).suffix.lower() not in suffixes:
        raise UnsupportedOptionError(f"-o {out}: --fmt {options.fmt} writes {' or '.join(suffixes)} files; "
                                     f"use e.g. {Path(out).with_suffix(suffixes[0]).name}")


def _target(out: str | os.PathLike | None, spec: ModelSpec, options: ExportOptions) -> Path:
    """`-o` as given; none, or a folder, gets the default name (in the current folder, or in it)."""
    if out is None or _is_folder(out):
        return default_output_path(spec, options, out or ".")
    return Path(out)


@contextlib.contextmanager
def _staging(target: Path) -> Iterator[Path]:
    """A hidden folder beside `target`, removed with whatever is left in it.

    Its name carries this process's id: SIGTERM and Ctrl-C run this cleanup, and what a -9 kill
    leaves is removed by the next export into the same folder (or `u2deploy cache`).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target.parent)  # staging of exports killed with -9 (no cleanup ran)
    stage = Path(tempfile.mkdtemp(prefix=temp_prefix(target.name), dir=target.parent))
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _commit(files: list[Path], destination: Path) -> list[Path]:
    """Move staged files into place: data files first, the model next, the manifest last."""
    model, *data, manifest = files
    for path in (*data, model, manifest):
        os.replace(path, destination / path.name)
    return [destination / path.name for path in files]


def _io_record(spec: ModelSpec, options: ExportOptions) -> dict[str, Any]:
    batch = None if options.dynamic_batch else (options.batch or 1)
    height, width = (None, None) if options.dynamic_hw else spec.input_size
    def tensor(name: str, channels: int) -> dict[str, Any]:
        return {"name": name, "shape": [batch, channels, height, width], "dtype": "float32"}

    return {"inputs": [tensor(spec.input_name, 3)], "outputs": [tensor(name, 1) for name in spec.output_names]}


def _source_record(loaded: Any) -> dict[str, Any]:
    return {"path": str(loaded.source), "sha256": loaded.sha256, "arch": loaded.spec.arch,
            "provenance": loaded.provenance}  # fmt: skip


def _verify(staged: Path, loaded: Any, spec: ModelSpec, options: ExportOptions, steps: _Steps) -> ParityReport:
    from .verify import reference_inputs, torch_reference, verify_artifact

    with steps("verify", f"parity against PyTorch FP32 on {spec.input_size[0]}x{spec.input_size[1]} photos"):
        names, batch = reference_inputs(spec)
        reference = torch_reference(loaded.model, batch, options.outputs)
        report = verify_artifact(staged, reference, names, batch, options)
    if options.progress:
        print(f"      {options.precision} parity: {report.describe()}", file=sys.stderr, flush=True)
    report.raise_if_failed(staged.name, hint="nothing was written; --no-verify keeps such an artifact anyway")
    return report


def run_export(model: str | os.PathLike, options: ExportOptions, out: str | os.PathLike | None = None) -> ExportResult:
    """Export `model` as `options` ask; see `u2deploy.export.export`."""
    if options.fmt in LAYOUTS:  # e.g. a Triton repository: it runs this function for its inner artifact
        return layout_for(options.fmt)(model, options, out)

    exporter = _prepare(options.validate())
    _check_out(out, options)
    folder = out if out is not None and _is_folder(out) else Path(out or ".").parent
    with removed_on_failure(folder):
        writable_dir(folder, "-o")
        return _export_into(model, options, out, exporter)


def _export_into(model: str | os.PathLike, options: ExportOptions, out: str | os.PathLike | None,
                 exporter: Any) -> ExportResult:
    from ..model import load_checkpoint

    steps = _Steps(4 if options.verify else 3, options.progress)
    with steps("load", f"loading {model}"):
        loaded = load_checkpoint(model, task=options.task)
    spec = artifact_spec(loaded.spec, options)
    target = _target(out, spec, options)
    with _staging(target) as stage:
        staged = stage / target.name
        with steps("convert", f"exporting {spec.arch} to {options.fmt} {options.precision}"):
            files = exporter(loaded, staged, spec, options)
        report = _verify(staged, loaded, spec, options, steps) if options.verify else None
        with steps("write", f"writing {target}"):
            manifest = build_manifest(target, files, spec, options, _source_record(loaded), _io_record(spec, options),
                                      report.to_dict() if report else None, dict(steps.seconds),
                                      getattr(files, "sections", None))  # fmt: skip
            write_manifest(sidecar_path(staged), manifest)
            final = _commit([*files, sidecar_path(staged)], target.parent)
    return ExportResult(final[0], final, manifest, report, dict(steps.seconds))

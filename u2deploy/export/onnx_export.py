"""PyTorch -> ONNX: the hub every other format is built from.

`to_onnx` traces the `DeployHead` with the TorchScript exporter (`dynamo=False`), simplifies
the graph with onnxslim and runs the ONNX checker. The dynamo exporter would need onnxscript, an
extra dependency, and gives nothing here: the TorchScript exporter already folds BatchNorm into
the convolutions in eval mode and maps `F.interpolate(align_corners=False)` to a half-pixel
Resize (Ultralytics pins `dynamo=False` for the same reasons; it stops at opset 20).
`export_onnx` is the `EXPORTERS["onnx"]` entry: fp32, fp16 (`fp16.convert_to_fp16`) or int8
(through the calibration registry), with the metadata embedded.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._deps import require
from ..errors import ExportError, first_line
from ..spec import ModelSpec
from .manifest import artifact_metadata
from .options import ExportOptions

__all__ = ["to_onnx", "build_onnx", "export_onnx", "set_metadata", "check_onnx"]

# The TorchScript exporter announces its own deprecation on every call; the choice is deliberate.
_KNOWN_WARNINGS = ("You are using the legacy TorchScript-based ONNX export", "The feature will be removed")


def _dynamic_axes(spec: ModelSpec, dynamic: Sequence[str]) -> dict[str, dict[int, str]] | None:
    axes: dict[int, str] = {}
    if "batch" in dynamic:
        axes[0] = "batch"
    if "hw" in dynamic:
        axes.update({2: "height", 3: "width"})
    if not axes:
        return None
    return {name: dict(axes) for name in (spec.input_name, *spec.output_names)}


def _trace(model: Any, spec: ModelSpec, outputs: str, batch: int, dynamic: Sequence[str], opset: int) -> Any:
    """torch.onnx.export of the deploy head, in memory."""
    torch = require("torch", "ONNX export")
    onnx = require("onnx", "ONNX export")
    from ..model import DeployHead

    head = DeployHead(model, outputs=outputs).eval()
    example = torch.zeros(batch, 3, *spec.input_size)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        for message in _KNOWN_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        try:
            torch.onnx.export(head, (example,), buffer, opset_version=opset, input_names=[spec.input_name],
                              output_names=list(spec.output_names), dynamic_axes=_dynamic_axes(spec, dynamic),
                              do_constant_folding=True, dynamo=False)  # fmt: skip
        except (RuntimeError, ValueError, TypeError) as exc:
            raise ExportError(f"torch.onnx.export failed at input {spec.input_size}: {first_line(exc)}") from exc
    return onnx.load_from_string(buffer.getvalue())


def check_onnx(model: Any) -> None:
    """The ONNX checker with strict shape inference; a failure is an export bug made user-visible."""
    onnx = require("onnx", "ONNX export")
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"the exported graph fails the ONNX checker: {first_line(exc, 300)}") from exc


def build_onnx(model: Any, spec: ModelSpec, *, outputs: str = "fused", batch: int = 1, dynamic: Sequence[str] = (),
               opset: int = 17) -> Any:
    """Trace, simplify and check: an fp32 `onnx.ModelProto` with BatchNorm folded.

    Args:
        model: a `U2Net` in eval mode.
        spec: gives the input size and the input/output names.
        outputs: `fused` or `all`.
        batch: static batch size (ignored on a dynamic batch axis, which is traced at 1).
        dynamic: dynamic axes, a subset of ("batch", "hw").
        opset: ONNX opset, 17..20.
    """
    onnxslim = require("onnxslim", "ONNX simplification")
    graph = _trace(model, spec, outputs, 1 if "batch" in dynamic else batch, dynamic, opset)
    graph = onnxslim.slim(graph)
    check_onnx(graph)
    return graph


def set_metadata(model: Any, metadata: dict[str, str]) -> None:
    """Replace the model's `metadata_props` with `metadata`."""
    del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def to_onnx(model: Any, path: str | Path, *, spec: ModelSpec, precision: str = "fp32", source_sha256: str = "",
            **build: Any) -> Path:
    """Write `model` as ONNX at `fp32` or `fp16` with its metadata; returns the path.

    The parity check against torch is the caller's (`export.pipeline`), so that one reference
    run serves every output format. `build` takes `build_onnx`'s keyword arguments.
    """
    onnx = require("onnx", "ONNX export")
    graph = build_onnx(model, spec, **build)
    if precision == "fp16":
        from .fp16 import convert_to_fp16

        graph = convert_to_fp16(graph)
        check_onnx(graph)
    elif precision != "fp32":
        raise ExportError(f"to_onnx writes fp32 or fp16, not {precision}; INT8 goes through calibration")
    set_metadata(graph, artifact_metadata(spec, source_sha256))
    onnx.save(graph, str(path))
    return Path(path)


def export_onnx(loaded: Any, path: Path, spec: ModelSpec, options: ExportOptions) -> list[Path]:
    """`EXPORTERS["onnx"]`: the artifact's files, the model first."""
    build = {"outputs": options.outputs, "batch": options.batch or 1, "dynamic": options.dynamic,
             "opset": options.opset}  # fmt: skip
    if options.precision != "int8":
        return [to_onnx(loaded.model, path, spec=spec, precision=options.precision, source_sha256=loaded.sha256,
                        **build)]  # fmt: skip
    from . import quantizer_for

    quantize = quantizer_for(options.fmt)
    fp32 = to_onnx(loaded.model, path.with_name(path.stem + ".fp32.onnx"), spec=spec, source_sha256=loaded.sha256,
                   **build)  # fmt: skip
    try:
        return quantize(fp32, path, spec, options)
    finally:
        fp32.unlink(missing_ok=True)

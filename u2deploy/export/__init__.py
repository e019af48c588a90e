"""Export U2-Net to ONNX, OpenVINO IR and TensorRT, each artifact parity-checked against PyTorch.

`export(model, fmt=..., ...)` is the API behind `u2deploy export`. Formats and INT8 quantizers
are registries of import paths, resolved on demand: a format whose module is not part of this
release fails with one clear line, and no toolchain is imported until it is used.

    >>> from u2deploy.export import export
    >>> result = export("u2net", fmt="onnx", precision="fp16")   # u2net_320_fp16.onnx + .json
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._registry import resolve_entry
from .options import CAPABILITIES, CalibrationOptions, Capability, ExportOptions, TensorRTOptions, TritonOptions

if TYPE_CHECKING:
    from .pipeline import ExportResult

__all__ = ["EXPORTERS", "QUANTIZERS", "CAPABILITIES", "Capability", "ExportOptions", "CalibrationOptions",
           "TensorRTOptions", "TritonOptions", "LAYOUTS", "exporter_for", "quantizer_for", "layout_for", "export"]

#: format -> "module:function(loaded, path, spec, options) -> list[Path]" (model file first)
EXPORTERS: dict[str, str] = {
    "onnx": "u2deploy.export.onnx_export:export_onnx",
    "openvino": "u2deploy.export.ov_convert:export_openvino",
    "trt": "u2deploy.export.trt_build:export_tensorrt",
}

#: format -> "module:function(fp32_onnx, path, spec, options) -> list[Path]": INT8 with calibration
QUANTIZERS: dict[str, str] = {
    "onnx": "u2deploy.calibration.qdq:quantize_onnx",
    "openvino": "u2deploy.calibration.openvino:quantize_openvino",
    "trt": "u2deploy.calibration.qdq:quantize_onnx",
}


#: format -> "module:function(model, options, out) -> ExportResult": a serving layout around one of the
#: formats above, exported (and gated) through the same pipeline
LAYOUTS: dict[str, str] = {
    "triton": "u2deploy.export.triton:export_triton",
}


def exporter_for(fmt: str) -> Callable[..., list[Path]]:
    return resolve_entry(EXPORTERS, fmt, "export format", "--fmt")


def quantizer_for(fmt: str) -> Callable[..., list[Path]]:
    return resolve_entry(QUANTIZERS, fmt, "INT8 quantizer", "--int8")


def layout_for(fmt: str) -> Callable[..., ExportResult]:
    return resolve_entry(LAYOUTS, fmt, "export layout", "--fmt")


def export(model: str | os.PathLike, out: str | os.PathLike | None = None, *, fmt: str | None = None,
           options: ExportOptions | None = None, **fields: Any) -> ExportResult:
    """Export a checkpoint (or weights name) and return where it went and its parity report.

    Args:
        model: a weights name (`u2net`), `.pth`/`.pt` checkpoint or U2-Net `.onnx` file.
        out: the artifact path; None writes `default_output_path` in the current folder.
        fmt: `onnx` (the default), `openvino`, `trt` or `triton` (a model repository folder).
        options: a complete `ExportOptions`; otherwise `fields` fill one (precision, batch, ...).
    """
    from .pipeline import run_export

    if options is None:
        options = ExportOptions(fmt=fmt or "onnx", **fields)
    elif fields or fmt is not None:
        raise TypeError("pass either options= or individual fields, not both")
    return run_export(model, options, out)

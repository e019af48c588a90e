"""ONNX -> OpenVINO IR (`.xml` + `.bin`), FP32, FP16 or bf16 (fp32 weights computed in bf16).

The IR is converted from the checked, simplified ONNX rather than from the PyTorch module
(`ov.convert_model(torch_module)`): ONNX is the hub, so ONNX Runtime, TensorRT and OpenVINO all
start from the same verified graph with the same names and dynamic axes, BatchNorm is already
folded, and the same function converts third-party ONNX files (rembg's `u2net.onnx`). OpenVINO's
PyTorch frontend would trace the model a second time, through a different tracer.

The FP16 IR is converted from the FP16 ONNX (`fp16.convert_to_fp16`) and saved with
`compress_to_fp16=False`, rather than from the FP32 ONNX with `compress_to_fp16=True`. OpenVINO's
compression rounds every weight, including the four large-bias convs that `fp16.py` keeps fp32,
which costs the rocket photo's mask IoU 0.976 against 0.998; and in OpenVINO 2026.4 the Python
API cannot exempt a constant (setting rt_info `precise_0` or `disable_fp16_compression_0` on it
is ignored by `save_model`; checked). Starting from the FP16 ONNX, both formats carry one
mixed-precision graph: fp16 weights, the sensitive convs and the Sigmoid fp32, fp32 input/output.

The bf16 IR keeps fp32 weights (bf16 is a compute precision of OpenVINO's CPU plugin, not a
storage one) and records `inference_precision=bf16` in its runtime settings. The same large-bias
convs (and their bias Adds) carry the `precise` rt_info (`ov::disable_fp16_compression`, saved
as `DisablePrecisionConversion`): the CPU plugin keeps a node so marked in its original f32
precision when it enforces bf16 (`Graph::EnforceInferencePrecision` skips `keepOrigPrecision()`
nodes, and the plugin's own BF16 tests use this attribute to exempt MatMuls).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._deps import require
from ..errors import ExportError, first_line
from ..spec import ModelSpec
from .manifest import ArtifactFiles, artifact_metadata
from .onnx_export import to_onnx
from .options import ExportOptions

__all__ = ["to_openvino", "export_openvino", "keep_sensitive_f32", "PRECISE_KEY"]

#: rt_info key of `ov::disable_fp16_compression` as the Python API names it (saved as DisablePrecisionConversion)
PRECISE_KEY = "precise_0"


def _read_onnx(ov: Any, onnx_path: Path) -> Any:
    try:
        return ov.convert_model(str(onnx_path))
    except Exception as exc:  # OpenVINO raises generic RuntimeErrors/OpConversionFailure
        raise ExportError(f"{onnx_path}: OpenVINO cannot convert it: {first_line(exc, 300)}") from exc


def keep_sensitive_f32(model: Any) -> list[str]:
    """Mark each conv whose bias exceeds `fp16.BIAS_LIMIT`, and its bias Add, to stay f32 in a bf16/f16 run.

    The ONNX frontend turns a biased Conv into Convolution + Add(Constant); both are marked so the
    fused primitive keeps f32. Returns the marked convolutions' names.
    """
    from .fp16 import bias_needs_fp32

    marked = []
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Add":
            continue
        sources = [op.input_value(i).get_node() for i in range(op.get_input_size())]
        conv = next((node for node in sources if node.get_type_name() == "Convolution"), None)
        bias = next((node for node in sources if node.get_type_name() == "Constant"), None)
        if conv is not None and bias is not None and bias_needs_fp32(bias.get_data()):
            for node in (conv, op):
                node.get_rt_info()[PRECISE_KEY] = ""
            marked.append(op.get_friendly_name())  # the ONNX node's name (the conv is "<name>/WithoutBiases")
    return marked


def to_openvino(onnx_path: str | Path, out: str | Path, *, metadata: dict[str, str] | None = None,
                keep_f32: bool = False) -> list[Path]:
    """Convert an ONNX file to IR at `out` (`.xml`), keeping the ONNX graph's precision.

    Args:
        onnx_path: an fp32 or fp16 (mixed-precision) ONNX file.
        out: the `.xml` path; the weights go to the `.bin` beside it.
        metadata: key/values for `rt_info` (as in ONNX `metadata_props`).
        keep_f32: mark the large-bias convs to stay f32 in a reduced-precision run (`keep_sensitive_f32`).

    Returns:
        [xml, bin] (an `ArtifactFiles` naming the kept convs when `keep_f32`)
    """
    ov = require("openvino", "OpenVINO export")
    model = _read_onnx(ov, Path(onnx_path))
    kept = keep_sensitive_f32(model) if keep_f32 else None
    for key, value in (metadata or {}).items():
        model.set_rt_info(value, key)
    out = Path(out)
    # compress_to_fp16 defaults to True in ov.save_model; the graph's own precision must stay.
    ov.save_model(model, str(out), compress_to_fp16=False)
    if kept is None:
        return [out, out.with_suffix(".bin")]
    return ArtifactFiles([out, out.with_suffix(".bin")], {"openvino": {"kept_f32": kept}})


def export_openvino(loaded: Any, path: Path, spec: ModelSpec, options: ExportOptions) -> list[Path]:
    """`EXPORTERS["openvino"]`: ONNX at the same precision in the staging folder, then IR."""
    onnx_precision = "fp16" if options.precision == "fp16" else "fp32"  # int8 and bf16 start from fp32
    onnx_path = path.with_name(f"{path.stem}.{onnx_precision}.onnx")
    to_onnx(loaded.model, onnx_path, spec=spec, precision=onnx_precision, source_sha256=loaded.sha256,
            outputs=options.outputs, batch=options.batch or 1, dynamic=options.dynamic,
            opset=options.opset)  # fmt: skip
    try:
        if options.precision == "int8":
            from . import quantizer_for

            return quantizer_for(options.fmt)(onnx_path, path, spec, options)
        return to_openvino(onnx_path, path, metadata=artifact_metadata(spec, loaded.sha256),
                           keep_f32=options.precision == "bf16")
    finally:
        onnx_path.unlink(missing_ok=True)

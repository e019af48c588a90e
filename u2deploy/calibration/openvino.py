"""OpenVINO's own INT8: NNCF post-training quantization of the IR, from the same calibration set.

The fp32 ONNX is converted to an `ov.Model` (ONNX is the hub, as in `export/ov_convert.py`) and
quantized by `nncf.quantize` with the PERFORMANCE preset and fast bias correction. Unlike the Q/DQ
ONNX, activations keep NNCF's choice (uint8 after ReLU): OpenVINO runs those graphs correctly on
every CPU measured, while it computes signed-activation graphs wrongly on an AVX2-only CPU
(BASELINES.md). NNCF's full bias correction is the default here: with the fast one the pretrained
U2-Net misses the gate (docs/int8.md). The fuse conv, its input and the Sigmoids stay float, as in
the Q/DQ graph. The IR is saved with `compress_to_fp16=False` so the float parts stay fp32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._deps import require
from ..errors import ExportError, first_line
from ..export.options import CalibrationOptions, bias_correction_for
from ..spec import ModelSpec
from .cache import cached_or_calibrated, calibration_plan, calibration_record
from .qdq import float_nodes, kept_float_names
from .source import CalibrationSource

__all__ = ["QUANTIZER", "quantize_ir", "quantize_openvino", "fake_quantize_count", "ov_names", "check_kept_float"]

#: name and version of this quantizer, part of every cache key: bump it when the output changes.
QUANTIZER = {"name": "nncf-openvino-ptq", "version": 1}


def quantize_ir(onnx_model: Any, onnx_path: Path, source: CalibrationSource,
                calibration: CalibrationOptions | None = None, progress: bool = True,
                extra_float: tuple[str, ...] = ()) -> Any:
    """The INT8 `ov.Model` of an fp32 U2-Net ONNX file, calibrated on `source`.

    Args:
        onnx_model: the loaded ONNX model (to find the head by graph structure).
        onnx_path: the same model's file, for `ov.convert_model`.
        source: calibration batches shaped like the model's input.
        calibration: method, what stays float, bias correction (the images are `source`'s).
        progress: progress bars on stderr.
        extra_float: more ONNX node names to keep float (the `--keep-float auto` choice).
    """
    ov = require("openvino", "OpenVINO INT8 export")
    from ._nncf import nncf_quantize

    settings = calibration or CalibrationOptions()
    try:
        model = ov.convert_model(str(onnx_path))
    except Exception as exc:  # OpenVINO raises generic RuntimeErrors
        raise ExportError(f"{onnx_path}: OpenVINO cannot convert it: {first_line(exc, 300)}") from exc
    # overflow_fix stays NNCF's default (first layer only): 7-bit weights everywhere ("enable") dodge
    # the u8 x s8 saturation of AVX2 CPUs without VNNI, but cost quality (mean IoU 0.88 against 0.92
    # with fast bias correction, measured on a VNNI CPU, docs/int8.md).
    return nncf_quantize(model, source, lambda batch: batch, method=settings.method, subset_size=len(source),
                         ignored_names=ov_names(float_nodes(onnx_model, settings.keep_float) + list(extra_float)),
                         signed=False,
                         progress=progress, bias_correction=bias_correction_for("openvino", settings))  # fmt: skip


def ov_names(onnx_names: list[str]) -> list[str]:
    """OpenVINO's names for ONNX nodes: a Conv "X" becomes Convolution "X/WithoutBiases" + Add "X"."""
    return [*onnx_names, *(f"{name}/WithoutBiases" for name in onnx_names if name.endswith("Conv"))]


def check_kept_float(model: Any, onnx_names: list[str]) -> None:
    """Raise `ExportError` when a node meant to stay float reads a FakeQuantize output."""
    wanted = set(ov_names(onnx_names))
    for op in model.get_ops():
        if op.get_friendly_name() in wanted and any(
                source.get_node().get_type_name() == "FakeQuantize" for source in op.input_values()):
            raise ExportError(f"{op.get_friendly_name()} was meant to stay float but reads int8 data; NNCF did not "
                              "honour the ignored scope")


def fake_quantize_count(model: Any) -> int:
    """How many FakeQuantize ops the IR has (0 means it was not quantized at all)."""
    return sum(op.get_type_name() == "FakeQuantize" for op in model.get_ops())


def _metadata(model: Any, onnx_model: Any) -> None:
    """Copy the ONNX metadata (the spec under `u2deploy`, ...) into the IR's rt_info."""
    for entry in onnx_model.metadata_props:
        model.set_rt_info(entry.value, entry.key)


def _save_ir(model: Any, folder: Path) -> list[Path]:
    ov = require("openvino", "OpenVINO INT8 export")
    xml = folder / "model.int8.xml"
    ov.save_model(model, str(xml), compress_to_fp16=False)
    return [xml, xml.with_suffix(".bin")]


def quantize_openvino(fp32_onnx: Path, out: Path, spec: ModelSpec, options: Any) -> list[Path]:
    """`QUANTIZERS["openvino"]`: the INT8 IR at `out` (`.xml` + `.bin`), with a calibration record."""
    onnx = require("onnx", "OpenVINO INT8 export")
    ov = require("openvino", "OpenVINO INT8 export")
    from ..export.manifest import ArtifactFiles

    calibration = options.calibration
    onnx_model = onnx.load(str(fp32_onnx))
    source, parts = calibration_plan(QUANTIZER, "openvino", onnx_model, spec, options,
                                     ("nncf", "openvino", "onnx", "numpy"))
    auto = _auto_choice(onnx_model, spec, options) if calibration.keep_float == "auto" else None
    extra = tuple(auto.nodes) if auto is not None else ()
    if auto is not None:  # the choice is part of what the IR depends on (other keys stay as they were)
        parts["keep_float_nodes"] = list(extra)
    model, cached = cached_or_calibrated(
        parts, calibration.cache, lambda path: ov.Core().read_model(str(path)),
        lambda: quantize_ir(onnx_model, Path(fp32_onnx), source, calibration, options.progress, extra), _save_ir,
        options.progress)
    count = fake_quantize_count(model)
    if count == 0:
        raise ExportError("NNCF left the IR without a single FakeQuantize; nothing would run in INT8")
    kept = kept_float_names(onnx_model, calibration.keep_float) + list(extra)
    check_kept_float(model, kept)
    _metadata(model, onnx_model)
    out = Path(out)
    ov.save_model(model, str(out), compress_to_fp16=False)
    record = calibration_record(parts, source, kept, cached, {"fake_quantize": count},
                                "openvino CPU (INT8 kernels; f32 for the float parts)")
    if auto is not None:
        record["keep_float_auto"] = {**auto.to_dict(), "chosen_on": "the TensorRT-form Q/DQ graph (same images)",
                                     "float_precision": "fp32 in the IR (OpenVINO's inference precision decides)"}
    return ArtifactFiles([out, out.with_suffix(".bin")], {"calibration": record})


def _auto_choice(onnx_model: Any, spec: ModelSpec, options: Any) -> Any:
    """The `--keep-float auto` choice, made on the Q/DQ graph of the same images (one ranking for both)."""
    import dataclasses

    from .autokeep import auto_choice
    from .qdq import calibrated_qdq

    calibration = dataclasses.replace(options.calibration, bias_correction=None)
    qdq, _, _, _ = calibrated_qdq(onnx_model, spec, dataclasses.replace(options, fmt="onnx", calibration=calibration))
    return auto_choice(onnx_model, qdq, spec, progress=options.progress)

"""INT8 as a Q/DQ ONNX graph: the form TensorRT 10 and 11 build explicitly quantized engines from.

The graph carries its own precision (DEPLOY_APIS.md sections 2-3): QuantizeLinear/DequantizeLinear
pairs with int8 zero points of 0, per-channel symmetric int8 weights (scales on axis 0, values in
[-127, 127]) and per-tensor symmetric int8 activations, opset >= 13. TensorRT's strongly typed
build takes it as it is; ONNX Runtime runs it on a CPU and OpenVINO reads it.

How: NNCF's ONNX backend (`_nncf.nncf_quantize`) with activations forced to int8, each range
chosen for TensorRT's symmetric grid (`mse` by default), and fast bias correction (NNCF 3.4's full
one fails on this graph in its ONNX backend). On the pretrained U2-Net this measured best of the
CPU-runnable options (docs/int8.md; onnxruntime.quantization's QDQ calibrators reach mean IoU
0.86-0.90 in BASELINES.md). The final fuse conv, its input and every Sigmoid stay float by
default: the fuse conv mixes the six side logits right before the Sigmoid, where a step of an
int8 scale moves the mask most.

Quality is judged by the export gate on ONNX Runtime with graph optimisation disabled, which
computes each Q/DQ pair literally, as an exact INT8 engine does. OpenVINO 2026.4 computes graphs
with signed int8 activations wrongly on an AVX2-only CPU (BASELINES.md, AMD EPYC) though
correctly on an AVX-512 VNNI/AMX Xeon (docs/int8.md), so it only has to load this file;
OpenVINO's own INT8 is `calibration/openvino.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._deps import require
from ..errors import ExportError, UnsupportedOptionError
from ..export.options import KEEP_FLOAT, CalibrationOptions, bias_correction_for
from ..spec import ModelSpec
from .cache import cached_or_calibrated, calibration_plan, calibration_record
from .source import CalibrationSource

__all__ = ["QUANTIZER", "HeadNodes", "head_nodes", "float_nodes", "kept_float_names", "quantize_qdq", "check_tensorrt_form",
           "check_kept_float", "quantize_onnx", "calibrated_qdq", "mixed_qdq", "producers_of", "initializers_of"]

#: name and version of this quantizer, part of every cache key: bump it when the output changes.
QUANTIZER = {"name": "nncf-onnx-qdq-s8", "version": 1}
_MIN_OPSET = 13  # per-channel (axis) DequantizeLinear


@dataclass(frozen=True)
class HeadNodes:
    """U2-Net's output head: the fuse conv, the Concat and Resizes on its input, the side convs, the Sigmoids."""

    fuse: str
    concat: str
    resizes: tuple[str, ...]
    sides: tuple[str, ...]
    sigmoids: tuple[str, ...]


def producers_of(graph: Any) -> dict[str, Any]:
    """Tensor name -> the node that makes it."""
    return {output: node for node in graph.node for output in node.output}


def _behind(name: str, producers: dict[str, Any]) -> tuple[Any, list[Any]]:
    """(the Conv that makes tensor `name`, the Resizes passed on the way): side maps are upsampled."""
    node, resizes = producers.get(name), []
    while node is not None and node.op_type == "Resize":
        resizes.append(node)
        node = producers.get(node.input[0])
    return (node if node is not None and node.op_type == "Conv" else None), resizes


def head_nodes(model: Any) -> HeadNodes:
    """Find the fuse conv (Conv -> Sigmoid -> first output) and the side convs feeding its Concat."""
    graph = model.graph
    producers = producers_of(graph)
    sigmoid = producers.get(graph.output[0].name)
    is_sigmoid = sigmoid is not None and sigmoid.op_type == "Sigmoid"
    fuse = _behind(sigmoid.input[0], producers)[0] if is_sigmoid else None
    concat = producers.get(fuse.input[0]) if fuse is not None else None
    if fuse is None or concat is None or concat.op_type != "Concat":
        raise ExportError("the graph does not end in U2-Net's head (Concat -> fuse Conv -> Sigmoid); cannot keep it "
                          "out of INT8")
    paths = [_behind(name, producers) for name in concat.input]
    sides = tuple(conv.name for conv, _ in paths if conv is not None)
    resizes = tuple(resize.name for _, chain in paths for resize in chain)
    sigmoids = tuple(node.name for node in graph.node if node.op_type == "Sigmoid")
    return HeadNodes(fuse.name, concat.name, resizes, sides, sigmoids)


def float_nodes(model: Any, keep: str = "fuse") -> list[str]:
    """Nodes kept in float besides the Sigmoids.

    `fuse` (the default): the fuse conv with its whole input, the Concat of the six side logits
    and their upsampling, so the logits reach the Sigmoid without an int8 step; `heads`: the
    side convs too; `none`: nothing.
    """
    if keep not in KEEP_FLOAT:
        raise ExportError(f"keep_float '{keep}': use {', '.join(KEEP_FLOAT)}")
    if keep == "auto":  # the head as `fuse`; the rest is chosen after calibration (`autokeep.py`)
        keep = "fuse"
    if keep == "none":
        return []
    head = head_nodes(model)
    names = [head.fuse, head.concat, *head.resizes]
    return names if keep == "fuse" else [*names, *head.sides]


def kept_float_names(model: Any, keep: str) -> list[str]:
    """Every node a quantizer must leave float: the `keep` set and the head Sigmoids."""
    return float_nodes(model, keep) + list(head_nodes(model).sigmoids)


def quantize_qdq(model: Any, source: CalibrationSource, calibration: CalibrationOptions | None = None,
                 progress: bool = True) -> Any:
    """The Q/DQ `onnx.ModelProto` of an fp32 U2-Net graph, calibrated on `source`.

    Args:
        model: fp32 ONNX model (opset >= 13).
        source: calibration batches shaped like the model's input.
        calibration: method, what stays float, bias correction (the images are `source`'s).
        progress: progress bars on stderr.
    """
    from ._nncf import nncf_quantize

    settings = calibration or CalibrationOptions()
    bias_correction = bias_correction_for("onnx", settings)
    if bias_correction != "fast":
        raise UnsupportedOptionError("the Q/DQ graph takes bias_correction 'fast' only: NNCF's full bias correction "
                                     "fails on U2-Net in its ONNX backend")
    input_name = model.graph.input[0].name
    # overflow_fix off: TensorRT has no u8 x s8 saturation to dodge, and the s8 activations (0..127
    # after a ReLU) cannot saturate AVX2's vpmaddubsw either, so every weight keeps all 8 bits.
    quantized = nncf_quantize(model, source, lambda batch: {input_name: batch}, method=settings.method,
                              subset_size=len(source), ignored_names=float_nodes(model, settings.keep_float),
                              signed=True, progress=progress, bias_correction=bias_correction,
                              overflow_fix="disable")  # fmt: skip
    del quantized.metadata_props[:]
    quantized.metadata_props.extend(model.metadata_props)
    return quantized


def initializers_of(model: Any) -> dict[str, np.ndarray]:
    """Initializer name -> its value as a numpy array."""
    from onnx import numpy_helper

    return {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}


def _check_pair(node: Any, values: dict[str, np.ndarray]) -> str | None:
    """What is wrong with one QuantizeLinear/DequantizeLinear for TensorRT, or None."""
    if len(node.input) < 3 or node.input[2] not in values:
        return f"{node.name} has no constant zero point"
    zero = values[node.input[2]]
    if zero.dtype != np.int8 or np.any(zero != 0):
        return f"{node.name} has a {zero.dtype} zero point {zero.ravel()[:3]} (TensorRT needs int8 zeros)"
    scale = values.get(node.input[1])
    if scale is None or np.any(scale <= 0):
        return f"{node.name} has no positive constant scale"
    weights = values.get(node.input[0]) if node.op_type == "DequantizeLinear" else None
    if weights is not None and weights.ndim > 1:
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if scale.size != weights.shape[0] or axis != 0:
            return f"{node.name}: weight scales must be per output channel (axis 0)"
        if weights.min() < -127:
            return f"{node.name}: int8 weights must lie in [-127, 127] for TensorRT"
    return None


def check_tensorrt_form(model: Any) -> dict[str, int]:
    """Raise `ExportError` unless the graph is TensorRT-form Q/DQ; returns counts for the manifest."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < _MIN_OPSET:
        raise ExportError(f"Q/DQ graph has opset {opset}; TensorRT's per-channel Q/DQ needs >= {_MIN_OPSET}")
    values, producers = initializers_of(model), producers_of(model.graph)
    pairs = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    problems = [p for p in (_check_pair(n, values) for n in pairs) if p]
    if problems:
        raise ExportError(f"the Q/DQ graph is not in TensorRT form ({len(problems)} nodes): {problems[0]}")
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    quantized = [c for c in convs if producers.get(c.input[1]) is not None
                 and producers[c.input[1]].op_type == "DequantizeLinear"]  # fmt: skip
    return {"quantize_linear": sum(n.op_type == "QuantizeLinear" for n in pairs),
            "dequantize_linear": sum(n.op_type == "DequantizeLinear" for n in pairs),
            "convs": len(convs), "int8_convs": len(quantized), "opset": opset}  # fmt: skip


def check_kept_float(model: Any, names: list[str]) -> None:
    """Raise `ExportError` when a node meant to stay float reads a DequantizeLinear output."""
    producers = producers_of(model.graph)
    wanted = set(names)
    for node in model.graph.node:
        if node.name in wanted and any(producers.get(i) is not None and producers[i].op_type == "DequantizeLinear"
                                       for i in node.input):
            raise ExportError(f"{node.name} was meant to stay float but reads int8 data; the quantizer did not "
                              "honour the ignored scope")


def _save_onnx(model: Any, folder: Path) -> list[Path]:
    onnx = require("onnx", "INT8 ONNX export")
    path = folder / "model.int8.onnx"
    onnx.save(model, str(path))
    return [path]


def quantize_onnx(fp32_onnx: Path, out: Path, spec: ModelSpec, options: Any) -> list[Path]:
    """`QUANTIZERS["onnx"]` and `["trt"]`: the calibrated Q/DQ ONNX at `out`, with a calibration record.

    Args:
        fp32_onnx: the checked fp32 export (its metadata is carried over).
        out: where to write the Q/DQ model.
        spec: the artifact's spec (input size and statistics for the calibration images).
        options: the `ExportOptions`; `options.calibration` names the images and the method.
    """
    onnx = require("onnx", "INT8 ONNX export")
    from ..export.manifest import ArtifactFiles

    calibration = options.calibration
    model = onnx.load(str(fp32_onnx))
    quantized, source, parts, cached = calibrated_qdq(model, spec, options)
    kept, auto = kept_float_names(model, calibration.keep_float), None
    if calibration.keep_float == "auto":
        quantized, auto = mixed_qdq(model, quantized, spec, options.progress)
        kept += auto.nodes
    form = check_tensorrt_form(quantized)
    check_kept_float(quantized, kept)
    onnx.save(quantized, str(out))
    record = calibration_record(
        parts, source, kept, cached, form,
        "onnxruntime, graph optimisation disabled (Q/DQ computed literally, as TensorRT)")
    if auto is not None:
        record["keep_float_auto"] = {**auto.to_dict(), "float_precision": "fp16"}
    return ArtifactFiles([Path(out)], {"calibration": record})


def calibrated_qdq(model: Any, spec: ModelSpec, options: Any) -> tuple[Any, CalibrationSource, dict[str, Any], bool]:
    """(Q/DQ model, images, cache parts, from the cache?); `auto` shares the `fuse` calibration."""
    import dataclasses

    onnx = require("onnx", "INT8 ONNX export")
    calibration = options.calibration
    if calibration.keep_float == "auto":
        calibration = dataclasses.replace(calibration, keep_float="fuse")
        options = dataclasses.replace(options, calibration=calibration)
    source, parts = calibration_plan(QUANTIZER, "onnx", model, spec, options, ("nncf", "onnx", "onnxruntime", "numpy"))
    quantized, cached = cached_or_calibrated(
        parts, calibration.cache, lambda path: onnx.load(str(path)),
        lambda: quantize_qdq(model, source, calibration, options.progress), _save_onnx, options.progress)
    return quantized, source, parts, cached


def mixed_qdq(model: Any, quantized: Any, spec: ModelSpec, progress: bool = True) -> tuple[Any, Any]:
    """(the INT8 + FP16 graph, the `AutoChoice`) for `--keep-float auto`: what to keep float is chosen by
    sensitivity in exact-INT8 emulation, then stored in fp16 (`mixed.to_mixed_fp16`)."""
    from .autokeep import auto_choice
    from .mixed import float_convs, to_mixed_fp16

    choice = auto_choice(model, quantized, spec, progress=progress)
    return to_mixed_fp16(float_convs(quantized, model, choice.nodes), choice.nodes), choice

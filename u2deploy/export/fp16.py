"""FP16 ONNX with the precision in the graph: fp16 weights and compute, fp32 inputs and outputs.

This is the graph a strongly typed TensorRT 11 build turns into an FP16 engine (DEPLOY_APIS.md
section 3; ModelOpt AutoCast with `keep_io_types=True` produces the same form). The pass is ours
rather than onnxconverter-common's because it only has to handle what the U2-Net export
contains (Conv, Relu, MaxPool, Concat, Add, Resize, Sigmoid and shape arithmetic), and it keeps
the two things TensorRT and ONNX Runtime are picky about explicit:

* the Sigmoid that produces each output stays fp32 (a saturated fp16 sigmoid loses the low end
  of the map, and the INT8 guide keeps the same op out of reduced precision);
* a convolution whose bias exceeds `BIAS_LIMIT` stays fp32. The pretrained U2-Net has four
  (stage1d.rebnconv2d/3d, stage2d.rebnconv1d/2d, biases 72-203) whose weighted sums largely
  cancel the bias, so fp16's spacing at that magnitude (up to 0.125) dominates what they compute.
  On the rocket photo, rounding only stage1d.rebnconv2d's parameters to fp16 takes the mask IoU
  to 0.988 and rounding all parameters to 0.976; all but these four, to 0.998 (also with fp16
  activations emulated). They are 2% of the model's MACs;
* Resize's `roi`/`scales` inputs stay fp32, as the operator requires.

Casts are inserted exactly where a tensor's type differs from what its consumer needs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["convert_to_fp16", "KEEP_FP32_OPS", "BIAS_LIMIT", "bias_needs_fp32"]

#: ops computed in fp32 (their float inputs are cast up first)
KEEP_FP32_OPS = ("Sigmoid",)
#: a conv bias beyond this magnitude keeps its conv in fp32 (see the module docstring)
BIAS_LIMIT = 64.0
#: float inputs that are parameters, not data, and must stay fp32: op -> input indices
_FLOAT_PARAM_INPUTS = {"Resize": (1, 2), "Upsample": (1,)}


def bias_needs_fp32(bias: np.ndarray, limit: float = BIAS_LIMIT) -> bool:
    """True when a conv with this bias should stay fp32 (shared by the ONNX and OpenVINO paths)."""
    return bias.size > 0 and float(np.abs(bias).max()) > limit


def _float_tensors(model: Any) -> set[str]:
    """Names of every fp32 tensor in the graph (inputs, initializers, inferred intermediates)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    values = list(graph.input) + list(graph.output) + list(graph.value_info)
    names = {v.name for v in values if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    return names | {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT}


def _fp32_nodes(graph: Any, keep_ops: tuple[str, ...], bias_limit: float,
                keep_names: frozenset[str] = frozenset()) -> set[int]:
    """Indices of the nodes that stay fp32: `keep_ops`, `keep_names`, Constants, and convs with a large bias."""
    from onnx import numpy_helper

    initializers = {t.name: t for t in graph.initializer}
    keep = set()
    for n, node in enumerate(graph.node):
        bias = initializers.get(node.input[2]) if node.op_type == "Conv" and len(node.input) > 2 else None
        if (node.op_type in keep_ops or node.op_type == "Constant" or node.name in keep_names
                or (bias is not None and bias_needs_fp32(numpy_helper.to_array(bias), bias_limit))):
            keep.add(n)
    return keep


def _needed_types(graph: Any, floats: set[str], keep: set[int]) -> dict[tuple[int, int], int]:
    """(node index, input index) -> the float type that slot needs, for every fp32 input slot."""
    from onnx import TensorProto

    needs = {}
    for n, node in enumerate(graph.node):
        params = _FLOAT_PARAM_INPUTS.get(node.op_type, ())
        for i, name in enumerate(node.input):
            if name in floats:
                fp32 = n in keep or i in params
                needs[(n, i)] = TensorProto.FLOAT if fp32 else TensorProto.FLOAT16
    return needs


def _convert_initializers(graph: Any, needs: dict[tuple[int, int], int]) -> set[str]:
    """Store as fp16 every fp32 initializer that only fp16 slots read; return their names."""
    from onnx import TensorProto, numpy_helper

    wanted: dict[str, set[int]] = {}
    for (n, i), dtype in needs.items():
        wanted.setdefault(graph.node[n].input[i], set()).add(dtype)
    converted = set()
    for k, init in enumerate(graph.initializer):
        if init.data_type == TensorProto.FLOAT and wanted.get(init.name) == {TensorProto.FLOAT16}:
            array = numpy_helper.to_array(init)
            if np.abs(array).max(initial=0.0) > np.finfo(np.float16).max:
                continue  # would overflow: leave it fp32 and cast at use
            graph.initializer[k].CopyFrom(numpy_helper.from_array(array.astype(np.float16), init.name))
            converted.add(init.name)
    return converted


def _tensor_types(graph: Any, floats: set[str], fp16_inits: set[str], keep: set[int]) -> dict[str, int]:
    """The float type each fp32 tensor has after the pass (fp16 Casts inside the fp16 part retargeted)."""
    from onnx import TensorProto

    types = {name: TensorProto.FLOAT for name in floats}
    types.update({name: TensorProto.FLOAT16 for name in fp16_inits})
    for n, node in enumerate(graph.node):
        if n in keep:
            continue
        for out in node.output:
            if out in floats:
                types[out] = TensorProto.FLOAT16
        if node.op_type == "Cast":
            for attr in node.attribute:
                if attr.name == "to" and attr.i == TensorProto.FLOAT:
                    attr.i = TensorProto.FLOAT16
    return types


def _insert_casts(graph: Any, needs: dict[tuple[int, int], int], types: dict[str, int]) -> None:
    """Cast where a slot needs another type than its tensor has; keep fp32 graph outputs."""
    from onnx import TensorProto, helper

    casts: dict[tuple[str, int], str] = {}
    new_nodes = []

    def cast(name: str, dtype: int) -> str:
        if (name, dtype) not in casts:
            suffix = "fp16" if dtype == TensorProto.FLOAT16 else "fp32"
            casts[(name, dtype)] = f"{name}__{suffix}"
            new_nodes.append(helper.make_node("Cast", [name], [casts[(name, dtype)]], to=dtype,
                                              name=f"{name}__cast_{suffix}"))
        return casts[(name, dtype)]

    for (n, i), dtype in needs.items():
        node = graph.node[n]
        if types.get(node.input[i], dtype) != dtype:
            node.input[i] = cast(node.input[i], dtype)
    for output in graph.output:
        if types.get(output.name) == TensorProto.FLOAT16:
            _rename_producer_output(graph, output.name, f"{output.name}__fp16")
            new_nodes.append(helper.make_node("Cast", [f"{output.name}__fp16"], [output.name], to=TensorProto.FLOAT,
                                              name=f"{output.name}__cast_fp32"))
    graph.node.extend(new_nodes)


def _rename_producer_output(graph: Any, old: str, new: str) -> None:
    for node in graph.node:
        for k, name in enumerate(node.output):
            if name == old:
                node.output[k] = new
        for k, name in enumerate(node.input):
            if name == old:
                node.input[k] = new


def toposort(graph: Any) -> None:
    """Reorder nodes so each comes after its inputs' producers (inserted casts and clones are appended)."""
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        remaining = []
        for node in pending:
            if all(name in ready for name in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                remaining.append(node)
        if len(remaining) == len(pending):
            from ..errors import ExportError

            raise ExportError(f"graph has a cycle or an input nobody produces, at {remaining[0].name}")
        pending = remaining
    ordered = [_copy(node) for node in ordered]  # detach before the container is cleared
    del graph.node[:]
    graph.node.extend(ordered)


def _copy(message: Any) -> Any:
    clone = type(message)()
    clone.CopyFrom(message)
    return clone


def convert_to_fp16(model: Any, keep_fp32_ops: tuple[str, ...] = KEEP_FP32_OPS, bias_limit: float = BIAS_LIMIT,
                    keep_fp32_names: frozenset[str] = frozenset()) -> Any:
    """Return an fp16 copy of an fp32 ONNX `model` with fp32 inputs and outputs.

    Args:
        model: an `onnx.ModelProto` with fp32 weights.
        keep_fp32_ops: op types that stay fp32 (the output Sigmoid by default).
        bias_limit: convs whose bias exceeds this magnitude stay fp32 (`inf` turns this off).
        keep_fp32_names: nodes that stay fp32 by name (the INT8 part of a mixed Q/DQ graph).
    """
    import onnx

    converted = onnx.ModelProto()
    converted.CopyFrom(model)
    graph = converted.graph
    floats = _float_tensors(converted)
    keep = _fp32_nodes(graph, keep_fp32_ops, bias_limit, frozenset(keep_fp32_names))
    needs = _needed_types(graph, floats, keep)
    fp16_inits = _convert_initializers(graph, needs)
    types = _tensor_types(graph, floats, fp16_inits, keep)
    _insert_casts(graph, needs, types)
    toposort(graph)
    del graph.value_info[:]  # stale fp32 annotations; inference below rebuilds them
    return onnx.shape_inference.infer_shapes(converted, strict_mode=True)

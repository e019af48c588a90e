"""Mixed precision in a calibrated Q/DQ graph: chosen convs back to float, without calibrating again.

A conv of the TensorRT-form Q/DQ graph is INT8 because it reads a DequantizeLinear weight and a
dequantized activation (possibly through a MaxPool, Resize or Concat that TensorRT moves the DQ
across). `float_convs` gives chosen convs their fp32 weights and bias back (the fp32 graph's, before
bias correction) and an input path without the Q/DQ step, cloning a shared MaxPool/Resize/Concat so
the INT8 convs that read the same tensor keep theirs. Every other scale stays as calibrated, so the
sensitivity search (`sensitivity.py`) and the `--keep-float auto` choice judge exactly the graph
they ship. Written here rather than with a library: ModelOpt and NNCF choose float layers only by
re-running the whole calibration (a minute per candidate on U2-Net).

`to_mixed_fp16` then stores the convs taken out of INT8 as fp16 (`export.fp16.convert_to_fp16`,
everything else kept as it is), so a strongly typed TensorRT build runs
INT8 + FP16 rather than INT8 + FP32.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .qdq import producers_of

__all__ = ["quantized_convs", "quantized_nodes", "conv_groups", "float_convs", "to_mixed_fp16", "block_of"]

_PASS_THROUGH = ("MaxPool", "Resize", "Concat")  # ops TensorRT commutes a DequantizeLinear across


def quantized_convs(model: Any) -> list[str]:
    """Names of the convs that read int8 weights (a DequantizeLinear on input 1), in graph order."""
    producers = producers_of(model.graph)
    return [node.name for node in model.graph.node if node.op_type == "Conv" and len(node.input) > 1
            and getattr(producers.get(node.input[1]), "op_type", "") == "DequantizeLinear"]  # fmt: skip


def quantized_nodes(model: Any) -> list[str]:
    """The INT8 convs and the residual Adds that read dequantized inputs, in graph order."""
    producers = producers_of(model.graph)
    convs = set(quantized_convs(model))
    return [node.name for node in model.graph.node if node.name in convs or (node.op_type == "Add" and any(
        getattr(producers.get(i), "op_type", "") == "DequantizeLinear" for i in node.input))]  # fmt: skip


def block_of(conv: str) -> str:
    """U2-Net's block of an exported conv name: `/stage5d/rebnconv1d/conv_s1/Conv` -> `stage5d`."""
    parts = [p for p in conv.split("/") if p]
    return parts[0] if len(parts) > 1 else conv


def conv_groups(names: Iterable[str], granularity: str = "block") -> dict[str, list[str]]:
    """Convs grouped by RSU block / side head (`block`) or one group per conv (`layer`), in order."""
    groups: dict[str, list[str]] = {}
    for name in names:
        key = block_of(name) if granularity == "block" else name.removesuffix("/Conv").lstrip("/")
        groups.setdefault(key, []).append(name)
    return groups


class _Floater:
    """Rewrites one graph: tensors read without their Q/DQ step, memoised per tensor."""

    def __init__(self, model: Any) -> None:
        self.graph = model.graph
        self.producers = producers_of(self.graph)
        self.float_of: dict[str, str] = {}
        self.new_nodes: list[Any] = []

    def tensor(self, name: str) -> str:
        """The float version of tensor `name` (itself when no Q/DQ step lies behind it)."""
        if name in self.float_of:
            return self.float_of[name]
        node, result = self.producers.get(name), name
        if node is not None and node.op_type == "DequantizeLinear":
            quantize = self.producers.get(node.input[0])
            if quantize is not None and quantize.op_type == "QuantizeLinear":
                result = self.tensor(quantize.input[0])  # a Resize between two Q/DQ pairs, ...
        elif node is not None and node.op_type in _PASS_THROUGH:
            inputs = [self.tensor(i) if k == 0 or node.op_type == "Concat" else i for k, i in enumerate(node.input)]
            if inputs != list(node.input):
                result = self._clone(node, inputs, name)
        self.float_of[name] = result
        return result

    def _clone(self, node: Any, inputs: list[str], name: str) -> str:
        import onnx

        clone = onnx.NodeProto()
        clone.CopyFrom(node)
        clone.name = f"{node.name}/float"
        del clone.input[:], clone.output[:]
        clone.input.extend(inputs)
        clone.output.extend(f"{out}/float" for out in node.output)
        self.new_nodes.append(clone)
        return f"{name}/float"


def _fp32_parameters(fp32_model: Any) -> dict[str, tuple[Any, ...]]:
    """Conv name -> its fp32 weight and bias initializers."""
    inits = {t.name: t for t in fp32_model.graph.initializer}
    return {node.name: tuple(inits[i] for i in node.input[1:] if i in inits)
            for node in fp32_model.graph.node if node.op_type == "Conv"}  # fmt: skip


def float_convs(qdq_model: Any, fp32_model: Any, names: Iterable[str]) -> Any:
    """A copy of `qdq_model` in which the nodes `names` compute in fp32.

    Args:
        qdq_model: the calibrated Q/DQ graph.
        fp32_model: the fp32 graph it was made from (same node names).
        names: convs (weights, bias and input back to fp32) and Adds (inputs without Q/DQ) to take
            out of INT8 (`quantized_nodes`).
    """
    import onnx

    model = onnx.ModelProto()
    model.CopyFrom(qdq_model)
    wanted, floater = set(names), _Floater(model)
    parameters = _fp32_parameters(fp32_model)
    for node in list(model.graph.node):
        if node.name not in wanted:
            continue
        if node.op_type != "Conv":
            for index, name in enumerate(node.input):
                node.input[index] = floater.tensor(name)
            continue
        params = parameters.get(node.name)
        if params is None:
            from ..errors import ExportError

            raise ExportError(f"conv {node.name} is not in the fp32 graph; pass the graph the Q/DQ one was made from")
        node.input[0] = floater.tensor(node.input[0])
        for index, init in enumerate(params, start=1):
            copy = onnx.TensorProto()
            copy.CopyFrom(init)
            copy.name = f"{init.name}/fp32"
            model.graph.initializer.append(copy)
            node.input[index] = copy.name
    model.graph.node.extend(floater.new_nodes)
    _prune(model.graph)
    from ..export.fp16 import toposort

    toposort(model.graph)
    return model


def _prune(graph: Any) -> None:
    """Drop nodes and initializers nothing reads any more (Q/DQ pairs left without a consumer)."""
    while True:
        used = {i for node in graph.node for i in node.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    used = {i for node in graph.node for i in node.input}
    for init in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(init)


def to_mixed_fp16(model: Any, fp16_convs: Iterable[str]) -> Any:
    """A mixed Q/DQ graph with the nodes `fp16_convs` (and the Relu after each conv) stored and computed in fp16.

    Everything else keeps its type: the INT8 convs with the ops TensorRT fuses into them
    (DequantizeLinear -> Conv -> Relu -> QuantizeLinear; a Cast between them would break the
    fusion), the Q/DQ pairs (fp32 scales at opset 17), the fp32 head and the Sigmoids. The fp16
    graph's own exception holds too: a conv with a bias beyond `fp16.BIAS_LIMIT` stays fp32.
    """
    from ..export.fp16 import convert_to_fp16

    wanted = set(fp16_convs)
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    half = set(wanted)  # the convs, and any residual Add taken out of INT8 with them
    for node in model.graph.node:
        if node.name in wanted:
            half.update(c.name for c in consumers.get(node.output[0], []) if c.op_type == "Relu")
    keep = frozenset(node.name for node in model.graph.node if node.name not in half)
    return convert_to_fp16(model, keep_fp32_names=keep)

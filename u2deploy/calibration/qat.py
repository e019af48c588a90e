"""The calibrated Q/DQ ONNX graph as a trainable torch module: fake quantization exactly where it ships.

Quantization-aware fine-tuning (`qat_train.py`) trains this module and writes the learned values
back into a copy of the same graph, so the result is still TensorRT-form Q/DQ (`check_tensorrt_form`
passes, the mixed-precision tools read it) and every fake-quant step is one QuantizeLinear/
DequantizeLinear pair of the shipped graph, nothing more and nothing less. A torch model with its own
fake-quant placement would have to be kept in step with NNCF's choices by hand.

`graph_module` executes the graph node by node (U2-Net's op subset: Conv, Relu, MaxPool, Resize,
Concat, Add, Sigmoid and the Q/DQ pairs). Conv weights and biases are parameters; each scale is a
calibrated value times exp(t) with a learnable t (0 at the start, so the first forward reproduces
the graph exactly; LSQ-style gradients, Esser et al. 2020, arXiv:1902.08153). Rounding is half to
even and clamping as ONNX QuantizeLinear does: [-128, 127] for activations, [-127, 127] for the int8
weights TensorRT takes. The same class runs the fp32 graph as the teacher.

Written here rather than converted: onnx2torch (1.5) has no QuantizeLinear/DequantizeLinear
converter, and ONNX Runtime's training API does not learn Q/DQ scales.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InputError
from .qdq import initializers_of, producers_of

__all__ = ["SUPPORTED_OPS", "fake_quantize", "graph_module", "learned_graph"]

SUPPORTED_OPS = ("Conv", "Relu", "MaxPool", "Resize", "Concat", "Add", "Sigmoid", "QuantizeLinear",
                 "DequantizeLinear")  # fmt: skip
_ACTIVATION_RANGE = (-128, 127)  # ONNX QuantizeLinear's int8 saturation
_WEIGHT_RANGE = (-127, 127)  # TensorRT's symmetric int8 weights


def _fake_quant_function() -> Any:
    import torch

    class FakeQuantize(torch.autograd.Function):
        """q = clamp(round_half_even(x / s)) * s; straight-through for x inside the range, LSQ's gradient for s."""

        @staticmethod
        def forward(ctx: Any, x: Any, scale: Any, low: int, high: int) -> Any:
            ctx.save_for_backward(x, scale)  # x is kept by the op before anyway; recomputing is cheaper
            ctx.low, ctx.high = low, high
            steps = x / scale  # division, as ONNX Runtime's QuantizeLinear (a reciprocal rounds differently)
            return steps.round_().clamp_(low, high).mul_(scale)

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            x, scale = ctx.saved_tensors
            scaled = x / scale
            steps = torch.round(scaled)
            inside = (steps >= ctx.low) & (steps <= ctx.high)
            grad_scale = grad * torch.where(inside, steps - scaled, steps.clamp(ctx.low, ctx.high))
            return grad * inside, _reduce_to(grad_scale, scale.shape), None, None

    return FakeQuantize


def _reduce_to(grad: Any, shape: Any) -> Any:
    """Sum a broadcast gradient back to the shape of what was broadcast (a per-tensor or per-channel scale)."""
    while grad.dim() > len(shape):
        grad = grad.sum(0)
    dims = [d for d, n in enumerate(shape) if n == 1 and grad.shape[d] != 1]
    return grad.sum(dims, keepdim=True) if dims else grad


_FAKE_QUANT: list[Any] = []


def fake_quantize(x: Any, scale: Any, low: int, high: int) -> Any:
    """`DequantizeLinear(QuantizeLinear(x))` with symmetric int8 `scale` (broadcastable), trainable."""
    if not _FAKE_QUANT:
        _FAKE_QUANT.append(_fake_quant_function())
    return _FAKE_QUANT[0].apply(x, scale, low, high)


def _per_channel(scale: Any, ndim: int) -> Any:
    """A per-output-channel scale (numpy or torch) shaped to broadcast over an `ndim`-d weight."""
    return scale.reshape((-1,) + (1,) * (ndim - 1))


def _attributes(node: Any) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _check_ops(model: Any) -> None:
    unknown = sorted({n.op_type for n in model.graph.node} - set(SUPPORTED_OPS))
    if unknown:
        raise InputError(f"QAT runs U2-Net's plain Q/DQ graph only; this one has {', '.join(unknown)} (a mixed "
                         "INT8+FP16 graph? start from the full-INT8 Q/DQ ONNX)")


def graph_module(model: Any, fp32_model: Any = None) -> Any:
    """A trainable `nn.Module` running `model` (a Q/DQ or fp32 graph) node by node.

    Args:
        model: the graph; its Q/DQ pairs become fake quantization.
        fp32_model: the fp32 graph `model` was calibrated from; latent weights start at its weights
            wherever they round to the graph's int8 weights (else at the dequantized ones).
    """
    return _module_class()(model, fp32_model)


class _Parameters:
    """Trainable values by initializer name: weights/biases (latent floats) and scales (log offsets)."""

    def __init__(self, torch: Any) -> None:
        self.torch = torch
        self.values = torch.nn.ParameterList()
        self.value_index: dict[str, int] = {}
        self.names: list[str] = []
        self.logs = torch.nn.ParameterList()
        self.bases: list[Any] = []
        self.scale_index: dict[str, int] = {}

    def value(self, name: str, array: np.ndarray) -> Any:
        if name not in self.value_index:
            self.value_index[name] = len(self.values)
            self.names.append(name)
            self.values.append(self.torch.nn.Parameter(self.torch.from_numpy(np.array(array, np.float32))))
        return self.values[self.value_index[name]]

    def scale(self, name: str, array: np.ndarray) -> int:
        if name not in self.scale_index:
            self.scale_index[name] = len(self.logs)
            self.bases.append(self.torch.from_numpy(np.array(array, np.float32)))
            self.logs.append(self.torch.nn.Parameter(self.torch.zeros_like(self.bases[-1])))
        return self.scale_index[name]


_CLASS: list[Any] = []


def _module_class() -> Any:
    if not _CLASS:
        _CLASS.append(_build_module_class())
    return _CLASS[0]


def _build_module_class() -> Any:
    """The module class, defined once torch is imported (heavy imports stay inside functions)."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    class QdqGraphModule(torch.nn.Module):
        """Executes an ONNX graph (Q/DQ or fp32) node by node with trainable weights and scales (`graph_module`)."""

        def __init__(self, model: Any, fp32_model: Any = None) -> None:
            super().__init__()
            _check_ops(model)
            self.model = model
            self.constants = initializers_of(model)
            self.producers = producers_of(model.graph)
            self.fp32_weights = _fp32_weights(fp32_model)
            self.params = _Parameters(torch)
            self.values, self.logs = self.params.values, self.params.logs
            self.steps = [self._plan(node) for node in model.graph.node]
            self.input_name = model.graph.input[0].name
            self.input_hw = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim][2:]
            self.ratio = (1, 1)
            self.output_names = [o.name for o in model.graph.output]

        # -- planning: which initializers become parameters ------------------------------------

        def _plan(self, node: Any) -> tuple[Any, ...]:
            attrs = _attributes(node)
            if node.op_type == "DequantizeLinear" and node.input[0] in self.constants:
                self._weight_from_int8(node)
            elif node.op_type == "Conv":
                for name in node.input[1:]:
                    if name in self.constants:
                        self.params.value(name, self.constants[name])
            elif node.op_type == "QuantizeLinear":
                self.params.scale(node.input[1], self.constants[node.input[1]])
            return node.op_type, list(node.input), list(node.output), attrs

        def _weight_from_int8(self, node: Any) -> None:
            """A latent weight, in units of its initial quantization step, rounding to the graph's int8 weight.

            Step units let one learning rate fit channels whose weights differ by orders of magnitude.
            """
            int8 = self.constants[node.input[0]]
            scale = self.constants[node.input[1]]
            self.params.scale(node.input[1], scale)
            steps = int8.astype(np.float32)
            fp32 = self.fp32_weights.get(self._conv_reading(node.output[0]))
            if fp32 is not None and fp32.shape == int8.shape:
                latent = fp32 / _per_channel(scale, int8.ndim)
                steps = np.where(np.clip(np.round(latent), *_WEIGHT_RANGE) == int8, latent, steps)
            self.params.value(node.input[0], steps)

        def _conv_reading(self, tensor: str) -> str | None:
            return next((n.name for n in self.model.graph.node if n.op_type == "Conv" and tensor in n.input), None)

        # -- values ----------------------------------------------------------------------------

        def scale(self, name: str) -> Any:
            index = self.params.scale_index[name]
            return self.params.bases[index] * torch.exp(self.logs[index])

        def weight(self, int8_name: str, scale_name: str) -> Any:
            """An int8 conv's latent float weight: its step-unit parameter times the initial scale."""
            steps = self.values[self.params.value_index[int8_name]]
            base = self.params.bases[self.params.scale_index[scale_name]]
            return steps * _per_channel(base, steps.dim())

        def is_step_unit(self, index: int) -> bool:
            return self.constants[self.params.names[index]].dtype == np.int8

        def value(self, name: str) -> Any:
            index = self.params.value_index.get(name)
            if index is not None:
                return self.values[index]
            return torch.from_numpy(np.asarray(self.constants[name]))

        # -- execution -------------------------------------------------------------------------

        def forward(self, x: Any, outputs: Sequence[str] | None = None) -> list[Any]:
            """The tensors `outputs` (default: the graph's outputs) for input `x` (NCHW float32)."""
            wanted = list(outputs or self.output_names)
            self.ratio = tuple(n / m if m else 1 for n, m in zip(x.shape[2:], self.input_hw, strict=True))
            env: dict[str, Any] = {self.input_name: x}
            for op, inputs, outs, attrs in self.steps:
                env[outs[0]] = getattr(self, f"_op_{op}")(env, inputs, attrs)
            return [env[name] for name in wanted]

        def _op_QuantizeLinear(self, env: dict, inputs: list[str], attrs: dict) -> Any:  # noqa: N802
            return ("quantized", env[inputs[0]], inputs[1])  # computed with its DequantizeLinear

        def _op_DequantizeLinear(self, env: dict, inputs: list[str], attrs: dict) -> Any:  # noqa: N802
            if inputs[0] in self.params.value_index:  # int8 weight, per output channel
                weight = self.weight(inputs[0], inputs[1])
                scale = _per_channel(self.scale(inputs[1]), weight.dim())
                return fake_quantize(weight, scale, *_WEIGHT_RANGE)
            _, x, scale_name = env[inputs[0]]
            return fake_quantize(x, self.scale(scale_name), *_ACTIVATION_RANGE)

        def _op_Conv(self, env: dict, inputs: list[str], attrs: dict) -> Any:  # noqa: N802
            weight = env[inputs[1]] if inputs[1] in env else self.value(inputs[1])
            bias = (env[inputs[2]] if inputs[2] in env else self.value(inputs[2])) if len(inputs) > 2 else None
            x, pads = env[inputs[0]], attrs.get("pads", [0, 0, 0, 0])
            half = len(pads) // 2
            if pads[:half] != pads[half:]:
                x = F.pad(x, [pads[half + 1], pads[1], pads[half], pads[0]])
                pads = [0] * len(pads)
            return F.conv2d(x, weight, bias, attrs.get("strides", 1), pads[:half], attrs.get("dilations", 1),
                            attrs.get("group", 1))

        def _op_Relu(self, env: dict, inputs: list[str], attrs: dict) -> Any:  # noqa: N802
            return F.relu(env[inputs[0]])

        def _op_Sigmoid(self, env: dict, inputs: list[str], attrs: dict) -> Any:  # noqa: N802
            return torch.sigmoid(env[inputs[0]])

        def _op_Add(self, env: dict, inputs: list[str], attrs: dict) -> Any:  # noqa: N802
            return env[inputs[0]] + env[inputs[1]]

        def _op_Concat(self, env: dict, inputs: list[str], attrs: dict) -> Any:  # noqa: N802
            return torch.cat([env[name] for name in inputs], dim=attrs["axis"])

        def _op_MaxPool(self, env: dict, inputs: list[str], attrs: dict) -> Any:  # noqa: N802
            pads = attrs.get("pads", [0, 0, 0, 0])
            if pads[:2] != pads[2:]:
                raise InputError(f"QAT: MaxPool with asymmetric pads {pads} is not supported")
            return F.max_pool2d(env[inputs[0]], attrs["kernel_shape"], attrs.get("strides", 1), pads[:2],
                                attrs.get("dilations", 1), bool(attrs.get("ceil_mode", 0)))

        def _op_Resize(self, env: dict, inputs: list[str], attrs: dict) -> Any:  # noqa: N802
            mode = attrs.get("mode", b"nearest").decode()
            transform = attrs.get("coordinate_transformation_mode", b"half_pixel").decode()
            if mode != "linear" or transform not in ("half_pixel", "pytorch_half_pixel"):
                raise InputError(f"QAT: Resize {mode}/{transform} is not supported (U2-Net exports linear/half_pixel)")
            x = env[inputs[0]]
            if len(inputs) > 3 and inputs[3]:
                size = self._resized(self.constants[inputs[3]][2:])
            else:
                scales = self.constants[inputs[2]][2:]
                size = [int(np.floor(n * s)) for n, s in zip(x.shape[2:], scales, strict=True)]
            return F.interpolate(x, size=size, mode="bilinear", align_corners=False)

        def _resized(self, sizes: np.ndarray) -> list[int]:
            """A Resize's constant output size, scaled when the input is a crop smaller than the graph's."""
            scaled = [float(n) * r for n, r in zip(sizes, self.ratio, strict=True)]
            if any(abs(v - round(v)) > 1e-6 for v in scaled):
                raise InputError(f"QAT crop {self.ratio} of the graph's input does not keep U2-Net's sizes whole; "
                                 "use a crop that is the input size divided by 2, 4, ...")
            return [int(round(v)) for v in scaled]

        # -- export ----------------------------------------------------------------------------

        def learned_initializers(self) -> dict[str, np.ndarray]:
            """Initializer name -> its learned value, typed as in the graph (int8 weights rounded, clamped)."""
            values: dict[str, np.ndarray] = {}
            with torch.no_grad():
                for name in self.params.scale_index:
                    values[name] = self.scale(name).numpy().astype(np.float32).reshape(self.constants[name].shape)
                for name, index in self.params.value_index.items():
                    latent = self.values[index].detach()
                    if self.constants[name].dtype == np.int8:
                        scale_name = self._scale_of_weight(name)
                        scale = _per_channel(self.scale(scale_name), latent.dim())
                        latent = torch.clamp(torch.round(self.weight(name, scale_name) / scale), *_WEIGHT_RANGE)
                        latent = latent.to(torch.int8)
                    values[name] = latent.numpy().astype(self.constants[name].dtype)
            self._paired_scales(values)
            return values

        def _scale_of_weight(self, int8_name: str) -> str:
            node = next(n for n in self.model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] == int8_name)
            return node.input[1]

        def _paired_scales(self, values: dict[str, np.ndarray]) -> None:
            """A DequantizeLinear with its own scale initializer gets its QuantizeLinear's learned scale."""
            for node in self.model.graph.node:
                quantize = self.producers.get(node.input[0]) if node.op_type == "DequantizeLinear" else None
                if quantize is not None and quantize.op_type == "QuantizeLinear" and node.input[1] != quantize.input[1]:
                    values[node.input[1]] = values[quantize.input[1]].reshape(self.constants[node.input[1]].shape)

    return QdqGraphModule


def _fp32_weights(fp32_model: Any) -> dict[str, np.ndarray]:
    """Conv node name -> its fp32 weight (the graph the Q/DQ one was calibrated from)."""
    if fp32_model is None:
        return {}
    values = initializers_of(fp32_model)
    return {n.name: values[n.input[1]] for n in fp32_model.graph.node
            if n.op_type == "Conv" and n.input[1] in values}  # fmt: skip


def learned_graph(module: Any) -> Any:
    """A copy of the module's graph with its learned weights, biases and scales written in (same names, types)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(module.model)
    values = module.learned_initializers()
    for index, init in enumerate(model.graph.initializer):
        if init.name in values:
            model.graph.initializer[index].CopyFrom(numpy_helper.from_array(values[init.name], init.name))
    return model

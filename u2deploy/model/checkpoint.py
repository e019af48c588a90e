"""Loading every kind of U2-Net weights file, and saving u2deploy checkpoints.

Accepted sources:

* official ``.pth`` files: a plain state_dict, with or without a ``module.`` prefix (DataParallel)
  and with or without ``num_batches_tracked``;
* u2deploy checkpoints: ``{"format": "u2deploy-checkpoint", "spec": ..., "state_dict": ...}``;
* an ONNX export of the network, BatchNorm folded into the convolutions (rembg's ``u2net.onnx``,
  or u2deploy's own fp32/fp16 exports): the k-th Conv node in graph order is the k-th conv in
  module-registration order (shapes alone are ambiguous), and BatchNorm is set to identity.

Nothing here executes code from a file: ``torch.load(weights_only=True)`` and ``onnx.load``.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__
from .._io import atomic_path, sha256_file
from ..errors import InputError, ModelLoadError, U2DeployError, first_line
from ..spec import METADATA_KEY, ModelSpec, spec_for_task
from .registry import create_model, detect_arch
from .u2net import U2Net

__all__ = ["LoadedModel", "load_checkpoint", "load_model", "save_checkpoint", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "u2deploy-checkpoint"


@dataclass
class LoadedModel:
    """A model in eval mode plus what is known about where it came from."""

    model: U2Net
    spec: ModelSpec
    source: str
    sha256: str
    provenance: dict[str, Any] = field(default_factory=dict)


def load_model(source: str | os.PathLike, task: str | None = None) -> U2Net:
    """Load weights from a file or a known weights name (see `load_checkpoint`) into an eval model."""
    return load_checkpoint(source, task=task).model


def load_checkpoint(source: str | os.PathLike, task: str | None = None) -> LoadedModel:
    """Load a `.pth`/`.pt`, u2deploy checkpoint or `.onnx` file, or a weights name like `u2net`.

    Args:
        source: a path, or the name of a known pretrained model (fetched into the cache if needed).
        task: overrides the task for files that carry none (official `.pth` files are `sod`
            unless told otherwise).
    """
    from ..weights import resolve_model_path

    path = resolve_model_path(source)
    if path.suffix.lower() == ".onnx":
        loaded = _load_onnx(path, task)
    else:
        loaded = _load_torch(path, task)
    _check_finite_weights(loaded.model, path)
    loaded.model.eval()
    return loaded


def _check_finite_weights(model: nn.Module, path: Path) -> None:
    """NaN/inf weights give a NaN or black map without a word: refuse the file at load."""
    bad = [name for name, tensor in model.state_dict().items()
           if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]  # fmt: skip
    if bad:
        raise ModelLoadError(f"{path}: {len(bad)} weight tensor(s) hold NaN or inf (e.g. {bad[0]}); the file is "
                             "damaged or its training diverged")


def _spec_from(path: Path, read: Any, task: str | None) -> ModelSpec:
    """The spec a file carries, with any malformed field reported against the file."""
    try:
        return read().with_task(task)
    except InputError as exc:
        raise ModelLoadError(f"{path}: stored {exc}; re-export or re-save the model") from None


# --------------------------------------------------------------------------------------------
# PyTorch files


def _torch_load(path: Path) -> Any:
    import pickle

    with open(path, "rb") as handle:
        magic = handle.read(4)
    # torch.save writes a zip archive (PK..) or, before 1.6, a pickle (protocol byte 0x80).
    if not (magic.startswith(b"PK\x03\x04") or magic[:1] == b"\x80"):
        raise ModelLoadError(f"{path}: not a PyTorch checkpoint (neither a zip archive nor a pickle)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelLoadError(
            f"{path}: refused to load: the file holds objects other than tensors and plain data, and "
            f"u2deploy never runs code from a checkpoint ({first_line(exc)})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}: not a PyTorch checkpoint ({first_line(exc)})") from None


def _load_torch(path: Path, task: str | None) -> LoadedModel:
    payload = _torch_load(path)
    if isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT:
        return _from_u2deploy_checkpoint(path, payload, task)
    state = _find_state_dict(path, payload)
    arch = detect_arch({k: tuple(v.shape) for k, v in state.items()})
    model = create_model(arch)
    load_state_dict_checked(model, state, path)
    spec = spec_for_task(task or "sod", arch=arch)
    return LoadedModel(model, spec, str(path), sha256_file(path), {"kind": "pytorch-state-dict"})


def _from_u2deploy_checkpoint(path: Path, payload: dict[str, Any], task: str | None) -> LoadedModel:
    spec = _spec_from(path, lambda: ModelSpec.from_dict(payload.get("spec")), task)
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelLoadError(f"{path}: a u2deploy checkpoint without a state_dict of tensors; the file is damaged")
    try:
        model = create_model(spec.arch)
    except U2DeployError as exc:
        raise ModelLoadError(f"{path}: {exc}") from None
    load_state_dict_checked(model, state, path)
    provenance = payload.get("provenance")
    provenance = dict(provenance) if isinstance(provenance, dict) else {}
    return LoadedModel(model, spec, str(path), sha256_file(path), provenance)


def _find_state_dict(path: Path, payload: Any) -> dict[str, torch.Tensor]:
    """The tensor mapping inside `payload`, with a DataParallel `module.` prefix removed."""
    if isinstance(payload, dict):
        for key in ("state_dict", "model", "net"):
            inner = payload.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                payload = inner
                break
    if not isinstance(payload, dict) or not payload or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise ModelLoadError(f"{path}: holds no state_dict (expected a mapping of parameter names to tensors)")
    return OrderedDict((k[len("module."):] if k.startswith("module.") else k, v) for k, v in payload.items())


def load_state_dict_checked(model: nn.Module, state: dict[str, torch.Tensor], source: str | os.PathLike) -> None:
    """`load_state_dict(strict=True)` with `num_batches_tracked` optional and one clear error."""
    expected = model.state_dict()
    state = dict(state)
    for key, value in expected.items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = value
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]  # fmt: skip
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})")
        arch = getattr(model, "arch", type(model).__name__)
        raise ModelLoadError(f"{source}: weights do not fit {arch}: {'; '.join(parts)}")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)


def save_checkpoint(model: U2Net, path: str | os.PathLike, spec: ModelSpec, provenance: dict[str, Any] | None = None,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write a u2deploy checkpoint atomically; it loads with `torch.load(weights_only=True)`."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": 1,
        "u2deploy_version": __version__,
        "spec": spec.to_dict(),
        "provenance": provenance or {},
        "state_dict": OrderedDict((k, v.detach().cpu().contiguous()) for k, v in model.state_dict().items()),
    }
    if extra:
        payload.update(extra)
    path = Path(path)
    with atomic_path(path, suffix=".pth") as tmp:
        torch.save(payload, tmp)
    return path


# --------------------------------------------------------------------------------------------
# ONNX files


def _load_onnx(path: Path, task: str | None) -> LoadedModel:
    from .._deps import require

    onnx = require("onnx", "importing ONNX weights")
    try:
        graph_model = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError, ValueError, ... for non-ONNX files
        raise ModelLoadError(f"{path}: not an ONNX model ({first_line(exc)})") from None
    weights = _conv_weights(graph_model, path)
    arch = _arch_from_conv_shapes([tuple(w.shape) for w, _, _ in weights], path)
    model = create_model(arch)
    _copy_convs(model, weights, path)
    _set_batchnorm_identity(model)
    stored = {p.key: p.value for p in graph_model.metadata_props}
    if METADATA_KEY in stored:
        spec = _spec_from(path, lambda: ModelSpec.from_json(stored[METADATA_KEY]), task)
    else:
        spec = spec_for_task(task or "sod", arch=arch)
    provenance = {"kind": "onnx-bn-folded", "opset": max(o.version for o in graph_model.opset_import if o.domain in ("", "ai.onnx"))}
    return LoadedModel(model, spec, str(path), sha256_file(path), provenance)


def _conv_weights(graph_model: Any, path: Path) -> list[tuple[torch.Tensor, torch.Tensor | None, tuple[int, ...]]]:
    """(weight, bias, dilations) for every Conv node, in graph order."""
    from onnx import numpy_helper

    graph = graph_model.graph
    constants = {init.name: init for init in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    if any(node.op_type in ("QuantizeLinear", "DequantizeLinear", "QLinearConv") for node in graph.node):
        raise ModelLoadError(f"{path}: is a quantized (INT8) ONNX; import its FP32 source instead")

    def value_of(name: str) -> torch.Tensor:
        if name in constants:
            return torch.from_numpy(numpy_helper.to_array(constants[name]).astype("float32"))
        node = producers.get(name)
        if node is not None and node.op_type == "Constant":
            return torch.from_numpy(numpy_helper.to_array(node.attribute[0].t).astype("float32"))
        if node is not None and node.op_type in ("Cast", "Identity"):
            return value_of(node.input[0])
        raise ModelLoadError(f"{path}: Conv weight '{name}' is not a constant; cannot import these weights")

    convs = []
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        dilations = next((tuple(a.ints) for a in node.attribute if a.name == "dilations"), (1, 1))
        bias = value_of(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        convs.append((value_of(node.input[1]), bias, dilations))
    if not convs:
        raise ModelLoadError(f"{path}: has no Conv nodes; it is not a U2-Net export")
    return convs


def _model_convs(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def _arch_from_conv_shapes(shapes: list[tuple[int, ...]], path: Path) -> str:
    from .registry import MODELS

    for arch in MODELS:
        convs = _model_convs(create_model(arch))
        if len(convs) == len(shapes) and all(tuple(m.weight.shape) == s for (_, m), s in zip(convs, shapes, strict=True)):
            return arch
    raise ModelLoadError(
        f"{path}: its {len(shapes)} Conv layers do not match U2-Net (119 convs) or U2-Netp in order and shape; "
        "it is a different network"
    )


def _copy_convs(model: nn.Module, weights: list, path: Path) -> None:
    with torch.no_grad():
        for (name, conv), (weight, bias, dilations) in zip(_model_convs(model), weights, strict=True):
            if tuple(conv.dilation) != tuple(dilations):
                raise ModelLoadError(f"{path}: conv for '{name}' has dilation {dilations}, expected {tuple(conv.dilation)}")
            conv.weight.copy_(weight)
            conv.bias.copy_(bias if bias is not None else torch.zeros_like(conv.bias))


def _set_batchnorm_identity(model: nn.Module) -> None:
    """BN(x) = x once running_var + eps = 1 and the affine terms are (1, 0)."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.fill_(1.0)
                module.bias.zero_()
                module.running_mean.zero_()
                module.running_var.fill_(1.0 - module.eps)

"""Model variants by name, and recognising a variant from its weights."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import InputError, ModelLoadError

__all__ = ["MODELS", "create_model", "list_models", "detect_arch"]

#: name -> entrypoint in u2deploy.model.u2net
MODELS: dict[str, str] = {"u2net": "u2net", "u2netp": "u2netp", "u2net_test": "u2net_test"}


def list_models() -> list[str]:
    return list(MODELS)


def create_model(name: str, **kwargs: Any):
    """Build an untrained model by variant name (`u2net`, `u2netp`, `u2net_test`)."""
    if name not in MODELS:
        raise InputError(f"unknown model '{name}'; available: {', '.join(MODELS)}")
    import importlib

    module = importlib.import_module("u2deploy.model.u2net")
    return getattr(module, MODELS[name])(**kwargs)


def detect_arch(shapes: Mapping[str, tuple[int, ...]]) -> str:
    """Name the variant whose stage1/stage2 conv shapes match `shapes` (key -> shape).

    U2-Net and U2-Netp share key names, so only the shapes tell them apart.
    """
    probe = ("stage1.rebnconv1.conv_s1.weight", "stage2.rebnconvin.conv_s1.weight", "stage6.rebnconv1.conv_s1.weight")
    missing = [key for key in probe if key not in shapes]
    if missing:
        raise ModelLoadError(
            f"weights do not look like a U2-Net: key(s) {', '.join(missing)} missing "
            f"(found e.g. {', '.join(list(shapes)[:3]) or 'nothing'})"
        )
    found = tuple(tuple(shapes[key]) for key in probe)
    for name in MODELS:
        reference = create_model(name).state_dict()
        if all(tuple(reference[key].shape) == shape for key, shape in zip(probe, found, strict=True)):
            return name
    raise ModelLoadError(f"weights have U2-Net keys but unknown channel sizes {found}; known variants: {', '.join(MODELS)}")

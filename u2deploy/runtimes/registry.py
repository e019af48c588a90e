"""Backends by name and by file suffix, resolved on demand (no backend library is imported here)."""

from __future__ import annotations

import difflib
import importlib
from pathlib import Path

from .._deps import available
from ..errors import InputError

__all__ = ["BACKENDS", "SUFFIXES", "LIBRARIES", "backend_class", "backend_for_path", "available_backends"]

BACKENDS: dict[str, str] = {
    "torch": "u2deploy.runtimes.torch_backend:TorchBackend",
    "onnxruntime": "u2deploy.runtimes.ort:OrtBackend",
    "openvino": "u2deploy.runtimes.ov:OpenVinoBackend",
    "tensorrt": "u2deploy.runtimes.trt:TrtBackend",
}

SUFFIXES: dict[str, str] = {
    ".pth": "torch",
    ".pt": "torch",
    ".onnx": "onnxruntime",
    ".xml": "openvino",
    ".engine": "tensorrt",
    ".plan": "tensorrt",
}

#: the import each backend needs
LIBRARIES: dict[str, str] = {"torch": "torch", "onnxruntime": "onnxruntime", "openvino": "openvino", "tensorrt": "tensorrt"}


def _unknown(kind: str, value: str, choices: list[str]) -> InputError:
    close = difflib.get_close_matches(value, choices, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return InputError(f"unknown {kind} '{value}'{hint}; available: {', '.join(choices)}")


def backend_class(name: str) -> type:
    if name not in BACKENDS:
        raise _unknown("backend", name, list(BACKENDS))
    module_name, class_name = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def backend_for_path(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError(
            f"{path}: cannot tell the backend from the suffix '{suffix or '(none)'}'; "
            f"use one of {', '.join(SUFFIXES)} or pass backend=..."
        )
    return SUFFIXES[suffix]


def available_backends() -> list[str]:
    return [name for name, library in LIBRARIES.items() if available(library)]

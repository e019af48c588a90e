"""Backends by name and by file suffix, resolved on demand (no backend library is imported here)."""

from __future__ import annotations

from pathlib import Path

from .._deps import available
from .._registry import resolve_entry
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


def backend_class(name: str, source: str = "backend=") -> type:
    """The backend class registered as `name`; unknown or not-yet-shipped names raise one clear error."""
    return resolve_entry(BACKENDS, name, "backend", source)


def backend_for_path(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError(
            f"{path}: cannot tell the backend from the suffix '{suffix or '(none)'}'; "
            f"give a weights name or a {', '.join(SUFFIXES)} file (or choose the backend: --backend, backend=)"
        )
    return SUFFIXES[suffix]


def available_backends() -> list[str]:
    return [name for name, library in LIBRARIES.items() if available(library)]

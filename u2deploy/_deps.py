"""The one place that knows which optional package belongs to which extra.

`available()` never imports (it asks importlib for a spec), so it is cheap and safe at import
time; `require()` imports the module or raises `MissingDependencyError` with the fix.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import threading
from types import ModuleType

from .errors import MissingDependencyError

_IMPORT_LOCK = threading.RLock()  # `require` may run inside another module's import

__all__ = ["available", "require", "EXTRAS"]

#: import name -> (pip extra that provides it, what to tell the user)
EXTRAS: dict[str, tuple[str, str]] = {
    "torch": ("torch", "pip install 'u2deploy[torch]' (CPU: add -c constraints-cpu.txt)"),
    "onnx": ("onnx", "pip install 'u2deploy[onnx]'"),
    "onnxruntime": ("onnx", "pip install 'u2deploy[onnx]' (or onnxruntime-gpu for CUDA)"),
    "onnxslim": ("onnx", "pip install 'u2deploy[onnx]'"),
    "openvino": ("openvino", "pip install 'u2deploy[openvino]'"),
    "nncf": ("quant", "pip install 'u2deploy[quant]'"),
    "tensorrt": (
        "tensorrt",
        "pip install 'u2deploy[tensorrt]' (NVIDIA GPU); Jetson: JetPack's, not pip (sudo apt install "
        "python3-libnvinfer, venv with --system-site-packages; JetPack 6 ships TensorRT 10.3, check with dpkg -l | "
        "grep nvinfer); pip gives TensorRT 11, add 'tensorrt-cu12<11' for 10.x",
    ),
    "cuda": ("tensorrt", "pip install cuda-python (or use a CUDA build of PyTorch)"),
    "cv2": ("opencv", "pip install 'u2deploy[opencv]' (on Jetson use JetPack's OpenCV: apt install python3-opencv)"),
    "skimage": ("dev", "pip install scikit-image"),
    "py_sod_metrics": ("train", "pip install 'u2deploy[train]'"),
    "matplotlib": ("bench", "pip install 'u2deploy[bench]'"),
    "pymatting": ("matting", "pip install 'u2deploy[matting]'"),
    "av": ("video", "pip install 'u2deploy[video]' (PyAV: FFmpeg in a wheel)"),
    "fastapi": ("serve", "pip install 'u2deploy[serve]'"),
    "uvicorn": ("serve", "pip install 'u2deploy[serve]'"),
    "prometheus_client": ("serve", "pip install 'u2deploy[serve]'"),
    "rembg": ("", "pip install rembg (optional peer for `u2deploy bench`)"),
    "ray": ("ray", "pip install 'u2deploy[ray]'"),
    "ray.serve": ("ray", "pip install 'u2deploy[ray]'"),
    "pyarrow": ("ray", "pip install 'u2deploy[ray]'"),
    "tritonclient": ("triton", "pip install 'u2deploy[triton]'"),
}


def available(module: str) -> bool:
    """True when `module` can be imported, without importing it.

    A folder holding only type stubs (`tensorrt-stubs` installs `tensorrt/__init__.pyi`) imports as
    an empty namespace package; that is not the library.
    """
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return False
    return spec is not None and not _stubs_only(spec)


def _stubs_only(spec: importlib.machinery.ModuleSpec) -> bool:
    """A namespace package whose folders hold nothing but `.pyi` stubs and `py.typed` (real namespace
    packages such as cuda-python's `cuda` hold subpackages)."""
    if spec.origin not in (None, "namespace") or not spec.submodule_search_locations:
        return False
    from pathlib import Path

    entries = [entry for folder in spec.submodule_search_locations for entry in Path(folder).iterdir()]
    return all(entry.suffix == ".pyi" or entry.name in ("py.typed", "__pycache__") for entry in entries)


def require(module: str, feature: str = "") -> ModuleType:
    """Import `module` or raise `MissingDependencyError` naming the feature and the fix."""
    try:
        # one import at a time: while a thread imports cv2, `find_spec` in another sees a half-made
        # module (`cv2.__spec__ is None`) and raises ValueError (seen under concurrent serve requests)
        with _IMPORT_LOCK:
            spec = importlib.util.find_spec(module)
            if spec is not None and _stubs_only(spec):
                raise ImportError(f"only type stubs named {module} were found")
            return importlib.import_module(module)
    except ImportError as exc:
        fix = EXTRAS.get(module, ("", f"pip install {module}"))[1]
        what = f" for {feature}" if feature else ""
        error = MissingDependencyError(f"'{module}' is needed{what} but is not installed; fix: {fix}")
        error.details = str(exc)  # the ImportError's own text, shown with -v
        raise error from exc

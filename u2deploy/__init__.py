"""u2deploy: ship U2-Net to real devices.

``from u2deploy import Runtime`` gives one API over every backend; ``u2deploy`` on the command
line exports, benchmarks and runs models. Heavy packages (torch, onnxruntime, openvino, tensorrt)
are imported only by the code that needs them, so this import is cheap and works with none of them.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "Runtime", "load_model", "load_checkpoint", "create_model", "ModelSpec"]


def __getattr__(name: str):
    # Lazy re-exports: importing u2deploy must not import torch or any runtime.
    if name == "Runtime":
        from .runtimes.runtime import Runtime

        return Runtime
    if name in ("load_model", "load_checkpoint", "create_model"):
        from . import model

        return getattr(model, name)
    if name == "ModelSpec":
        from .spec import ModelSpec

        return ModelSpec
    raise AttributeError(f"module 'u2deploy' has no attribute '{name}'")

"""The reference U2-Net in PyTorch: variants, checkpoints, the export head and cost counting."""

from __future__ import annotations

from .checkpoint import LoadedModel, load_checkpoint, load_model, save_checkpoint
from .deploy import DeployHead
from .registry import create_model, detect_arch, list_models
from .u2net import U2Net, u2net, u2net_test, u2netp

__all__ = ["U2Net", "u2net", "u2netp", "u2net_test", "create_model", "list_models", "detect_arch",
           "DeployHead", "LoadedModel", "load_model", "load_checkpoint", "save_checkpoint"]

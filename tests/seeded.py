"""Seeded test models: random weights with non-trivial BatchNorm statistics, so that folding, import
and quantization paths are exercised for real rather than on identity normalisations."""

from __future__ import annotations

from typing import Any


def seed_batchnorm(model: Any) -> Any:
    """Give every BatchNorm2d of `model` random statistics and affine terms (in place); returns it."""
    import torch

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.8, 1.2)
                module.bias.uniform_(-0.1, 0.1)
    return model

"""The wrapper that gets exported: fused map only by default, the six side maps on request."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["DeployHead", "OUTPUT_LAYOUTS"]

OUTPUT_LAYOUTS = ("fused", "all")


class DeployHead(nn.Module):
    """Return the fused sigmoid map ``(N, 1, H, W)``, or all 7 maps with ``outputs='all'``.

    The side outputs only matter for training; exporting just the fused map lets graph
    optimisers drop the six side sigmoids.
    """

    def __init__(self, model: nn.Module, outputs: str = "fused") -> None:
        super().__init__()
        if outputs not in OUTPUT_LAYOUTS:
            raise ValueError(f"outputs must be one of {OUTPUT_LAYOUTS}, not '{outputs}'")
        self.model = model
        self.outputs = outputs

    @staticmethod
    def output_names(outputs: str) -> tuple[str, ...]:
        return ("mask",) if outputs == "fused" else ("mask", *(f"side{i}" for i in range(1, 7)))

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        logits = self.model.forward_logits(x)
        if self.outputs == "fused":
            return torch.sigmoid(logits[0])
        return tuple(torch.sigmoid(d) for d in logits)

"""The multi-side-output BCE fusion loss of U2-Net (REFERENCE.md section 5), computed from logits.

Upstream (`muti_bce_loss_fusion` in `u2net_train.py`) applies `nn.BCELoss(reduction='mean')` to
the seven sigmoid maps and sums the terms with weight 1. Here each term is
`binary_cross_entropy_with_logits` on the logits from `U2Net.forward_logits`: the same function
(log-sum-exp form), equal to the reference to float rounding on ordinary values, but finite and
exact where the reference saturates (BCELoss clamps log(p) at -100, so a confident wrong pixel
costs at most 100 there), and allowed under autocast, where `BCELoss` on probabilities is refused
on CUDA. Terms are computed in float32 at least, whatever dtype autocast gave the logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TERM_NAMES", "LossOutput", "MultiBCELoss", "multi_bce_loss", "reference_multi_bce_loss"]

#: loss0 is the fused map (upstream's `tar`), loss1..loss6 the side outputs.
TERM_NAMES = tuple(f"loss{i}" for i in range(7))


@dataclass
class LossOutput:
    """The summed loss to backpropagate and its seven terms (fused first)."""

    total: torch.Tensor
    terms: tuple[torch.Tensor, ...]

    @property
    def fused(self) -> torch.Tensor:
        return self.terms[0]

    def stacked(self) -> torch.Tensor:
        """[total, loss0..loss6] detached, as one float32 tensor (one device sync to log it)."""
        return torch.stack([self.total.detach(), *(t.detach() for t in self.terms)]).float()

    def as_dict(self) -> dict[str, float]:
        values = self.stacked().cpu().tolist()
        return dict(zip(("loss", *TERM_NAMES), values, strict=True))


def _check_shapes(maps: Sequence[torch.Tensor], target: torch.Tensor) -> None:
    if len(maps) != len(TERM_NAMES):
        raise ValueError(f"expected {len(TERM_NAMES)} maps (fused + 6 sides), got {len(maps)}")
    for index, value in enumerate(maps):
        if value.shape != target.shape:
            raise ValueError(f"map {index} has shape {tuple(value.shape)} but the label has {tuple(target.shape)}")


def multi_bce_loss(logits: Sequence[torch.Tensor], target: torch.Tensor,
                   weights: Sequence[float] | None = None) -> LossOutput:
    """Sum of the mean BCE of each of the seven logit maps against the same full-size label.

    Args:
        logits: (fused, side1..side6), as returned by `U2Net.forward_logits`, each Nx1xHxW.
        target: Nx1xHxW label in [0, 1]; soft values are allowed, as upstream.
        weights: per-term weights; upstream uses 1 for all seven.
    """
    _check_shapes(logits, target)
    dtype = torch.promote_types(logits[0].dtype, torch.float32)  # fp16/bf16 -> fp32; fp64 stays
    target = target.to(dtype)
    terms = tuple(F.binary_cross_entropy_with_logits(value.to(dtype), target) for value in logits)
    if weights is None:
        total = torch.stack(terms).sum()
    else:
        total = sum(w * t for w, t in zip(weights, terms, strict=True))
    return LossOutput(total, terms)


def reference_multi_bce_loss(probabilities: Sequence[torch.Tensor], target: torch.Tensor) -> LossOutput:
    """The upstream formula, `nn.BCELoss(size_average=True)` on sigmoid maps: kept to test against."""
    _check_shapes(probabilities, target)
    bce = nn.BCELoss(reduction="mean")
    terms = tuple(bce(value, target) for value in probabilities)
    return LossOutput(torch.stack(terms).sum(), terms)


class MultiBCELoss(nn.Module):
    """`multi_bce_loss` as a module, for code that expects a criterion object."""

    def __init__(self, weights: Sequence[float] | None = None) -> None:
        super().__init__()
        self.weights = None if weights is None else tuple(float(w) for w in weights)

    def forward(self, logits: Sequence[torch.Tensor], target: torch.Tensor) -> LossOutput:
        return multi_bce_loss(logits, target, self.weights)

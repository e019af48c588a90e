"""Size and cost of a model: parameters, checkpoint bytes and convolution FLOPs.

FLOPs follow ``torch.utils.flop_counter.FlopCounterMode`` (REFERENCE.md section 3): only
convolutions are counted, at 2 FLOPs per multiply-accumulate. The count runs on the ``meta``
device, so it costs no arithmetic and works for any input size in milliseconds.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["ModelCost", "count_parameters", "conv_flops", "model_cost"]


@dataclass(frozen=True)
class ModelCost:
    params: int
    buffers: int
    param_bytes: int
    flops: int
    input_size: tuple[int, int]
    per_stage_macs: dict[str, int]

    @property
    def gflops(self) -> float:
        return self.flops / 1e9


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def conv_flops(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, dict[str, int]]:
    """(total conv FLOPs, MACs per top-level child) for one forward pass at `input_shape`."""
    from torch.utils.flop_counter import FlopCounterMode

    meta_model = copy.deepcopy(model).to("meta").eval()
    counter = FlopCounterMode(display=False, depth=1)
    with counter, torch.no_grad():
        meta_model(torch.empty(input_shape, device="meta"))
    per_module = counter.get_flop_counts()
    total = int(sum(per_module.get("Global", {}).values()))
    per_stage = {}
    for name, counts in per_module.items():
        parts = name.split(".")
        if len(parts) == 2:
            per_stage[parts[1]] = int(sum(counts.values())) // 2
    return total, per_stage


def model_cost(model: nn.Module, input_size: tuple[int, int] = (320, 320), batch: int = 1) -> ModelCost:
    flops, per_stage = conv_flops(model, (batch, 3, *input_size))
    params = count_parameters(model)
    return ModelCost(
        params=params,
        buffers=sum(b.numel() for b in model.buffers()),
        param_bytes=sum(p.numel() * p.element_size() for p in model.parameters()),
        flops=flops,
        input_size=tuple(input_size),
        per_stage_macs=per_stage,
    )

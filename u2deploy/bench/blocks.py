"""The five feature-extraction blocks of the paper's Fig. 2, rebuilt for its cost comparison (Fig. 4).

Fig. 4 compares blocks that turn a 320x320x3 input into a 320x320x64 output. The paper gives
those two shapes and the blocks' topologies (Fig. 2), not their inner widths, so a rebuild has to
choose them. The choice here keeps the comparison about topology alone:

* **RSU** is RSU-7(3, 32, 64), exactly U2-Net's first encoder stage En_1 (`stage1`), the block
  the paper's figure is about (6.78 GMAC, REFERENCE.md section 3).
* The other four get the RSU's own input layer F1 (3x3 conv 3 -> 64, the RSU's `rebnconvin`) and
  the same middle width M = 32, and differ only in what follows F1, as in Fig. 2:
  * **PLN** (plain): two more 3x3 layers, 64 -> 32 -> 64.
  * **RES** (residual): the same two layers plus the identity shortcut from F1, the paper's
    H(x) = F2(F1(x)) + x (eq. 1) with F1's output as x, since 3 channels cannot be added to 64.
  * **DSE** (dense): three layers, each fed all earlier maps concatenated: 64 -> 32,
    (64+32) -> 32, (64+32+32) -> 64.
  * **INC** (inception-like, dilated): four parallel 3x3 branches 64 -> 32 with dilation 1, 2,
    4 and 8 (the RSU-4F dilations), concatenated (128) and fused by a 1x1 conv 128 -> 64.
* Every layer is conv + BatchNorm + ReLU (`REBNCONV`, bias kept as upstream), at full 320x320
  resolution except inside the RSU, whose U-structure runs on pooled maps: that is the paper's
  point, and the FLOP column shows its price.

This module needs torch (it defines `nn.Module`s); `u2deploy.bench.paper` imports it lazily.
"""

from __future__ import annotations

import torch
from torch import nn

from ..model.u2net import REBNCONV, RSU

__all__ = ["PlainBlock", "ResidualBlock", "DenseBlock", "InceptionBlock", "BLOCKS", "BLOCK_CONFIGS", "make_block",
           "IN_CH", "MID_CH", "OUT_CH"]  # fmt: skip

IN_CH, MID_CH, OUT_CH = 3, 32, 64


class PlainBlock(nn.Module):
    """PLN: F1 (3x3, in -> out), then 3x3 out -> mid and 3x3 mid -> out."""

    def __init__(self, in_ch: int = IN_CH, mid_ch: int = MID_CH, out_ch: int = OUT_CH) -> None:
        super().__init__()
        self.rebnconvin = REBNCONV(in_ch, out_ch)
        self.rebnconv1 = REBNCONV(out_ch, mid_ch)
        self.rebnconv2 = REBNCONV(mid_ch, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rebnconv2(self.rebnconv1(self.rebnconvin(x)))


class ResidualBlock(PlainBlock):
    """RES: PLN's layers plus the identity shortcut from F1's output."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hxin = self.rebnconvin(x)
        return self.rebnconv2(self.rebnconv1(hxin)) + hxin


class DenseBlock(nn.Module):
    """DSE: F1, then three layers each fed the concatenation of every earlier map."""

    def __init__(self, in_ch: int = IN_CH, mid_ch: int = MID_CH, out_ch: int = OUT_CH) -> None:
        super().__init__()
        self.rebnconvin = REBNCONV(in_ch, out_ch)
        self.rebnconv1 = REBNCONV(out_ch, mid_ch)
        self.rebnconv2 = REBNCONV(out_ch + mid_ch, mid_ch)
        self.rebnconv3 = REBNCONV(out_ch + 2 * mid_ch, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hxin = self.rebnconvin(x)
        hx1 = self.rebnconv1(hxin)
        hx2 = self.rebnconv2(torch.cat((hxin, hx1), 1))
        return self.rebnconv3(torch.cat((hxin, hx1, hx2), 1))


class InceptionBlock(nn.Module):
    """INC: F1, four parallel dilated 3x3 branches (dilation 1, 2, 4, 8), concatenated, fused by a 1x1 conv."""

    DILATIONS = (1, 2, 4, 8)

    def __init__(self, in_ch: int = IN_CH, mid_ch: int = MID_CH, out_ch: int = OUT_CH) -> None:
        super().__init__()
        self.rebnconvin = REBNCONV(in_ch, out_ch)
        self.branches = nn.ModuleList(REBNCONV(out_ch, mid_ch, dirate=d) for d in self.DILATIONS)
        self.fuse = nn.Sequential(nn.Conv2d(mid_ch * len(self.DILATIONS), out_ch, 1), nn.BatchNorm2d(out_ch),
                                  nn.ReLU(inplace=True))  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hxin = self.rebnconvin(x)
        return self.fuse(torch.cat([branch(hxin) for branch in self.branches], 1))


#: paper name -> its configuration in words (the table prints it)
BLOCK_CONFIGS: dict[str, str] = {
    "PLN": "F1 3x3 3->64; 3x3 64->32; 3x3 32->64",
    "RES": "PLN + identity shortcut from F1 (H = F2(F1(x)) + F1 out)",
    "DSE": "F1 3x3 3->64; 3x3 64->32; 3x3 96->32; 3x3 128->64 (dense concatenation)",
    "INC": "F1 3x3 3->64; 4 branches 3x3 64->32, dilation 1/2/4/8; concat; 1x1 128->64",
    "RSU": "RSU-7(3, 32, 64) = U2-Net En_1: U-structure on 320..10 px, residual from F1",
}
BLOCKS = tuple(BLOCK_CONFIGS)


def make_block(name: str) -> nn.Module:
    """A fresh block in eval mode (default PyTorch initialisation, as upstream)."""
    factories = {"PLN": PlainBlock, "RES": ResidualBlock, "DSE": DenseBlock, "INC": InceptionBlock,
                 "RSU": lambda: RSU(7, IN_CH, MID_CH, OUT_CH)}  # fmt: skip
    if name not in factories:
        from .._registry import unknown_name

        raise unknown_name("block", name, list(factories))
    return factories[name]().eval()

"""U2-Net and U2-Netp, the reference PyTorch model.

Qin et al., "U2-Net: Going Deeper with Nested U-Structure for Salient Object Detection",
Pattern Recognition 106 (2020), arXiv 2005.09007. Rebuilt from the facts in
``shared/reference/REFERENCE.md`` (upstream ``xuebinqin/U-2-Net`` ``model/u2net.py`` at
``5d7e20d``): module names, registration order and therefore state_dict keys are the
official ones, so ``u2net.pth`` / ``u2netp.pth`` load with ``strict=True``.

Two deliberate spellings differ from upstream and compute the same thing: ``F.interpolate(...,
align_corners=False)`` for the deprecated ``F.upsample`` and ``torch.sigmoid`` for
``F.sigmoid`` (a test pins the equivalence).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["REBNCONV", "RSU", "RSU4F", "U2Net", "U2NetConfig", "CONFIGS", "u2net", "u2netp", "u2net_test"]


class REBNCONV(nn.Module):
    """3x3 conv (with bias, as upstream) -> BatchNorm -> ReLU; padding = dilation keeps the size."""

    def __init__(self, in_ch: int = 3, out_ch: int = 3, dirate: int = 1) -> None:
        super().__init__()
        self.conv_s1 = nn.Conv2d(in_ch, out_ch, 3, padding=dirate, dilation=dirate)
        self.bn_s1 = nn.BatchNorm2d(out_ch)
        self.relu_s1 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu_s1(self.bn_s1(self.conv_s1(x)))


def _upsample_like(src: torch.Tensor, tar: torch.Tensor) -> torch.Tensor:
    """Bilinear resize to the target's exact size (never a fixed x2), so odd sizes work."""
    return F.interpolate(src, size=tar.shape[2:], mode="bilinear", align_corners=False)


def _pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(2, stride=2, ceil_mode=True)


class RSU(nn.Module):
    """Residual U-block RSU-L (L = 4..7): a small U-Net whose output is added to its input conv.

    Attribute names (``rebnconvin``, ``rebnconv1``..``rebnconvL``, ``pool1``.., then
    ``rebnconv(L-1)d``..``rebnconv1d``) and their definition order match upstream's RSU7..RSU4
    classes, which fixes the state_dict key order.
    """

    def __init__(self, height: int, in_ch: int, mid_ch: int, out_ch: int) -> None:
        super().__init__()
        if height < 3:
            raise ValueError(f"RSU height must be >= 3, got {height}")
        self.height = height
        self.rebnconvin = REBNCONV(in_ch, out_ch, dirate=1)
        self.rebnconv1 = REBNCONV(out_ch, mid_ch, dirate=1)
        self.pool1 = _pool()
        for level in range(2, height):
            setattr(self, f"rebnconv{level}", REBNCONV(mid_ch, mid_ch, dirate=1))
            if level < height - 1:
                setattr(self, f"pool{level}", _pool())
        setattr(self, f"rebnconv{height}", REBNCONV(mid_ch, mid_ch, dirate=2))
        for level in range(height - 1, 1, -1):
            setattr(self, f"rebnconv{level}d", REBNCONV(mid_ch * 2, mid_ch, dirate=1))
        self.rebnconv1d = REBNCONV(mid_ch * 2, out_ch, dirate=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hxin = self.rebnconvin(x)
        skips = [self.rebnconv1(hxin)]
        for level in range(2, self.height):
            pooled = getattr(self, f"pool{level - 1}")(skips[-1])
            skips.append(getattr(self, f"rebnconv{level}")(pooled))
        hx = getattr(self, f"rebnconv{self.height}")(skips[-1])
        for level in range(self.height - 1, 0, -1):
            skip = skips[level - 1]
            if level < self.height - 1:
                hx = _upsample_like(hx, skip)
            hx = getattr(self, f"rebnconv{level}d")(torch.cat((hx, skip), 1))
        return hx + hxin


class RSU4F(nn.Module):
    """RSU-4F: no pooling; dilations 1, 2, 4, 8 down and 4, 2, 1 up keep the resolution."""

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int) -> None:
        super().__init__()
        self.rebnconvin = REBNCONV(in_ch, out_ch, dirate=1)
        self.rebnconv1 = REBNCONV(out_ch, mid_ch, dirate=1)
        self.rebnconv2 = REBNCONV(mid_ch, mid_ch, dirate=2)
        self.rebnconv3 = REBNCONV(mid_ch, mid_ch, dirate=4)
        self.rebnconv4 = REBNCONV(mid_ch, mid_ch, dirate=8)
        self.rebnconv3d = REBNCONV(mid_ch * 2, mid_ch, dirate=4)
        self.rebnconv2d = REBNCONV(mid_ch * 2, mid_ch, dirate=2)
        self.rebnconv1d = REBNCONV(mid_ch * 2, out_ch, dirate=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hxin = self.rebnconvin(x)
        hx1 = self.rebnconv1(hxin)
        hx2 = self.rebnconv2(hx1)
        hx3 = self.rebnconv3(hx2)
        hx4 = self.rebnconv4(hx3)
        hx3d = self.rebnconv3d(torch.cat((hx4, hx3), 1))
        hx2d = self.rebnconv2d(torch.cat((hx3d, hx2), 1))
        hx1d = self.rebnconv1d(torch.cat((hx2d, hx1), 1))
        return hx1d + hxin


Stage = tuple[str, int, int, int]  # (block, in, mid, out); block "7".."4" = RSU-L, "4F" = RSU-4F


@dataclass(frozen=True)
class U2NetConfig:
    """Channel plan of the 11 stages (En_1..En_6, De_5..De_1) in registration order."""

    stages: tuple[Stage, ...]

    @property
    def side_channels(self) -> tuple[int, ...]:
        """Inputs of side1..side6: De_1..De_5 outputs, then En_6."""
        outs = {name: out for name, (_, _, _, out) in zip(STAGE_NAMES, self.stages, strict=True)}
        return (outs["stage1d"], outs["stage2d"], outs["stage3d"], outs["stage4d"], outs["stage5d"], outs["stage6"])


STAGE_NAMES = ("stage1", "stage2", "stage3", "stage4", "stage5", "stage6",
               "stage5d", "stage4d", "stage3d", "stage2d", "stage1d")  # fmt: skip

CONFIGS: dict[str, U2NetConfig] = {
    "u2net": U2NetConfig((
        ("7", 3, 32, 64), ("6", 64, 32, 128), ("5", 128, 64, 256), ("4", 256, 128, 512),
        ("4F", 512, 256, 512), ("4F", 512, 256, 512),
        ("4F", 1024, 256, 512), ("4", 1024, 128, 256), ("5", 512, 64, 128), ("6", 256, 32, 64),
        ("7", 128, 16, 64),
    )),  # fmt: skip
    "u2netp": U2NetConfig((
        ("7", 3, 16, 64), ("6", 64, 16, 64), ("5", 64, 16, 64), ("4", 64, 16, 64),
        ("4F", 64, 16, 64), ("4F", 64, 16, 64),
        ("4F", 128, 16, 64), ("4", 128, 16, 64), ("5", 128, 16, 64), ("6", 128, 16, 64),
        ("7", 128, 16, 64),
    )),  # fmt: skip
    # Tiny channels, same topology: for tests and CI fixtures only.
    "u2net_test": U2NetConfig((
        ("7", 3, 4, 8), ("6", 8, 4, 8), ("5", 8, 4, 8), ("4", 8, 4, 8),
        ("4F", 8, 4, 8), ("4F", 8, 4, 8),
        ("4F", 16, 4, 8), ("4", 16, 4, 8), ("5", 16, 4, 8), ("6", 16, 4, 8),
        ("7", 16, 4, 8),
    )),  # fmt: skip
}


def _make_block(block: str, in_ch: int, mid_ch: int, out_ch: int) -> nn.Module:
    if block == "4F":
        return RSU4F(in_ch, mid_ch, out_ch)
    return RSU(int(block), in_ch, mid_ch, out_ch)


class U2Net(nn.Module):
    """U2-Net: six encoder and five decoder RSU stages, six side outputs and a 1x1 fuse conv.

    ``forward`` returns the 7 sigmoid maps (fused first, then sides 1..6), each at the input
    size, in train and eval mode alike, as upstream does. ``forward_logits`` returns the same 7
    maps before the sigmoid, for a numerically stable loss.
    """

    def __init__(self, config: U2NetConfig, in_ch: int = 3, out_ch: int = 1, arch: str = "custom") -> None:
        super().__init__()
        if config.stages[0][1] != in_ch:
            raise ValueError(f"config expects {config.stages[0][1]} input channels, got {in_ch}")
        self.arch = arch
        self.out_ch = out_ch
        for name, (block, cin, mid, cout) in zip(STAGE_NAMES, config.stages, strict=True):
            setattr(self, name, _make_block(block, cin, mid, cout))
            if name in ("stage1", "stage2", "stage3", "stage4", "stage5"):
                setattr(self, f"pool{name[-1]}{int(name[-1]) + 1}", _pool())
        for index, channels in enumerate(config.side_channels, start=1):
            setattr(self, f"side{index}", nn.Conv2d(channels, out_ch, 3, padding=1))
        self.outconv = nn.Conv2d(6 * out_ch, out_ch, 1)

    def forward_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(d0 fused, d1..d6) before the sigmoid, all at the input's spatial size."""
        encoded = [self.stage1(x)]
        for index in range(2, 7):
            pooled = getattr(self, f"pool{index - 1}{index}")(encoded[-1])
            encoded.append(getattr(self, f"stage{index}")(pooled))
        decoded = {6: encoded[5]}
        for index in range(5, 0, -1):
            up = _upsample_like(decoded[index + 1], encoded[index - 1])
            decoded[index] = getattr(self, f"stage{index}d")(torch.cat((up, encoded[index - 1]), 1))
        d1 = self.side1(decoded[1])
        sides = [d1] + [_upsample_like(getattr(self, f"side{i}")(decoded[i]), d1) for i in range(2, 7)]
        fused = self.outconv(torch.cat(sides, 1))
        return (fused, *sides)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(torch.sigmoid(d) for d in self.forward_logits(x))


def _create_u2net(arch: str, **kwargs: int) -> U2Net:
    return U2Net(CONFIGS[arch], arch=arch, **kwargs)


def u2net(**kwargs: int) -> U2Net:
    """Full U2-Net: 44,009,869 parameters, 176.3 MB checkpoint."""
    return _create_u2net("u2net", **kwargs)


def u2netp(**kwargs: int) -> U2Net:
    """U2-Net-small (the paper's U2-Net†): 1,131,181 parameters, 4.7 MB checkpoint."""
    return _create_u2net("u2netp", **kwargs)


def u2net_test(**kwargs: int) -> U2Net:
    """Same topology with tiny channels, for fast tests."""
    return _create_u2net("u2net_test", **kwargs)

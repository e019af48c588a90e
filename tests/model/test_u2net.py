"""The reference model: layout, sizes and forward behaviour against REFERENCE.md."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from u2deploy.model import DeployHead, create_model, u2net, u2net_test, u2netp
from u2deploy.model.info import model_cost

DATA = Path(__file__).parent.parent / "data"


@pytest.mark.parametrize("arch, params", [("u2net", 44_009_869), ("u2netp", 1_131_181)])
def test_state_dict_matches_the_official_layout(arch, params):
    official = json.loads((DATA / f"{arch}_state_dict.json").read_text())
    model = create_model(arch)
    ours = [[key, list(value.shape)] for key, value in model.state_dict().items()]
    assert ours == official["state_dict"]
    assert sum(p.numel() for p in model.parameters()) == params == official["trainable_params"]
    assert sum(b.numel() for b in model.buffers()) == official["buffer_elements"]


@pytest.mark.parametrize(
    "arch, size, flops",
    [
        ("u2net", 320, 117_196_492_800),
        ("u2net", 288, 94_929_159_168),
        ("u2net", 512, 300_023_021_568),
        ("u2netp", 320, 39_512_179_200),
        ("u2netp", 288, 32_004_865_152),
        ("u2netp", 512, 101_151_178_752),
    ],
)
def test_conv_flops_match_the_reference_table(arch, size, flops):
    assert model_cost(create_model(arch), (size, size)).flops == flops


def test_per_stage_macs_match_the_reference_table():
    macs = model_cost(u2net(), (320, 320)).per_stage_macs
    expected_millions = {"stage1": 6783, "stage2": 4955, "stage5": 4011, "stage6": 1003, "stage1d": 10617}
    for stage, millions in expected_millions.items():
        assert round(macs[stage] / 1e6) == millions


@pytest.mark.parametrize("size", [(320, 320), (288, 288), (301, 333), (75, 64)])
def test_outputs_are_seven_sigmoid_maps_at_input_size(tiny_model, size):
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        outputs = tiny_model(x)
        logits = tiny_model.forward_logits(x)
    assert len(outputs) == 7
    for probability, logit in zip(outputs, logits, strict=True):
        assert probability.shape == (2, 1, *size)
        torch.testing.assert_close(probability, torch.sigmoid(logit))
        assert probability.min() >= 0 and probability.max() <= 1


def test_fused_map_comes_first_and_is_the_1x1_fusion_of_the_sides(tiny_model):
    x = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        fused, *sides = tiny_model.forward_logits(x)
        expected = tiny_model.outconv(torch.cat(sides, 1))
    torch.testing.assert_close(fused, expected)


def test_u2netp_forward_at_320():
    torch.manual_seed(0)
    with torch.no_grad():
        outputs = u2netp().eval()(torch.rand(1, 3, 320, 320))
    assert [tuple(o.shape) for o in outputs] == [(1, 1, 320, 320)] * 7


def test_interpolate_equals_the_deprecated_upsample_upstream_used():
    x = torch.rand(1, 4, 10, 13)
    upstream = F.upsample(x, size=(21, 26), mode="bilinear")  # what model/u2net.py calls
    ours = F.interpolate(x, size=(21, 26), mode="bilinear", align_corners=False)
    assert torch.equal(upstream, ours)


def test_ceil_mode_pooling_handles_odd_sizes():
    model = u2net_test().eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 321, 300))[0].shape == (1, 1, 321, 300)


def test_deploy_head_outputs():
    model = u2net_test().eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        fused = DeployHead(model)(x)
        everything = DeployHead(model, outputs="all")(x)
        reference = model(x)
    torch.testing.assert_close(fused, reference[0])
    assert len(everything) == 7
    assert DeployHead.output_names("all")[0] == "mask"
    with pytest.raises(ValueError, match="outputs"):
        DeployHead(model, outputs="sides")


def test_unknown_model_name_lists_the_valid_ones():
    from u2deploy.errors import InputError

    with pytest.raises(InputError, match="available: u2net, u2netp, u2net_test"):
        create_model("u2net_large")

"""The paper's five blocks: shapes, and FLOPs and parameters against values computed by hand.

Hand counts follow REFERENCE.md section 3: convolutions only, 2 FLOPs per multiply-accumulate,
MACs = output pixels x C_in x k^2 x C_out; parameters include conv biases and BatchNorm's weight
and bias (running statistics are buffers).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from u2deploy.bench.blocks import BLOCKS, make_block  # noqa: E402
from u2deploy.bench.paper import PAPER_MODELS, block_costs, legacy_checkpoint_bytes, model_facts  # noqa: E402

HW = 320 * 320


def conv_macs(c_in: int, c_out: int, k: int = 3, pixels: int = HW) -> int:
    return pixels * c_in * k * k * c_out


def rebnconv_params(c_in: int, c_out: int, k: int = 3) -> int:
    return c_in * k * k * c_out + c_out + 2 * c_out  # conv weight + bias, BN weight + bias


F1 = conv_macs(3, 64)  # the input layer every block shares
RSU7_MACS = (F1 + conv_macs(64, 32)  # rebnconvin, rebnconv1 at 320
             + sum(conv_macs(32, 32, pixels=s * s) for s in (160, 80, 40, 20, 10))  # rebnconv2..6
             + conv_macs(32, 32, pixels=100)  # rebnconv7, dilation 2, at 10x10
             + sum(conv_macs(64, 32, pixels=s * s) for s in (10, 20, 40, 80, 160))  # rebnconv6d..2d
             + conv_macs(64, 64))  # rebnconv1d at 320
HAND = {
    "PLN": (F1 + conv_macs(64, 32) + conv_macs(32, 64),
            rebnconv_params(3, 64) + rebnconv_params(64, 32) + rebnconv_params(32, 64)),
    "RES": (F1 + conv_macs(64, 32) + conv_macs(32, 64),
            rebnconv_params(3, 64) + rebnconv_params(64, 32) + rebnconv_params(32, 64)),
    "DSE": (F1 + conv_macs(64, 32) + conv_macs(96, 32) + conv_macs(128, 64),
            rebnconv_params(3, 64) + rebnconv_params(64, 32) + rebnconv_params(96, 32) + rebnconv_params(128, 64)),
    "INC": (F1 + 4 * conv_macs(64, 32) + conv_macs(128, 64, k=1),
            rebnconv_params(3, 64) + 4 * rebnconv_params(64, 32) + rebnconv_params(128, 64, k=1)),
    "RSU": (RSU7_MACS, 206_016),  # REFERENCE.md: stage1 of U2NET has 206,016 parameters
}


def test_hand_counts_agree_with_reference_md_for_the_rsu():
    assert RSU7_MACS == 6_782_976_000  # REFERENCE.md section 3: stage1 6783 MMAC


@pytest.mark.parametrize("row", block_costs(320), ids=lambda row: row["name"])
def test_block_flops_and_params_match_hand_counts(row):
    macs, params = HAND[row["name"]]
    assert row["flops"] == 2 * macs
    assert row["params"] == params
    assert row["gflop"] == pytest.approx(2 * macs / 1e9)


def test_costs_in_gflops():
    gflops = {row["name"]: round(row["gflop"], 2) for row in block_costs(320)}
    assert gflops == {"PLN": 7.9, "RES": 7.9, "DSE": 24.89, "INC": 17.13, "RSU": 13.57}


@pytest.mark.parametrize("name", BLOCKS)
def test_every_block_maps_3_channels_to_64_at_the_same_size(name):
    with torch.no_grad():
        out = make_block(name)(torch.zeros(1, 3, 64, 64))
    assert tuple(out.shape) == (1, 64, 64, 64)


def test_unknown_block_lists_the_valid_ones():
    from u2deploy.errors import InputError

    with pytest.raises(InputError, match="did you mean 'RSU'"):
        make_block("RSV")


def test_model_facts_match_the_reference_numbers():
    u2net = model_facts("u2net")
    assert u2net["params"] == 44_009_869
    assert u2net["gflop"] == pytest.approx(117.196, abs=1e-3)
    assert round(u2net["file_mb"], 1) == PAPER_MODELS["u2net"]["file_mb"] == 176.3
    assert u2net["paper_fps"] == 30 and "1080 Ti" in u2net["paper_hardware"]
    small = model_facts("u2netp")
    assert small["params"] == 1_131_181 and small["gflop"] == pytest.approx(39.512, abs=1e-3)
    assert round(small["file_mb"], 1) == 4.7


def test_legacy_checkpoint_bytes_of_a_small_module():
    assert legacy_checkpoint_bytes(torch.nn.Linear(4, 4)) > 4 * 5 * 4

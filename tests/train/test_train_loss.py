"""The multi-side BCE loss: equal to upstream's BCE-on-probabilities, stable where it saturates, autocast-safe."""

from __future__ import annotations

import math

import pytest
import torch

from u2deploy.train.loss import TERM_NAMES, MultiBCELoss, multi_bce_loss, reference_multi_bce_loss


def _maps(seed: int, scale: float = 3.0, shape=(2, 1, 16, 16)) -> tuple[list[torch.Tensor], torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = [torch.randn(shape, generator=generator) * scale for _ in range(7)]
    return logits, torch.rand(shape, generator=generator)


@pytest.mark.parametrize("binary", [True, False], ids=["binary-label", "soft-label"])
def test_equals_the_reference_formula_on_ordinary_values(binary):
    logits, target = _maps(0, scale=1.5)  # p mostly within 0.01..0.99
    if binary:
        target = (target > 0.5).float()
    ours = multi_bce_loss(logits, target)
    reference = reference_multi_bce_loss([torch.sigmoid(x) for x in logits], target)
    assert torch.allclose(ours.total, reference.total, atol=1e-5, rtol=0)
    for mine, theirs in zip(ours.terms, reference.terms, strict=True):
        assert torch.allclose(mine, theirs, atol=1e-5, rtol=0)


def test_closer_to_the_exact_value_than_the_float32_reference():
    """With larger logits float32 log(1 - sigmoid(x)) loses digits; the logit form does not."""
    logits, target = _maps(0, scale=3.0)
    target = (target > 0.5).float()
    exact = reference_multi_bce_loss([torch.sigmoid(x.double()) for x in logits], target.double()).total
    float32_reference = reference_multi_bce_loss([torch.sigmoid(x) for x in logits], target).total
    ours = multi_bce_loss(logits, target).total
    assert abs(ours.item() - exact.item()) < 1e-6 < abs(float32_reference.item() - exact.item())
    assert multi_bce_loss([x.double() for x in logits], target).total.item() == pytest.approx(exact.item(), abs=1e-12)


def test_hand_computed_value():
    """Zero logits are p = 0.5 everywhere: every term is ln 2 whatever the label, the total 7 ln 2."""
    target = torch.tensor([[[[0.0, 1.0], [1.0, 0.25]]]])
    out = multi_bce_loss([torch.zeros(1, 1, 2, 2)] * 7, target)
    assert out.fused.item() == pytest.approx(math.log(2), abs=1e-7)
    assert out.total.item() == pytest.approx(7 * math.log(2), abs=1e-6)
    assert list(out.as_dict()) == ["loss", *TERM_NAMES]


def test_finite_and_exact_where_the_reference_saturates():
    """Confidently wrong pixels: the reference clamps log(0) at -100, the logit form stays exact."""
    target = torch.zeros(1, 1, 4, 4)
    logits = [torch.full((1, 1, 4, 4), 200.0, requires_grad=True) for _ in range(7)]
    reference = reference_multi_bce_loss([torch.sigmoid(x) for x in logits], target)
    assert reference.fused.item() == pytest.approx(100.0)  # the clamp
    ours = multi_bce_loss(logits, target)
    assert ours.fused.item() == pytest.approx(200.0)
    ours.total.backward()
    assert all(torch.isfinite(x.grad).all() for x in logits)
    # and confidently right pixels cost ~0 without NaN
    right = multi_bce_loss([torch.full((1, 1, 4, 4), -200.0)] * 7, target)
    assert right.total.item() == pytest.approx(0.0, abs=1e-30)


def test_works_under_cpu_bfloat16_autocast(tiny_model):
    import copy

    model = copy.deepcopy(tiny_model).train()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    target = (torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(2)) > 0.5).float()
    full = multi_bce_loss(model.forward_logits(x), target).total
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model.forward_logits(x)
        mixed = multi_bce_loss(logits, target)
    assert logits[0].dtype == torch.bfloat16 and mixed.total.dtype == torch.float32
    assert torch.isfinite(mixed.total) and mixed.total.item() == pytest.approx(full.item(), rel=5e-2)
    mixed.total.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_weights_and_module_form():
    logits, target = _maps(3)
    plain = multi_bce_loss(logits, target)
    weighted = MultiBCELoss(weights=[2, 0, 0, 0, 0, 0, 0])(logits, target)
    assert weighted.total.item() == pytest.approx(2 * plain.fused.item(), rel=1e-6)


def test_shape_errors_are_clear():
    logits, target = _maps(4)
    with pytest.raises(ValueError, match="expected 7 maps"):
        multi_bce_loss(logits[:6], target)
    with pytest.raises(ValueError, match=r"map 0 has shape \(2, 1, 8, 8\)"):
        multi_bce_loss([torch.zeros(2, 1, 8, 8)] + logits[1:], target)

"""Parity metrics and the tolerance table (numpy only; checked against PySODMetrics when installed)."""

from __future__ import annotations

import numpy as np
import pytest

from u2deploy.compare import (
    TOLERANCES,
    Tolerance,
    compare_maps,
    mae,
    mask_iou,
    max_fbeta,
    parity_report,
    tolerance_for,
)
from u2deploy.errors import InputError, ParityError


def _blob(size: int = 64, radius: float = 16.0, soft: float = 4.0) -> np.ndarray:
    """A soft disc: a saliency-like map with a real transition band."""
    yy, xx = np.mgrid[:size, :size]
    distance = np.hypot(yy - size / 2, xx - size / 2)
    return (1.0 / (1.0 + np.exp((distance - radius) / soft))).astype(np.float32)


def test_mask_iou_counts_and_empty_masks():
    a = np.zeros((4, 4))
    b = np.zeros((4, 4))
    assert mask_iou(a, b) == 1.0  # nothing salient in either: they agree
    a[:2] = 1.0
    b[:1] = 1.0
    assert mask_iou(a, b) == pytest.approx(0.5)
    assert mask_iou(a, 1 - a) == 0.0


def test_mae_and_fbeta_of_a_perfect_and_an_inverted_map():
    truth = _blob() >= 0.5
    assert mae(truth.astype(np.float32), truth) == 0.0
    assert max_fbeta(truth.astype(np.float32), truth) == pytest.approx(1.0)
    assert mae(1.0 - truth, truth) == 1.0
    assert max_fbeta(1.0 - truth.astype(np.float32), truth) < 0.5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_pysodmetrics(seed):
    metrics = pytest.importorskip("py_sod_metrics")
    rng = np.random.default_rng(seed)
    pred = np.clip(_blob(radius=14 + 4 * seed) + rng.normal(0, 0.1, (64, 64)), 0, 1)
    truth = _blob() >= 0.5
    with pytest.warns(UserWarning):  # the classic Fmeasure is the one the SOD papers' numbers come from
        fm = metrics.Fmeasure(beta=0.3)
    error = metrics.MAE()
    fm.step(pred, truth, normalize=False)
    error.step(pred, truth, normalize=False)
    assert max_fbeta(pred, truth) == pytest.approx(fm.get_results()["fm"]["curve"].max(), abs=1e-12)
    assert mae(pred, truth) == pytest.approx(error.get_results()["mae"], abs=1e-12)


def test_compare_maps_is_zero_error_on_identical_maps_and_keeps_the_reference_scores():
    ref = _blob()[None, None]
    row = compare_maps(ref, ref.copy(), "disc")
    assert row.max_abs == 0.0 and row.iou == 1.0
    assert row.mae_increase == 0.0 and row.fbeta_drop == 0.0
    assert 0 < row.mae_reference < 0.2  # a soft map is never perfect against its own binarisation


def test_compare_maps_normalises_like_the_pipeline():
    """A map scaled by a constant has the same mask after min-max normalisation."""
    ref = _blob()
    row = compare_maps(ref, ref * 0.5)
    assert row.max_abs == pytest.approx(0.5 * ref.max(), rel=1e-6)
    assert row.iou == 1.0


def test_compare_maps_rejects_shape_mismatch():
    with pytest.raises(InputError, match="cannot compare maps of shapes"):
        compare_maps(np.zeros((1, 1, 8, 8)), np.zeros((1, 1, 8, 9)))


def test_report_passes_within_tolerance_and_names_the_worst_image_otherwise():
    ref = {"mask": np.stack([_blob(), _blob(radius=20)])[:, None]}
    near = {"mask": ref["mask"] + 1e-6}
    report = parity_report(ref, near, ["a", "b"], "fp32")
    assert report.passed and report.tolerance == TOLERANCES["fp32"]
    report.raise_if_failed("x.onnx")  # no error

    shifted = ref["mask"].copy()
    shifted[1] = np.roll(shifted[1], 6, axis=-1)  # image "b" moves: a real mask change
    report = parity_report(ref, {"mask": shifted}, ["a", "b"], "fp16")
    assert not report.passed
    assert any("mask IoU" in f and "'b'" in f for f in report.failures)
    with pytest.raises(ParityError, match=r"x\.onnx: parity gate failed for fp16: .*'b' \(mask\)"):
        report.raise_if_failed("x.onnx")


def test_report_summary_and_dict_are_json_ready():
    import json

    ref = {"mask": _blob()[None, None]}
    report = parity_report(ref, {"mask": ref["mask"] * 0.999}, ["a"], "fp16")
    data = json.loads(json.dumps(report.to_dict()))
    assert data["passed"] is True
    assert set(data["summary"]) >= {"max_abs", "mean_abs", "min_iou", "mean_iou", "min_fbeta", "mae", "mae_increase"}
    assert data["images"][0]["image"] == "a"
    assert "IoU min" in report.describe()


def test_mean_iou_and_custom_tolerance():
    ref = {"mask": np.stack([_blob(), _blob()])[:, None]}
    cand = ref["mask"].copy()
    cand[0] = np.roll(cand[0], 3, axis=-1)
    report = parity_report(ref, {"mask": cand}, ["a", "b"], tolerance=Tolerance(mean_iou=0.999))
    assert report.failures and "mean mask IoU" in report.failures[0]


def test_missing_output_and_unknown_precision():
    with pytest.raises(InputError, match="lack"):
        parity_report({"mask": np.zeros((1, 1, 4, 4))}, {"other": np.zeros((1, 1, 4, 4))}, ["a"])
    with pytest.raises(InputError, match="available: fp32, fp16, int8"):
        tolerance_for("fp8")

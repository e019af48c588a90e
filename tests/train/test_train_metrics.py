"""The relaxed boundary F-measure on hand-made cases, and the PySODMetrics wrapper on known maps."""

from __future__ import annotations

import numpy as np
import pytest

from u2deploy.train.metrics import SODMetrics, boundary, relaxed_boundary_fmeasure


def _canvas(size=(40, 40)) -> np.ndarray:
    return np.zeros(size, np.uint8)


def _square(top, left, side, size=(40, 40)) -> np.ndarray:
    mask = _canvas(size)
    mask[top:top + side, left:left + side] = 255
    return mask


def test_boundary_is_the_one_pixel_rim_and_the_image_border_counts():
    rim = boundary(_square(10, 10, 5) > 0)
    assert rim.sum() == 16 and not rim[11:14, 11:14].any()  # 5x5 square: 25 - 9 interior pixels
    full = boundary(np.ones((6, 8), bool))  # zero padding, as BASNet's convolve2d(mode='same')
    assert full.sum() == 2 * 8 + 2 * 4 and not full[1:-1, 1:-1].any()
    assert boundary(np.zeros((5, 5), bool)).sum() == 0


def test_identical_masks_score_one():
    score = relaxed_boundary_fmeasure(_square(10, 10, 10), _square(10, 10, 10))
    assert (score.f, score.precision, score.recall) == (1.0, 1.0, 1.0)


def _line(row, first, last, size=(40, 40)) -> np.ndarray:
    """A one-pixel-wide horizontal line: erosion removes it all, so the line is its own boundary."""
    mask = _canvas(size)
    mask[row, first:last + 1] = 255
    return mask


@pytest.mark.parametrize("offset, expected", [(0, 1.0), (2, 1.0), (3, 1.0), (4, 0.0)])
def test_tolerance_is_rho_pixels_inclusive(offset, expected):
    score = relaxed_boundary_fmeasure(_line(10 + offset, 5, 30), _line(10, 5, 30), rho=3)
    assert score.precision == expected and score.recall == expected and score.f == expected


def test_distance_is_euclidean():
    pred, gt = _canvas(), _canvas()
    gt[20, 20] = 255
    pred[22, 22] = 255  # sqrt(8) = 2.83 <= 3
    assert relaxed_boundary_fmeasure(pred, gt).f == 1.0
    pred = _canvas()
    pred[21, 23] = 255  # sqrt(10) = 3.16 > 3
    assert relaxed_boundary_fmeasure(pred, gt).f == 0.0


def test_precision_and_recall_by_hand():
    """GT line of 10 px (cols 10..19); predicted line of 20 px (cols 10..29) on the same row.

    Predicted pixels within 3 px of the GT line: cols 10..22, 13 of 20 -> P = 0.65; every GT pixel is
    matched -> R = 1; F = 1.3 * 0.65 / (0.3 * 0.65 + 1).
    """
    score = relaxed_boundary_fmeasure(_line(10, 10, 29), _line(10, 10, 19))
    assert score.precision == pytest.approx(0.65)
    assert score.recall == 1.0
    assert score.f == pytest.approx(1.3 * 0.65 / (0.3 * 0.65 + 1.0))


def test_thresholds_and_empty_cases():
    gt = _square(10, 10, 10)
    soft = (gt.astype(float) * (127 / 255)).astype(np.uint8)  # 127 < 128: binarised away
    assert relaxed_boundary_fmeasure(soft, gt).f == 0.0
    assert relaxed_boundary_fmeasure((gt // 255 * 128).astype(np.uint8), gt).f == 1.0  # 128 >= 0.5
    assert relaxed_boundary_fmeasure(_canvas(), _canvas()).f == 1.0  # nothing to find, nothing found
    assert relaxed_boundary_fmeasure(_canvas(), gt).recall == 0.0
    with pytest.raises(ValueError, match="differ in size"):
        relaxed_boundary_fmeasure(_canvas((4, 4)), gt)


def test_agrees_with_a_brute_force_count_on_random_blobs():
    import cv2

    rng = np.random.default_rng(0)
    for _ in range(5):
        masks = []
        for _ in range(2):
            mask = _canvas((48, 48))
            cv2.circle(mask, (int(rng.integers(12, 36)), int(rng.integers(12, 36))), int(rng.integers(5, 12)), 255, -1)
            masks.append(mask)
        pred, gt = masks
        pb, gb = np.argwhere(boundary(pred >= 128)), np.argwhere(boundary(gt > 128))
        distances = np.sqrt(((pb[:, None, :] - gb[None, :, :]) ** 2).sum(-1))
        precision = (distances.min(axis=1) <= 3).mean()
        recall = (distances.min(axis=0) <= 3).mean()
        score = relaxed_boundary_fmeasure(pred, gt)
        assert score.precision == pytest.approx(precision) and score.recall == pytest.approx(recall)


def test_wrapper_on_a_perfect_map():
    gt = _square(8, 8, 16, (32, 32))
    metrics = SODMetrics()
    assert metrics.update(gt.copy(), gt) == {"mae": 0.0, "relax_fb": 1.0}
    results = metrics.results()
    for key in ("max_f", "s_measure", "weighted_f", "relax_fb"):
        assert results[key] == pytest.approx(1.0), key
    assert results["max_e"] == pytest.approx(1024 / 1023)  # PySODMetrics divides by (pixels - 1), as the toolbox
    assert results["mae"] == 0.0
    curves = metrics.curves()
    assert len(curves["precision"]) == 256 and curves["threshold"][0] == 0
    # threshold 0 calls every pixel salient: precision is the foreground fraction, recall 1
    assert curves["precision"][0] == pytest.approx(256 / 1024) and curves["recall"][0] == 1.0
    assert curves["precision"][255] == 1.0


def test_wrapper_on_known_imperfect_maps():
    gt = _canvas((32, 32))
    gt[:, :16] = 255  # left half salient
    metrics = SODMetrics()
    constant = np.full((32, 32), 128, np.uint8)  # constant map: no min-max stretch, 128/255 everywhere
    assert metrics.update(constant, gt)["mae"] == pytest.approx(0.5)
    inverted = 255 - gt
    assert metrics.update(inverted, gt)["mae"] == pytest.approx(1.0)
    results = metrics.results()
    assert results["mae"] == pytest.approx(0.75)
    assert results["s_measure"] < 0.5 and 0 <= results["max_f"] < 1


def test_wrapper_refuses_wrong_inputs():
    metrics = SODMetrics()
    with pytest.raises(TypeError, match="uint8"):
        metrics.update(np.zeros((4, 4), np.float32), np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="no images"):
        metrics.results()

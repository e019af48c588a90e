"""Edge refinement: options are validated, and each mode moves the alpha towards the truth."""

from __future__ import annotations

import numpy as np
import pytest

from u2deploy.errors import InputError
from u2deploy.refine import (
    RefineOptions,
    guided_filter,
    refine,
    refine_cutout,
    refine_full,
    smooth_mask,
    trimap_from_map,
)

pytest.importorskip("cv2")


def _scene(size: int = 128) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A red disc with a soft rim over a two-tone background: (image RGB uint8, true alpha, blurred map)."""
    import cv2

    yy, xx = np.mgrid[:size, :size]
    alpha = np.clip((size * 0.3 - np.hypot(yy - size / 2, xx - size / 2)) / 3 + 0.5, 0, 1)
    background = np.where(xx[:, :, None] < size // 2, [20, 40, 200], [30, 160, 40]).astype(np.float64)
    image = alpha[:, :, None] * np.array([220.0, 30, 30]) + (1 - alpha[:, :, None]) * background
    # a network's map: right object, soft and a little too wide at the edge
    rough = cv2.GaussianBlur(cv2.dilate(alpha.astype(np.float32), np.ones((3, 3), np.uint8)), (0, 0), 3)
    return np.rint(image).astype(np.uint8), alpha.astype(np.float32), rough


@pytest.mark.parametrize(("options", "match"), [
    ({"mode": "fancy"}, "--refine 'fancy': unknown; use one of none, guided, matting"),
    ({"post": "blur"}, "--post 'blur': unknown"),
    ({"fg_threshold": 256}, "--fg-threshold 256: must be a whole number from 1 to 255"),
    ({"bg_threshold": -1}, "--bg-threshold -1"),
    ({"fg_threshold": 100, "bg_threshold": 100}, "must be below --fg-threshold 100"),
    ({"erode": -3}, "--erode -3"),
    ({"erode": 2.5}, "--erode 2.5"),
    ({"max_side": 10}, "--matting-size 10"),
    ({"eps": 0}, "--guided-eps 0"),
])
def test_bad_options_are_one_line_errors(options, match):
    with pytest.raises(InputError, match=match) as caught:
        RefineOptions(**options)
    assert "\n" not in str(caught.value) and len(str(caught.value)) <= 160


def test_none_returns_the_map_and_checks_the_size():
    image, _, rough = _scene(32)
    assert np.array_equal(refine(rough, image, "none"), np.clip(rough, 0, 1))
    with pytest.raises(InputError, match="does not match image size"):
        refine(rough[:10], image, "none")


def test_trimap_follows_thresholds_and_erosion():
    saliency = np.zeros((40, 40), np.float32)
    saliency[10:30, 10:30] = 1.0
    saliency[10:30, 18:22] = 0.5
    trimap = trimap_from_map(saliency, 240, 10, erode=0)
    assert set(np.unique(trimap)) == {0.0, 0.5, 1.0}
    assert (trimap[10:30, 18:22] == 0.5).all() and trimap[12, 12] == 1.0 and trimap[0, 0] == 0.0
    wider = trimap_from_map(saliency, 240, 10, erode=5)
    assert (wider == 0.5).sum() > (trimap == 0.5).sum()


def test_guided_filter_moves_edges_towards_the_image():
    image, truth, rough = _scene()
    guided = guided_filter(image, rough, radius=4, eps=1e-4)
    assert guided.dtype == np.float32 and guided.shape == truth.shape
    assert np.mean((guided - truth) ** 2) < 0.8 * np.mean((rough - truth) ** 2)


def test_matting_lowers_alpha_error_and_decontaminates_colour():
    image, truth, rough = _scene()
    result = refine_full(rough, image, RefineOptions("matting", erode=3))
    assert result.alpha.shape == truth.shape and 0 < result.unknown_fraction < 0.5 and result.seconds > 0
    assert np.mean((result.alpha - truth) ** 2) < 0.5 * np.mean((rough - truth) ** 2)
    rim = (truth > 0.2) & (truth < 0.8)  # mixed pixels: the estimated colour should be the disc's red
    red = np.array([220, 30, 30])
    assert np.abs(result.foreground[rim].astype(float) - red).mean() < 0.5 * np.abs(image[rim].astype(float) - red).mean()


def test_matting_solve_is_bounded_by_max_side():
    image, truth, rough = _scene(256)
    small = refine_full(rough, image, RefineOptions("matting", erode=3, max_side=64), foreground=False)
    assert small.foreground is None
    assert np.mean((small.alpha - truth) ** 2) < np.mean((rough - truth) ** 2)


def test_hard_map_needs_no_solve():
    saliency = np.zeros((32, 32), np.float32)
    saliency[8:24, 8:24] = 1.0
    image = np.zeros((32, 32, 3), np.uint8)
    assert np.array_equal(refine(saliency, image, "matting", erode=0), saliency)


def test_smooth_removes_specks_and_thresholds():
    saliency = np.zeros((40, 40), np.float32)
    saliency[10:30, 10:30] = 0.9
    saliency[2, 2] = 1.0  # a one-pixel speck
    smooth = smooth_mask(saliency)
    assert set(np.unique(smooth)) <= {0.0, 1.0} and smooth[2, 2] == 0 and smooth[20, 20] == 1
    assert np.array_equal(refine(saliency, np.zeros((40, 40, 3), np.uint8), "none", post="smooth"), smooth)


def test_refine_cutout_is_rgba_in_either_channel_order():
    image, _, rough = _scene(48)
    rgba = refine_cutout(image, rough, "guided")
    bgra = refine_cutout(image[:, :, ::-1].copy(), rough, "guided", channel_order="bgr")
    assert rgba.shape == (48, 48, 4) and np.array_equal(rgba, bgra)


def test_processing_helpers_take_refine():
    from u2deploy import processing

    image, truth, rough = _scene(96)
    rgba = processing.cutout(image, rough, refine="matting")
    assert np.array_equal(rgba, refine_cutout(image, rough, "matting"))
    assert not np.array_equal(rgba, processing.cutout(image, rough))
    over_green = processing.composite(image, rough, (0, 177, 64), refine="matting")
    from_bgr = processing.composite(image[:, :, ::-1].copy(), rough, (0, 177, 64), channel_order="bgr", refine="matting")
    assert over_green.shape == (96, 96, 3) and np.array_equal(over_green, from_bgr)

"""Temporal smoothing with scene-cut and motion gates, and edge refinement inside the pipeline."""

from __future__ import annotations

import numpy as np
import pytest

from tests.pipeline.conftest import indexed_frame
from u2deploy.errors import InputError
from u2deploy.pipeline import MaskSmoother, Pipeline

pytest.importorskip("cv2")


def _static_frame(seed: int = 0) -> np.ndarray:
    frame = np.full((64, 96, 3), 90, np.uint8)
    frame[16:48, 30:60] = (40, 200, 240)
    return frame


def _noisy_map(rng: np.random.Generator) -> np.ndarray:
    saliency = np.zeros((64, 96), np.float32)
    saliency[16:48, 30:60] = 1.0
    return np.clip(saliency + rng.normal(0, 0.15, saliency.shape), 0, 1).astype(np.float32)


def _flicker(maps: list[np.ndarray]) -> float:
    return float(np.mean([np.abs(a - b).mean() for a, b in zip(maps, maps[1:], strict=False)]))


def test_smoothing_calms_a_static_scene():
    rng = np.random.default_rng(0)
    raw = [_noisy_map(rng) for _ in range(20)]
    smoother = MaskSmoother(0.8)
    smooth = [smoother(m.copy(), _static_frame()) for m in raw]
    assert _flicker(smooth) < 0.5 * _flicker(raw) and smoother.resets == 0
    assert MaskSmoother(0.0)(raw[0]) is raw[0]


def test_scene_cut_restarts_the_average():
    rng = np.random.default_rng(1)
    smoother = MaskSmoother(0.8)
    for _ in range(5):
        smoother(_noisy_map(rng), _static_frame())
    cut = np.full((64, 96, 3), 230, np.uint8)  # another scene: everything changed
    new = np.zeros((64, 96), np.float32)
    assert np.array_equal(smoother(new, cut), new) and smoother.resets == 1
    never = MaskSmoother(0.8, reset=0)
    for _ in range(3):
        never(_noisy_map(rng), _static_frame())
    never(new, cut)
    assert never.resets == 0


def test_moving_pixels_are_not_averaged():
    smoother = MaskSmoother(0.8, reset=0.9)
    still = np.zeros((64, 96), np.float32)
    smoother(still, indexed_frame(0))
    moved = np.ones((64, 96), np.float32)
    out = smoother(moved, indexed_frame(8))  # the block moved 24 px: those pixels take the new map
    changed = np.abs(indexed_frame(8).astype(int) - indexed_frame(0).astype(int)).sum(axis=2) > 200
    assert out[changed].mean() > 0.9 and out[~changed].mean() < out[changed].mean()


@pytest.mark.parametrize(("kwargs", "match"), [({"weight": 1.0}, "smoothing 1.0"), ({"reset": 2.0}, "--smooth-reset 2.0")])
def test_bad_smoothing_values(kwargs, match):
    with pytest.raises(InputError, match=match):
        MaskSmoother(**kwargs)


def test_pipeline_refines_each_map(tiny_runtime, video_12):
    plain = [m for _, m in Pipeline(tiny_runtime, str(video_12))]
    guided = [m for _, m in Pipeline(tiny_runtime, str(video_12), refine="guided")]
    assert len(guided) == 12 and not np.allclose(plain[0], guided[0])
    with pytest.raises(InputError, match="--refine 'sharp'"):
        Pipeline(tiny_runtime, str(video_12), refine="sharp")


def test_matting_cutout_uses_the_decontaminated_colours(tiny_runtime, video_12):
    from u2deploy.pipeline.pipeline import _Packet

    saliency = np.zeros((64, 96), np.float32)  # a soft-edged object where frame 0 has its block
    saliency[12:52, 0:24] = 1.0
    import cv2

    saliency = cv2.GaussianBlur(saliency, (0, 0), 3)
    for effect, changes in (("cutout", True), ("blur", False)):
        pipeline = Pipeline(tiny_runtime, str(video_12), effect=effect, refine="matting")
        packet = _Packet(0, indexed_frame(0), 0.0)
        alpha = pipeline._refine(packet, saliency)
        assert alpha.shape == saliency.shape and not np.array_equal(alpha, saliency)
        assert (not np.array_equal(packet.frame, indexed_frame(0))) == changes, effect  # blur shows the old background

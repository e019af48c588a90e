"""Each effect on a frame with a known mask, alone and through the pipeline's sinks.

A stub runtime is used here (and only here): these tests are about what the effects and sinks
do with a given mask, not about inference.
"""

from __future__ import annotations

import numpy as np
import pytest

from u2deploy.errors import InputError
from u2deploy.pipeline import ImageSequenceSink, Pipeline, parse_effect
from u2deploy.pipeline.effects import CHROMA_GREEN, adapt_for_sink, checkerboard

BGR = (10, 100, 200)  # frame colour, BGR


@pytest.fixture()
def frame() -> np.ndarray:
    return np.full((8, 12, 3), BGR, np.uint8)


@pytest.fixture()
def saliency() -> np.ndarray:
    """Columns 0-3: object (1.0); 4-7: half (0.5); 8-11: background (0.0)."""
    mask = np.zeros((8, 12), np.float32)
    mask[:, :4], mask[:, 4:8] = 1.0, 0.5
    return mask


def test_mask(frame, saliency):
    out = parse_effect("mask")(frame, saliency)
    assert out.dtype == np.uint8 and out.shape == (8, 12)
    assert np.all(out[:, :4] == 255) and np.all(out[:, 4:8] == 128) and np.all(out[:, 8:] == 0)


def test_matte_is_premultiplied_colour(frame, saliency):
    out = parse_effect("matte")(frame, saliency)
    assert out.shape == (8, 12, 3)
    assert tuple(out[0, 0]) == BGR
    assert tuple(out[0, 5]) == (5, 50, 100)
    assert tuple(out[0, 10]) == (0, 0, 0)


def test_cutout_is_bgra_with_the_mask_as_alpha(frame, saliency):
    effect = parse_effect("cutout")
    out = effect(frame, saliency)
    assert out.shape == (8, 12, 4)
    assert tuple(out[0, 0]) == (*BGR, 255) and out[0, 5, 3] == 128 and out[0, 10, 3] == 0
    assert np.all(out[:, :, :3] == BGR)  # straight (not premultiplied) alpha


def test_cutout_flattened_for_video_over_checker_or_green(frame, saliency):
    cut = parse_effect("cutout")(frame, saliency)
    flat = adapt_for_sink(cut, parse_effect("cutout"), alpha=False, grey=False)
    board = checkerboard(8, 12)
    assert flat.shape == (8, 12, 3) and tuple(flat[0, 0]) == BGR
    assert np.array_equal(flat[:, 8:], board[:, 8:])
    green = adapt_for_sink(cut, parse_effect("cutout:green"), alpha=False, grey=False)
    assert tuple(green[0, 10]) == CHROMA_GREEN[::-1]  # RGB green, written as BGR
    assert tuple(green[0, 0]) == BGR


def test_color_and_replace(frame, saliency, tmp_path):
    import cv2

    out = parse_effect("color:255,0,0")(frame, saliency)  # red background, RGB
    assert tuple(out[0, 0]) == BGR and tuple(out[0, 10]) == (0, 0, 255)
    assert tuple(out[0, 5]) == (5, 50, 228)
    background = np.zeros((40, 60, 3), np.uint8)
    background[:] = (0, 255, 0)  # BGR green on disk
    path = tmp_path / "green.png"
    cv2.imwrite(str(path), background)
    out = parse_effect(f"replace:{path}")(frame, saliency)
    assert tuple(out[0, 0]) == BGR and tuple(out[0, 10]) == (0, 255, 0)


def test_blur_keeps_the_object_and_blurs_the_background(saliency):
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    mask = np.zeros((64, 96), np.float32)
    mask[:, :48] = 1.0
    out = parse_effect("blur:6")(frame, mask)
    assert np.array_equal(out[:, :48], frame[:, :48])
    assert out[:, 60:].std() < frame[:, 60:].std() / 3


def test_bad_effects():
    with pytest.raises(InputError, match=r"unknown effect 'blurr'.*did you mean 'blur'"):
        parse_effect("blurr")
    with pytest.raises(InputError, match=r"color:300,0,0: expected R,G,B"):
        parse_effect("color:300,0,0")
    with pytest.raises(InputError, match="replace:PATH"):
        parse_effect("replace")
    with pytest.raises(InputError, match="no such image file"):
        parse_effect("replace:/nonexistent/beach.jpg")


class StubRuntime:
    """Returns the left-half mask for every frame (effect tests only)."""

    batch_size = None

    def predict(self, images, channel_order="rgb"):
        maps = []
        for image in images:
            mask = np.zeros(image.shape[:2], np.float32)
            mask[:, : image.shape[1] // 2] = 1.0
            maps.append(mask)
        return maps


@pytest.mark.parametrize(("effect", "pattern", "channels"), [
    ("cutout", "%03d.png", 4),       # PNG keeps alpha
    ("cutout", "%03d.jpg", 3),       # JPEG cannot: flattened over the checkerboard
    ("mask", "%03d.png", 1),         # grey stays grey in images
])
def test_effects_through_image_sinks(tmp_path, video_12, effect, pattern, channels):
    import cv2

    sink = ImageSequenceSink(tmp_path / pattern)
    stats = Pipeline(StubRuntime(), str(video_12), sink, effect, max_frames=3).run()
    assert stats.frames_out == 3
    image = cv2.imread(str(sink.path_for(2)), cv2.IMREAD_UNCHANGED)
    assert (image.shape[2] if image.ndim == 3 else 1) == channels
    if channels == 4:
        assert image[0, 0, 3] == 255 and image[0, -1, 3] == 0

"""The pre/post-processing contract: reference mode against upstream maths, fast mode, every input kind."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from u2deploy import processing
from u2deploy.errors import InputError
from u2deploy.spec import IMAGENET_MEAN, IMAGENET_STD, ModelSpec, spec_for_task

SPEC = spec_for_task("sod")


@pytest.mark.parametrize("shape, size", [((7, 9), (5, 4)), ((30, 20, 3), (64, 48)), ((512, 512, 3), (320, 320)),
                                         ((300, 451, 4), (320, 320)), ((3, 4), (5, 7))])  # fmt: skip
def test_reference_resize_equals_skimage_without_antialiasing(shape, size):
    from skimage.transform import resize

    image = np.random.default_rng(1).random(shape)
    expected = resize(image, size, order=1, mode="constant", anti_aliasing=False)
    np.testing.assert_allclose(processing.resize_bilinear_reference(image, size), expected, atol=1e-12)


def test_reference_preprocess_by_hand():
    # A 2x2 image that is already at the network size: no resize, so every value is by hand.
    spec = ModelSpec(input_size=(32, 32))
    pixel = np.array([[[100, 50, 200]]], dtype=np.uint8)
    image = np.tile(pixel, (32, 32, 1))
    x, size = processing.preprocess(image, spec, mode="reference")
    assert size == (32, 32) and x.shape == (1, 3, 32, 32) and x.dtype == np.float32
    scaled = np.array([100, 50, 200]) / 200.0  # divided by the image maximum, not 255
    expected = (scaled - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(x[0, :, 5, 5], expected, rtol=1e-6)


def test_grayscale_uses_the_red_statistics_on_all_channels():
    gray = np.full((40, 40), 128, np.uint8)
    x, _ = processing.preprocess(gray, ModelSpec(input_size=(40, 40)), mode="reference")
    expected = (1.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
    np.testing.assert_allclose(x[0, :, 10, 10], [expected] * 3, rtol=1e-6)


def test_rgba_alpha_counts_in_the_maximum_but_is_not_an_input():
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 0] = 100
    rgba[..., 3] = 200
    x, _ = processing.preprocess(rgba, ModelSpec(input_size=(40, 40)), mode="reference")
    np.testing.assert_allclose(x[0, 0, 10, 10], (0.5 - IMAGENET_MEAN[0]) / IMAGENET_STD[0], rtol=1e-6)


def test_black_image_gives_a_finite_input_and_a_flat_map():
    x, _ = processing.preprocess(np.zeros((50, 60, 3), np.uint8), SPEC, mode="reference")
    assert np.isfinite(x).all()
    flat = processing.postprocess(np.full((1, 1, 320, 320), 0.3, np.float32), SPEC, (50, 60))
    assert flat.shape == (50, 60) and not flat.any()


@pytest.mark.parametrize("mode", processing.MODES)
def test_fast_and_reference_agree_on_real_photos(photos, mode):
    for image in photos.values():
        x_mode, _ = processing.preprocess(image, SPEC, mode=mode)
        x_ref, _ = processing.preprocess(image, SPEC, mode="reference")
        # Same job, different resize kernels: borders and aliasing differ, the content does not.
        assert np.abs(x_mode - x_ref).mean() < 0.05


def test_reference_postprocess_truncates_to_8_bits_before_resizing_back():
    fused = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(1, 1, 32, 32)
    out = processing.postprocess(fused, ModelSpec(input_size=(32, 32)), (32, 32), mode="reference")
    expected = np.floor(np.linspace(0, 1, 32 * 32).reshape(32, 32) * 255) / 255
    np.testing.assert_allclose(out, expected, atol=1e-6)


@pytest.mark.parametrize("mode", processing.MODES)
def test_postprocess_size_range_and_inversion(mode):
    fused = np.random.default_rng(0).random((1, 1, 320, 320)).astype(np.float32)
    out = processing.postprocess(fused, SPEC, (123, 457), mode=mode)
    assert out.shape == (123, 457) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1
    inverted = processing.postprocess(fused, SPEC.replace(invert_output=True), (320, 320), mode=mode)
    straight = processing.postprocess(fused, SPEC, (320, 320), mode=mode)
    assert np.abs((1 - straight) - inverted).max() < 2 / 255


# --------------------------------------------------------------------------------------------
# Input kinds


def _png_bytes(array: np.ndarray, **save) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", **save)
    return buffer.getvalue()


def test_every_input_kind_gives_the_same_tensor(tmp_path, photos):
    image = photos["coffee"]
    path = tmp_path / "coffee.png"
    path.write_bytes(_png_bytes(image))
    reference, _ = processing.preprocess(image, SPEC)
    for source in (path, str(path), path.read_bytes(), Image.open(path)):
        np.testing.assert_array_equal(processing.preprocess(source, SPEC)[0], reference)
    bgr = np.ascontiguousarray(image[:, :, ::-1])
    np.testing.assert_array_equal(processing.preprocess(bgr, SPEC, channel_order="bgr")[0], reference)


def test_sixteen_bit_images_match_their_eight_bit_version():
    image8 = np.random.default_rng(0).integers(0, 256, (60, 80), dtype=np.uint8)
    image16 = image8.astype(np.uint16) * 257
    decoded = processing.load_image(Image.fromarray(image16))
    assert decoded.dtype == np.uint16
    # fast mode resizes uint8 with OpenCV fixed-point weights: within one grey level of exact
    for mode, atol in (("reference", 1e-4), ("fast", 1.0 / 255 / min(IMAGENET_STD))):
        a = processing.preprocess(image8, SPEC, mode=mode)[0]
        b = processing.preprocess(decoded, SPEC, mode=mode)[0]
        np.testing.assert_allclose(a, b, atol=atol)


def test_exif_orientation_is_applied(tmp_path):
    wide = np.zeros((20, 40, 3), np.uint8)
    image = Image.fromarray(wide)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    assert processing.load_image(path).shape[:2] == (40, 20)


@pytest.mark.parametrize("bad, message", [
    (b"\x89PNG\r\n\x1a\n truncated", "not a readable image"),
    (b"hello, I am a text file", "not a readable image"),
])  # fmt: skip
def test_corrupt_files_are_named(tmp_path, bad, message):
    path = tmp_path / "broken.png"
    path.write_bytes(bad)
    with pytest.raises(InputError, match=f"broken.png: {message}"):
        processing.load_image(path)


def test_truncated_real_image_is_rejected(tmp_path, photos):
    data = _png_bytes(photos["chelsea"])
    path = tmp_path / "half.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="half.png"):
        processing.load_image(path)


@pytest.mark.parametrize("array, message", [
    (np.zeros((4, 4, 5), np.uint8), "shape"),
    (np.zeros((2, 4, 4, 3), np.uint8), "for a batch, pass a list"),
    (np.zeros((0, 4, 3), np.uint8), "empty"),
    (np.zeros((4, 4, 3), np.complex64), "dtype"),
])  # fmt: skip
def test_bad_arrays(array, message):
    with pytest.raises(InputError, match=message):
        processing.load_image(array)


def test_missing_file_and_unknown_type(tmp_path):
    with pytest.raises(InputError, match="no such image file"):
        processing.load_image(tmp_path / "nope.jpg")
    with pytest.raises(InputError, match="type dict"):
        processing.load_image({"not": "an image"})
    with pytest.raises(InputError, match="unknown processing mode"):
        processing.preprocess(np.zeros((8, 8, 3), np.uint8), SPEC, mode="turbo")


# --------------------------------------------------------------------------------------------
# Outputs


def test_mask_cutout_and_composite():
    image = np.full((4, 6, 3), 200, np.uint8)
    saliency = np.zeros((4, 6), np.float32)
    saliency[:, 3:] = 1.0
    assert processing.to_mask_u8(saliency)[0].tolist() == [0, 0, 0, 255, 255, 255]
    rgba = processing.cutout(image, saliency)
    assert rgba.shape == (4, 6, 4) and rgba[0, 0, 3] == 0 and rgba[0, 5, 3] == 255
    over_red = processing.composite(image, saliency, (255, 0, 0))
    assert over_red[0, 0].tolist() == [255, 0, 0] and over_red[0, 5].tolist() == [200, 200, 200]
    backdrop = np.zeros((8, 12, 3), np.uint8)
    assert processing.composite(image, saliency, backdrop)[0, 0].tolist() == [0, 0, 0]
    with pytest.raises(InputError, match="does not match"):
        processing.cutout(image, saliency[:2])

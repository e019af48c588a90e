"""The one pre/post-processing contract, shared by every backend.

Two modes do the same job:

* ``reference`` reproduces upstream ``u2net_test.py`` + ``data_loader.py`` exactly as run in the
  environment the pretrained weights came from (scikit-image 0.14, so no anti-aliasing):
  bilinear resize with zero padding at the borders (``skimage.transform.resize(order=1,
  mode='constant')``), divide by the image maximum, ImageNet statistics; after the network, min-max
  normalisation (``normPRED``), truncation to 8 bits, then Pillow's bilinear resize back to the
  image size. The resize is implemented here in numpy (two small matrix products) and tested
  against scikit-image, so the runtime needs neither scikit-image nor torch.
* ``fast`` does the same with OpenCV on uint8 and float32 and keeps the map in float; it is the
  default because it is several times cheaper on large photos. The difference between the two
  on real photos is reported in the README.

Inputs: a path, bytes, a PIL image or a numpy array; grayscale, RGB, RGBA, 16-bit and float
images; EXIF orientation is applied to files and PIL images. Arrays are RGB unless
``channel_order='bgr'`` is passed (OpenCV frames).

Guarantees on reading: a file's type is sniffed from its first bytes (a large non-image is never
read whole), its pixel count is checked from the header before decoding (`MAX_PIXELS`, raised by
``$U2DEPLOY_MAX_PIXELS`` or `max_pixels=`), and NaN/inf pixels are refused: each of these is an
`InputError` naming the file, never a silently wrong map.
"""

from __future__ import annotations

import io
import os
import re
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np

from .errors import BackendError, InputError
from .spec import ModelSpec

__all__ = [
    "ImageInput",
    "IMAGE_EXTENSIONS",
    "MODES",
    "load_image",
    "preprocess",
    "preprocess_batch",
    "postprocess",
    "resize_bilinear_reference",
    "normalise_channels",
    "min_max",
    "to_rgb_u8",
    "as_float",
    "scale_by_peak",
    "to_mask_u8",
    "cutout",
    "composite",
    "MAX_PIXELS",
    "max_pixels",
]

ImageInput = Union[str, os.PathLike, bytes, np.ndarray, Any]  # noqa: UP007  (Any: PIL.Image.Image)
MODES = ("fast", "reference")
#: File suffixes treated as images when a folder is scanned (CLI inputs, datasets).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm")
#: Default pixel limit for decoded files: 100 megapixels (10000x10000; ~300 MB as RGB uint8).
MAX_PIXELS = 100_000_000
#: Environment variable that sets another limit (an integer number of pixels).
MAX_PIXELS_ENV = "U2DEPLOY_MAX_PIXELS"
#: Pillow formats matching `IMAGE_EXTENSIONS` (JPEG also opens multi-picture MPO files).
_PIL_FORMATS = ("JPEG", "PNG", "BMP", "TIFF", "WEBP", "GIF", "PPM")


# --------------------------------------------------------------------------------------------
# Reading


def load_image(source: ImageInput, channel_order: str = "rgb", max_pixels: int | None = None) -> np.ndarray:
    """Return the image as an HxW or HxWxC array (C = 3 or 4, RGB[A] order), dtype as stored.

    Args:
        source: a path, bytes, a PIL image or a numpy array.
        channel_order: ``rgb`` or ``bgr`` (arrays only).
        max_pixels: largest width*height a file or bytes may declare (default `max_pixels()`).

    Raises:
        InputError: naming the file, for a missing, unknown, truncated, oversized or non-finite image.
    """
    if isinstance(source, np.ndarray):
        return _check_finite(_from_array(source, channel_order), "image array")
    if isinstance(source, (str, os.PathLike)):
        return _from_file(Path(source), max_pixels)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _from_stream(io.BytesIO(bytes(source)), "<bytes>", max_pixels)
    if _is_pil_image(source):
        return _check_finite(_from_pil(source), "PIL image")
    raise InputError(
        f"cannot use an input of type {type(source).__name__} as an image; pass a path, bytes, "
        "a PIL image or a numpy array"
    )


def max_pixels(value: int | str | None = None) -> int:
    """The pixel limit: `value`, else ``$U2DEPLOY_MAX_PIXELS``, else `MAX_PIXELS`."""
    text = value if value is not None else os.environ.get(MAX_PIXELS_ENV)
    if text is None or text == "":
        return MAX_PIXELS
    try:
        limit = int(text)
    except (TypeError, ValueError):
        limit = 0
    if limit < 1:
        where = "--max-pixels" if value is not None else f"${MAX_PIXELS_ENV}"
        raise InputError(f"{where} {text!r}: must be a positive number of pixels, e.g. {MAX_PIXELS}")
    return limit


def _from_file(path: Path, limit: int | None) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"{path}: no such image file")
    try:
        with open(path, "rb") as handle:  # Pillow reads the header from the stream, not the whole file
            return _from_stream(handle, str(path), limit)
    except PermissionError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None


def _from_stream(stream: Any, name: str, limit: int | None) -> np.ndarray:
    import warnings

    from PIL import Image, UnidentifiedImageError

    limit = max_pixels(limit)
    _allow_pillow(limit)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides
            with Image.open(stream, formats=_PIL_FORMATS) as image:
                _check_pixels(image.size, name, limit)
                image.load()
                return _check_finite(_from_pil(image), name)
    except UnidentifiedImageError:
        # PIL's own message names the in-memory buffer, not the file: say what it means instead.
        raise InputError(f"{name}: not a readable image (none of {', '.join(_PIL_FORMATS)}); check the file") from None
    except Image.DecompressionBombError as exc:  # Pillow's own, lower, check fired first: same message
        found = re.search(r"\((\d+) pixels\)", str(exc))
        raise _too_many(name, int(found.group(1)) if found else None, limit) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, MemoryError) as exc:
        raise InputError(f"{name}: not a readable image ({_short(exc)}); check that the file is a complete image") from None


def _short(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:100]


def _allow_pillow(limit: int) -> None:
    """Pillow refuses images above 2x its own MAX_IMAGE_PIXELS: lift it to a limit the user raised."""
    from PIL import Image

    if Image.MAX_IMAGE_PIXELS is not None and limit > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = limit


def _check_pixels(size: tuple[int, int], name: str, limit: int) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise InputError(f"{name}: the header declares an empty image ({width}x{height})")
    if width * height > limit:
        raise _too_many(name, width * height, limit)


def _too_many(name: str, pixels: int | None, limit: int) -> InputError:
    if not pixels:
        count = "more pixels than Pillow allows"
    else:
        count = f"{pixels / 1e6:.0f} megapixels" if pixels >= 1e6 else f"{pixels} pixels"
    return InputError(f"{name}: declares {count}, above the limit of {limit / 1e6:g}; raise it with --max-pixels "
                      f"or ${MAX_PIXELS_ENV} if the image is genuine")


def _check_finite(array: np.ndarray, name: str) -> np.ndarray:
    """NaN or inf pixels would turn the whole map black or NaN without a word: refuse them."""
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        raise InputError(f"{name}: {bad} pixel value(s) are NaN or infinite; replace them (e.g. numpy.nan_to_num) "
                         "before predicting")
    return array


def _is_pil_image(obj: Any) -> bool:
    return type(obj).__module__.startswith("PIL.") and hasattr(obj, "getbands")


def _from_pil(image: Any) -> np.ndarray:
    from PIL import ImageOps

    image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(image, dtype=np.uint16)
    if mode == "I":  # 32-bit integer PNGs are usually 16-bit data
        array = np.asarray(image, dtype=np.int64)
        return array.clip(0, 65535).astype(np.uint16)
    if mode == "F":
        return np.asarray(image, dtype=np.float32)
    if mode in ("1", "L"):
        return np.asarray(image.convert("L"))
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        return np.asarray(image.convert("RGBA"))
    return np.asarray(image.convert("RGB"))


def _from_array(array: np.ndarray, channel_order: str) -> np.ndarray:
    if channel_order not in ("rgb", "bgr"):
        raise InputError(f"channel_order must be 'rgb' or 'bgr', not '{channel_order}'")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise InputError(
            f"image array has shape {array.shape}; expected HxW, HxWx1, HxWx3 or HxWx4 "
            "(for a batch, pass a list of images)"
        )
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise InputError(f"image array has an empty dimension: shape {array.shape}")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise InputError(f"image array has dtype {array.dtype}; use uint8, uint16 or float")
    if channel_order == "bgr" and array.ndim == 3:
        array = array[:, :, [2, 1, 0, 3][: array.shape[2]]]
    return array


def _cv2():
    from ._deps import require

    return require("cv2", "mode='fast' processing (mode='reference' needs no OpenCV)")


def as_float(image: np.ndarray) -> np.ndarray:
    """skimage.img_as_float semantics: integers scaled by their dtype maximum, floats kept."""
    if np.issubdtype(image.dtype, np.integer):
        return image.astype(np.float64) / np.iinfo(image.dtype).max
    return image.astype(np.float64)


# --------------------------------------------------------------------------------------------
# Pre-processing


def preprocess(image: ImageInput, spec: ModelSpec, mode: str = "fast", channel_order: str = "rgb") -> tuple[np.ndarray, tuple[int, int]]:
    """One image -> (1x3xHxW float32 network input, original (height, width))."""
    array = load_image(image, channel_order)
    original = (int(array.shape[0]), int(array.shape[1]))
    if mode == "reference":
        chw = _preprocess_reference(array, spec)
    elif mode == "fast":
        chw = _preprocess_fast(array, spec)
    else:
        raise InputError(f"unknown processing mode '{mode}'; available: {', '.join(MODES)}")
    return chw[None], original


def preprocess_batch(
    images: Sequence[ImageInput], spec: ModelSpec, mode: str = "fast", channel_order: str = "rgb"
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Several images -> (Nx3xHxW float32, their original sizes)."""
    tensors, sizes = zip(*(preprocess(image, spec, mode, channel_order) for image in images), strict=True)
    return np.concatenate(tensors, axis=0), list(sizes)


def normalise_channels(image: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """HxWxC (already scaled to [0,1]) -> 3xHxW with the spec's statistics.

    A single channel gets the first (R) statistics on all three outputs, as upstream does.
    Channels after the third (alpha) are ignored.
    """
    mean = np.asarray(spec.mean, dtype=image.dtype)
    std = np.asarray(spec.std, dtype=image.dtype)
    if image.shape[2] == 1:
        channels = np.repeat(image, 3, axis=2)
        mean, std = np.full(3, mean[0], image.dtype), np.full(3, std[0], image.dtype)
    else:
        channels = image[:, :, :3]
    return ((channels - mean) / std).transpose(2, 0, 1).astype(np.float32)


def scale_by_peak(image: np.ndarray, spec: ModelSpec) -> np.ndarray:
    if spec.scale == "255":
        return image
    peak = image.max()
    # Upstream divides by the maximum unconditionally and turns an all-black image into NaN;
    # a black frame should give a (flat) map instead.
    return image / peak if peak > 0 else image


def _preprocess_reference(array: np.ndarray, spec: ModelSpec) -> np.ndarray:
    image = as_float(array)
    if image.ndim == 2:
        image = image[:, :, None]
    resized = resize_bilinear_reference(image, spec.input_size)
    return normalise_channels(scale_by_peak(resized, spec), spec)


def _preprocess_fast(array: np.ndarray, spec: ModelSpec) -> np.ndarray:
    cv2 = _cv2()
    height, width = spec.input_size
    if array.dtype not in (np.uint8, np.uint16, np.float32):
        array = as_float(array).astype(np.float32)
    resized = cv2.resize(array, (width, height), interpolation=cv2.INTER_LINEAR)
    if resized.ndim == 2:
        resized = resized[:, :, None]
    image = resized.astype(np.float32)
    if np.issubdtype(array.dtype, np.integer):
        image *= np.float32(1.0 / np.iinfo(array.dtype).max)
    return normalise_channels(scale_by_peak(image, spec), spec)


def _interpolation_matrix(size_in: int, size_out: int) -> np.ndarray:
    """Rows of weights for 1-D linear interpolation with half-pixel centres and zero padding.

    Output pixel i samples input coordinate (i + 0.5) * in / out - 0.5; neighbours outside the
    image count as 0 (skimage ``mode='constant'``, cval 0), which darkens upsampled borders
    exactly as upstream does.
    """
    coords = (np.arange(size_out) + 0.5) * (size_in / size_out) - 0.5
    low = np.floor(coords).astype(np.int64)
    frac = coords - low
    matrix = np.zeros((size_out, size_in), dtype=np.float64)
    for offset, weight in ((0, 1.0 - frac), (1, frac)):
        index = low + offset
        inside = (index >= 0) & (index < size_in)
        np.add.at(matrix, (np.nonzero(inside)[0], index[inside]), weight[inside])
    return matrix


def resize_bilinear_reference(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``skimage.transform.resize(image, size, order=1, mode='constant', anti_aliasing=False)``.

    Args:
        image: HxW or HxWxC float array.
        size: output (height, width).
    """
    rows = _interpolation_matrix(image.shape[0], size[0])
    cols = _interpolation_matrix(image.shape[1], size[1])
    if image.ndim == 2:
        out = rows @ image @ cols.T
    else:
        out = np.einsum("ij,jkc,lk->ilc", rows, image, cols, optimize=True)
    # skimage clips to the input range (clip=True); linear interpolation cannot overshoot, but
    # rounding can leave a value a few ulps outside it.
    return np.clip(out, min(image.min(), 0.0), image.max())


# --------------------------------------------------------------------------------------------
# Post-processing


def postprocess(fused: np.ndarray, spec: ModelSpec, original_size: tuple[int, int], mode: str = "fast") -> np.ndarray:
    """The network's fused map (HxW, 1xHxW or 1x1xHxW) -> float32 map in [0, 1] at `original_size`."""
    pred = np.asarray(fused, dtype=np.float32).reshape(fused.shape[-2:])
    if not np.isfinite(pred).all():  # min-max would spread NaN over the whole map, or hide an inf
        raise BackendError("the model output holds NaN or inf values: its weights are damaged (non-finite) or a "
                           "reduced precision overflowed; re-export or re-download the model")
    if spec.invert_output:
        pred = 1.0 - pred
    pred = min_max(pred)
    height, width = original_size
    if mode == "reference":
        return _resize_back_reference(pred, width, height)
    if mode == "fast":
        cv2 = _cv2()
        return np.clip(cv2.resize(pred, (width, height), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
    raise InputError(f"unknown processing mode '{mode}'; available: {', '.join(MODES)}")


def min_max(pred: np.ndarray) -> np.ndarray:
    """Upstream ``normPRED``; a constant map becomes zeros instead of NaN."""
    low, high = float(pred.min()), float(pred.max())
    if high - low <= 0:
        return np.zeros_like(pred)
    return (pred - low) / (high - low)


def _resize_back_reference(pred: np.ndarray, width: int, height: int) -> np.ndarray:
    """``Image.fromarray(pred*255).convert('RGB').resize((w, h), BILINEAR)`` as in u2net_test.py.

    The 'F' -> 'RGB' conversion truncates to 8 bits before the resize (checked on Pillow 13).
    """
    from PIL import Image

    quantised = np.clip(np.floor(pred * 255.0), 0, 255).astype(np.uint8)
    resized = Image.fromarray(quantised, mode="L").resize((width, height), Image.BILINEAR)
    return np.asarray(resized, dtype=np.float32) / 255.0


# --------------------------------------------------------------------------------------------
# Outputs


def to_mask_u8(saliency: np.ndarray) -> np.ndarray:
    """Float map in [0, 1] -> uint8 mask (rounded)."""
    return np.clip(np.rint(np.asarray(saliency, np.float32) * 255.0), 0, 255).astype(np.uint8)


def to_rgb_u8(image: ImageInput, channel_order: str = "rgb") -> np.ndarray:
    array = load_image(image, channel_order)
    if np.issubdtype(array.dtype, np.floating):
        array = np.clip(array * 255.0, 0, 255).astype(np.uint8)
    elif array.dtype != np.uint8:
        array = (array.astype(np.float64) * (255.0 / np.iinfo(array.dtype).max)).round().astype(np.uint8)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    return np.ascontiguousarray(array[:, :, :3])


def _check_same_size(image: np.ndarray, saliency: np.ndarray) -> None:
    if image.shape[:2] != saliency.shape[:2]:
        raise InputError(f"mask size {saliency.shape[:2]} does not match image size {image.shape[:2]}")


def cutout(image: ImageInput, saliency: np.ndarray, channel_order: str = "rgb", refine: Any = None) -> np.ndarray:
    """RGBA uint8 cut-out: the image with the saliency map as alpha.

    Args:
        refine: None, ``"guided"``, ``"matting"`` or a `refine.RefineOptions`: refined alpha and,
            for matting, the object's colours without the old background (`refine.refine_cutout`).
    """
    if refine is not None:
        from .refine import refine_cutout

        return refine_cutout(image, saliency, refine, channel_order)
    rgb = to_rgb_u8(image, channel_order)
    _check_same_size(rgb, saliency)
    return np.dstack([rgb, to_mask_u8(saliency)])


def composite(
    image: ImageInput,
    saliency: np.ndarray,
    background: tuple[int, int, int] | ImageInput = (255, 255, 255),
    channel_order: str = "rgb",
    refine: Any = None,
) -> np.ndarray:
    """RGB uint8: the salient object over a colour or over another image (resized to fit).

    Args:
        refine: as in `cutout`: the refined alpha and (matting) the object's clean colours are used.
    """
    if refine is not None:
        from .refine import refine_full

        refined = refine_full(saliency, image, refine, channel_order=channel_order)
        clean = refined.foreground if refined.foreground is not None else to_rgb_u8(image, channel_order)
        if channel_order == "bgr":  # `clean` is RGB; back to the caller's order, which the background shares
            clean = np.ascontiguousarray(clean[:, :, ::-1])
        return composite(clean, refined.alpha, background, channel_order)
    rgb = to_rgb_u8(image, channel_order).astype(np.float32)
    _check_same_size(rgb, saliency)
    alpha = np.clip(np.asarray(saliency, np.float32), 0.0, 1.0)[:, :, None]
    if isinstance(background, tuple) and len(background) == 3 and all(isinstance(v, (int, np.integer)) for v in background):
        back = np.broadcast_to(np.asarray(background, np.float32), rgb.shape)
    else:
        from PIL import Image

        back_u8 = to_rgb_u8(background, channel_order)
        height, width = rgb.shape[:2]
        back = np.asarray(Image.fromarray(back_u8).resize((width, height), Image.BILINEAR), np.float32)
    out = rgb * alpha + back * (1.0 - alpha)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


#: what `render` makes: 8-bit mask, RGBA cut-out, composite, or the float32 map itself
OUTPUT_KINDS = ("mask", "cutout", "composite", "map")


def render(kind: str, image: ImageInput, saliency: np.ndarray, background: Any = None, refine: Any = None) -> np.ndarray:
    """The pixels of one output: what `predict`, `serve` and the Ray workers write, from one place.

    Args:
        kind: ``mask`` (uint8), ``cutout`` (RGBA), ``composite`` (RGB over `background`: an (R, G, B)
            colour, default white, or an image; an (R, G, B, A) colour gives RGBA, as rembg's ``bgc``)
            or ``map`` (the float32 map).
        refine: None, ``"none"``, ``"guided"``, ``"matting"`` or a `refine.RefineOptions`: the alpha
            is refined first, and matting cut-outs and composites use the object's clean colours.
    """
    if kind not in OUTPUT_KINDS:
        raise InputError(f"unknown output '{kind}'; choose one of {', '.join(OUTPUT_KINDS)}")
    if refine is not None:
        from .refine import RefineOptions, refine_full

        options = refine if isinstance(refine, RefineOptions) else RefineOptions(mode=refine)
        if not options.active:
            refine = None
        elif kind in ("mask", "map"):
            saliency, refine = refine_full(saliency, image, options, foreground=False).alpha, None
    if kind == "map":
        return np.asarray(saliency, np.float32)
    if kind == "mask":
        return to_mask_u8(saliency)
    if kind == "cutout":
        return cutout(image, saliency, refine=refine)
    colour = (255, 255, 255) if background is None else background
    if isinstance(colour, tuple) and len(colour) == 4:
        return over_colour(cutout(image, saliency, refine=refine), colour)
    return composite(image, saliency, colour, refine=refine)


def over_colour(rgba: np.ndarray, colour: tuple[int, ...]) -> np.ndarray:
    """RGBA image over a colour with its own alpha (Pillow's `alpha_composite` rule, as rembg's ``bgc``)."""
    front = rgba.astype(np.float32) / 255.0
    back = np.asarray(colour, np.float32) / 255.0
    alpha = front[..., 3:] + back[3] * (1.0 - front[..., 3:])
    safe = np.where(alpha > 0, alpha, 1.0)
    rgb = (front[..., :3] * front[..., 3:] + back[:3] * back[3] * (1.0 - front[..., 3:])) / safe
    return np.clip(np.rint(np.dstack([rgb, alpha]) * 255.0), 0, 255).astype(np.uint8)

"""Decoding uploads and encoding replies for `u2deploy serve`, guarded against hostile input.

Decoding checks the byte size and the header's pixel count before any pixel is decoded, so a
decompression bomb is refused, never allocated. Rendering reuses `u2deploy.processing`
(mask, cut-out, composite); this module only turns arrays into bytes.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np

from .. import processing
from ..errors import InputError, U2DeployError

__all__ = ["TooLargeError", "decode_image", "parse_colour", "render", "encode", "choose_format",
           "OUTPUTS", "FORMATS", "MEDIA_TYPES"]

OUTPUTS = processing.OUTPUT_KINDS
#: reply format -> media type; `npy` is the float32 map as a NumPy .npy file
MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp", "npy": "application/x-npy"}
FORMATS = tuple(MEDIA_TYPES)
_ALIASES = {"jpg": "jpeg"}


class TooLargeError(U2DeployError):
    """An upload or its decoded image is beyond the service's limits (HTTP 413)."""


def decode_image(data: bytes, max_pixels: int, name: str = "upload") -> np.ndarray:
    """Image bytes -> array as `processing.load_image` reads it, after checking the header's size."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise InputError(f"{name}: empty body; send an image (JPEG, PNG, WebP, ...) as the body or as a 'file' field")
    try:
        with warnings.catch_warnings():  # our own limit below is the guard; Pillow's warning would only add noise
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:  # reads the header only
                width, height = probe.size
    except Image.DecompressionBombError as exc:  # Pillow's own guard, at twice its MAX_IMAGE_PIXELS
        raise TooLargeError(f"{name}: image is over the pixel limit (Pillow refused it as a decompression bomb)") from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputError(f"{name}: not a readable image ({type(exc).__name__}); send a JPEG, PNG, WebP, ...") from exc
    if width * height > max_pixels:
        raise TooLargeError(f"{name}: {width}x{height} pixels is over the limit of {max_pixels} (--max-pixels)")
    try:
        return processing.load_image(data)
    except InputError as exc:
        raise InputError(f"{name}: corrupt or truncated image; {exc}") from exc


def parse_colour(text: str) -> tuple[int, ...]:
    """'R,G,B', 'R,G,B,A' or '#rrggbb[aa]' -> a tuple of 0-255 ints."""
    text = text.strip()
    try:
        if text.startswith("#") and len(text) in (7, 9):
            values = tuple(int(text[i:i + 2], 16) for i in range(1, len(text), 2))
        else:
            values = tuple(int(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) not in (3, 4) or not all(0 <= v <= 255 for v in values):
        raise InputError(f"background colour '{text[:40]}' is not R,G,B[,A] or #rrggbb with values 0-255")
    return values


def render(output: str, image: np.ndarray, saliency: np.ndarray, background: Any = None,
           refine: Any = None) -> np.ndarray:
    """The reply's pixels: `processing.render`, the same code as `predict` and the Ray workers."""
    return processing.render(output, image, saliency, background, refine)


def choose_format(requested: str | None, accept: str | None, output: str) -> str:
    """The reply format: `format=` if given, else the first supported type in Accept, else PNG (npy for maps)."""
    if requested:
        fmt = _ALIASES.get(requested.lower(), requested.lower())
        if fmt not in MEDIA_TYPES:
            raise InputError(f"unknown format '{requested[:20]}'; choose one of {', '.join(FORMATS)}")
    else:
        fmt = _from_accept(accept or "") or ("npy" if output == "map" else "png")
    if (output == "map") != (fmt == "npy"):
        raise InputError("output=map is sent as format=npy, and npy carries only output=map")
    if output == "cutout" and fmt == "jpeg":
        raise InputError("JPEG has no alpha for a cut-out; use format=png or webp, or output=composite")
    return fmt


def _from_accept(accept: str) -> str | None:
    for part in accept.split(","):
        media = part.split(";")[0].strip().lower()
        for fmt, media_type in MEDIA_TYPES.items():
            if media == media_type:
                return fmt
    return None


def encode(pixels: np.ndarray, fmt: str) -> bytes:
    """Pixels -> file bytes; PNG at a low zlib level because it is lossless anyway and level 6 costs 3x the time."""
    buffer = io.BytesIO()
    if fmt == "npy":
        np.save(buffer, pixels, allow_pickle=False)
        return buffer.getvalue()
    from PIL import Image

    image = Image.fromarray(pixels)
    options = {"png": {"compress_level": 1}, "jpeg": {"quality": 90}, "webp": {"quality": 90}}[fmt]
    image.save(buffer, format=fmt.upper(), **options)
    return buffer.getvalue()

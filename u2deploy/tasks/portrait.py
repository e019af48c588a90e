"""Portrait drawing, as upstream `u2net_portrait_demo.py` does it (REFERENCE.md section 7.1).

1. Detect faces with OpenCV's bundled frontal-face Haar cascade (`detectMultiScale(gray, 1.1, 4)`)
   and keep the largest (first on a tie).
2. Crop with upstream's margins: 0.4 w left and right, 0.6 h above, 0.2 h below; parts outside the
   image become white.
3. Pad to roughly square with white (only when the sides differ by more than 2 pixels), then
   resize to the network size (512) with `INTER_AREA`.
4. Divide by the crop's maximum and normalise with the swapped R/B statistics the portrait spec
   carries; after the network, draw `1 - fused`, min-max normalised, at the network resolution.

With no face, upstream warns and runs the whole image at its original size. u2deploy warns too
(`NoFaceFoundWarning`) and draws the whole image, padded to a square and resized to the network
size, because exported artifacts have a fixed input size and a full-resolution U2-Net pass needs
many GB of memory. `face=False` skips detection on purpose.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._deps import require
from ..processing import ImageInput, min_max, normalise_channels, to_rgb_u8
from ..spec import ModelSpec

__all__ = ["FaceBox", "PortraitTask", "NoFaceFoundWarning", "detect_largest_face", "crop_face", "pad_to_square"]

WHITE = 255


class NoFaceFoundWarning(UserWarning):
    """No face was detected; the whole image is drawn instead."""


@dataclass(frozen=True)
class FaceBox:
    x: int
    y: int
    w: int
    h: int


def detect_largest_face(rgb: np.ndarray) -> FaceBox | None:
    """The largest face OpenCV's frontal-face cascade finds (upstream parameters), or None."""
    cv2 = require("cv2", "portrait face detection")
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    faces = cascade.detectMultiScale(gray, 1.1, 4)
    if len(faces) == 0:
        return None
    areas = [int(w) * int(h) for (_, _, w, h) in faces]
    x, y, w, h = (int(v) for v in faces[int(np.argmax(areas))])  # argmax keeps the first on a tie
    return FaceBox(x, y, w, h)


def crop_face(rgb: np.ndarray, face: FaceBox) -> np.ndarray:
    """Upstream's face crop: the box grown by its margins, white where it leaves the image."""
    height, width = rgb.shape[:2]
    left, right = face.x - int(0.4 * face.w), face.x + face.w + int(0.4 * face.w)
    top, bottom = face.y - int(0.6 * face.h), face.y + face.h + int(0.2 * face.h)
    crop = np.full((bottom - top, right - left, 3), WHITE, dtype=np.uint8)
    src_top, src_bottom = max(top, 0), min(bottom, height)
    src_left, src_right = max(left, 0), min(right, width)
    crop[src_top - top:src_bottom - top, src_left - left:src_right - left] = rgb[src_top:src_bottom, src_left:src_right]
    return crop


def pad_to_square(image: np.ndarray) -> np.ndarray:
    """Upstream's padding: white columns (or rows) on both sides when the sides differ by > 2 px."""
    height, width = image.shape[:2]
    if height - 2 > width:
        pad = int((height - width) / 2)
        return np.pad(image, ((0, 0), (pad, pad), (0, 0)), constant_values=WHITE)
    if width - 2 > height:
        pad = int((width - height) / 2)
        return np.pad(image, ((pad, pad), (0, 0), (0, 0)), constant_values=WHITE)
    return image


class PortraitTask:
    """Face photo in, pencil-style drawing out (float32 in [0, 1], dark strokes on white).

    Options:
        face: detect and crop the largest face (default True); False draws the whole image.
    """

    def __init__(self, face: bool = True, **_: Any) -> None:
        self.face = face

    def prepare(self, image: ImageInput, spec: ModelSpec, mode: str, channel_order: str) -> tuple[np.ndarray, Any]:
        cv2 = require("cv2", "portrait drawing")
        rgb = to_rgb_u8(image, channel_order)
        box = detect_largest_face(rgb) if self.face else None
        if self.face and box is None:
            warnings.warn("no face found: drawing the whole image (resized to the network size)", NoFaceFoundWarning,
                          stacklevel=2)  # fmt: skip
        region = pad_to_square(crop_face(rgb, box) if box else rgb)
        height, width = spec.input_size
        resized = cv2.resize(region, (width, height), interpolation=cv2.INTER_AREA).astype(np.float64)
        peak = resized.max()
        scaled = resized / peak if peak > 0 else resized
        return normalise_channels(scaled, spec)[None], box

    def finish(self, fused: np.ndarray, spec: ModelSpec, context: Any, mode: str) -> np.ndarray:
        pred = np.asarray(fused, dtype=np.float32).reshape(fused.shape[-2:])
        return min_max(1.0 - pred if spec.invert_output else pred)

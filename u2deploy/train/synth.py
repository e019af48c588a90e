"""A small synthetic salient-object dataset, for tests and demos where no SOD dataset is at hand.

Each sample is one object (an ellipse, a star-like blob or a convex polygon, in a saturated colour
with a little texture) with soft, blurred edges over a textured, lower-contrast background; the
mask is the object's soft alpha, so masks have soft values at the edges like real matting data.
Samples are a pure function of (seed, index): the same call writes the same files.

Layout written: ``OUT/images/synth_00000.jpg`` and ``OUT/masks/synth_00000.png`` (the first
layout `data.resolve_folders` accepts) plus ``OUT/synth.json`` describing how it was made.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .._io import atomic_path, atomic_write_text
from ..errors import InputError

__all__ = ["make_sample", "generate"]


def _smooth_noise(rng: np.random.Generator, size: tuple[int, int], cells: int) -> np.ndarray:
    """Low-frequency noise in [0, 1]: a coarse random grid upsampled with a cubic filter."""
    import cv2

    grid = rng.random((cells, cells)).astype(np.float32)
    noise = cv2.resize(grid, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
    return np.clip(noise, 0.0, 1.0)


def _background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Two muted colours mixed by smooth noise, plus faint stripes: texture without a salient blob."""
    height, width = size
    mix = 0.6 * _smooth_noise(rng, size, int(rng.integers(3, 8))) + 0.4 * _smooth_noise(rng, size, 16)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle, period = rng.uniform(0, np.pi), rng.uniform(6, 24) * max(height, width) / 320
    stripes = 0.5 + 0.5 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    colours = rng.uniform(0.25, 0.65, size=(2, 3)).astype(np.float32)
    image = colours[0] * mix[..., None] + colours[1] * (1 - mix[..., None])
    return image + 0.06 * (stripes[..., None] - 0.5)


def _shape_points(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Polygon vertices (x, y) of an ellipse, a star-like blob or a convex polygon."""
    height, width = size
    radius = rng.uniform(0.18, 0.33) * min(height, width)
    centre = np.array([rng.uniform(radius, width - radius), rng.uniform(radius, height - radius)])
    kind = rng.integers(0, 3)
    angles = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    if kind == 0:  # ellipse
        stretch = rng.uniform(0.55, 1.0)
        points = np.stack([radius * np.cos(angles), stretch * radius * np.sin(angles)], axis=1)
    elif kind == 1:  # blob: radius modulated by a few harmonics
        radii = radius * (1 + sum(rng.uniform(-0.15, 0.15) * np.cos(k * angles + rng.uniform(0, 6.3)) for k in (2, 3, 5)))
        points = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    else:  # convex polygon
        angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 8))))
        points = np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)
    rotation = rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(rotation), -np.sin(rotation)], [np.sin(rotation), np.cos(rotation)]])
    return points @ rot.T + centre


def _soft_alpha(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """The object's alpha in [0, 1]: a filled shape with edges blurred over a few pixels."""
    import cv2

    binary = np.zeros(size, dtype=np.float32)
    points = np.round(_shape_points(rng, size) * 16).astype(np.int32)  # 4 fractional bits
    cv2.fillPoly(binary, [points], 1.0, lineType=cv2.LINE_AA, shift=4)
    sigma = rng.uniform(0.6, 2.0) * max(size) / 320
    return np.clip(cv2.GaussianBlur(binary, (0, 0), sigmaX=max(sigma, 0.3)), 0.0, 1.0)


def make_sample(seed: int, index: int, size: tuple[int, int] = (320, 320)) -> tuple[np.ndarray, np.ndarray]:
    """One (RGB uint8 HxWx3 image, uint8 HxW mask) pair, determined by (seed, index)."""
    rng = np.random.default_rng([int(seed), int(index)])
    background = _background(rng, size)
    alpha = _soft_alpha(rng, size)
    colour = rng.uniform(0, 1, 3).astype(np.float32)
    colour[rng.integers(0, 3)] = rng.uniform(0.85, 1.0)  # saturated: the object stands out
    texture = 0.85 + 0.15 * _smooth_noise(rng, size, 6)[..., None]
    image = background * (1 - alpha[..., None]) + colour * texture * alpha[..., None]
    image += rng.normal(0, 0.015, image.shape).astype(np.float32)  # sensor noise
    image_u8 = np.clip(np.round(image * 255), 0, 255).astype(np.uint8)
    return image_u8, np.clip(np.round(alpha * 255), 0, 255).astype(np.uint8)


def _save(array: np.ndarray, path: Path, **options: object) -> None:
    from PIL import Image

    with atomic_path(path, suffix=path.suffix) as tmp:
        Image.fromarray(array).save(tmp, format="JPEG" if path.suffix == ".jpg" else "PNG", **options)


def generate(out: str | os.PathLike, count: int, size: int | tuple[int, int] = 320, seed: int = 0,
             progress: Callable[[int], None] | None = None) -> Path:
    """Write `count` samples under `out` (images/, masks/, synth.json) and return `out`.

    Args:
        out: dataset root; created if needed. Existing files of the same names are replaced.
        count: number of image/mask pairs.
        size: image size, an int or (height, width).
        seed: makes the dataset reproducible; a different seed gives a disjoint-looking set
            (use one seed for training and another for validation).
        progress: called with 1 after each sample, e.g. a tqdm bar's `update`.
    """
    from ..spec import parse_size

    height, width = parse_size(size)
    if count < 1:
        raise InputError(f"--count {count}: must be at least 1")
    if height < 16 or width < 16:
        raise InputError(f"size {height}x{width} is too small for a synthetic sample; use at least 16")
    root = Path(out)
    for index in range(count):
        image, mask = make_sample(seed, index, (height, width))
        _save(image, root / "images" / f"synth_{index:05d}.jpg", quality=95)
        _save(mask, root / "masks" / f"synth_{index:05d}.png")
        if progress:
            progress(1)
    info = {"generator": "u2deploy.train.synth", "count": count, "size": [height, width], "seed": seed}
    atomic_write_text(root / "synth.json", json.dumps(info, indent=2) + "\n")
    return root

"""Real photos for parity checks, calibration and demos, from scikit-image's bundled data.

`PARITY_PHOTOS` is the held-out set every parity gate and benchmark uses (the five photos of
shared/reference/BASELINES.md). `CALIBRATION_PHOTOS` is a disjoint set of other bundled photos (not `stereo_motorcycle`'s right
view either: it shows the held-out motorcycle scene)
for INT8 calibration demos; real deployments calibrate on their own images.
"""

from __future__ import annotations

import numpy as np

from ._deps import require

__all__ = ["PARITY_PHOTOS", "CALIBRATION_PHOTOS", "sample_photo", "sample_photos"]

PARITY_PHOTOS = ("astronaut", "chelsea", "coffee", "motorcycle", "rocket")
CALIBRATION_PHOTOS = ("immunohistochemistry", "hubble_deep_field", "retina", "camera", "coins", "horse",
                      "page", "moon", "cell", "grass", "gravel", "brick")  # fmt: skip


def sample_photo(name: str) -> np.ndarray:
    """One bundled photo as an RGB (or grayscale) uint8 array."""
    data = require("skimage.data", "the bundled sample photos (pip install scikit-image)")
    if name == "motorcycle":
        return data.stereo_motorcycle()[0]
    loader = getattr(data, name, None)
    if loader is None:
        from .errors import InputError

        raise InputError(f"unknown sample photo '{name}'")
    image = np.asarray(loader())
    if image.dtype == np.bool_:  # `horse` is a binary silhouette
        return image.astype(np.uint8) * 255
    return image


def sample_photos(names: tuple[str, ...] = PARITY_PHOTOS) -> dict[str, np.ndarray]:
    return {name: sample_photo(name) for name in names}

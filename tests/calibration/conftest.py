"""Calibration fixtures: a folder of generated images, a private calibration cache, the tiny fp32 ONNX.

The tiny seeded model at 64x64 calibrates in seconds; the pretrained U2-Net only appears in
`test_int8_real_u2net.py` (marked `weights` and `slow`).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.tiny_exports import SIZE

COUNT = 8  # calibration.source.MIN_IMAGES: the fewest the quantizers accept


def write_images(folder, count: int = COUNT, seed: int = 0):
    """`count` varied RGB PNGs (gradients, discs, noise) of different sizes."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        height, width = rng.integers(48, 160, size=2)
        yy, xx = np.mgrid[:height, :width]
        disc = (yy - height * rng.random()) ** 2 + (xx - width * rng.random()) ** 2 < (min(height, width) / 3) ** 2
        image = rng.integers(0, 60, size=(height, width, 3)) + (xx[..., None] * 100 // width) + disc[..., None] * 120
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / f"img_{i:02d}.png")
    return folder


@pytest.fixture(scope="session")
def calib_dir(tmp_path_factory):
    return write_images(tmp_path_factory.mktemp("calib") / "images")


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """The calibration cache of every test here lives in one session folder, never in the user's cache."""
    from u2deploy.calibration import cache

    root = tmp_path_factory.mktemp("calibration-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cache, "default_cache_root", lambda: root)
        yield root


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory, tiny_model):
    """The tiny model's fp32 ONNX at 64x64 with its spec, as the exporters hand it to a quantizer."""
    import onnx

    from u2deploy.export.onnx_export import build_onnx
    from u2deploy.spec import spec_for_task

    spec = spec_for_task("sod", arch="u2net_test", input_size=SIZE)
    path = tmp_path_factory.mktemp("tiny_onnx") / "tiny.fp32.onnx"
    onnx.save(build_onnx(tiny_model, spec), str(path))
    return path, spec

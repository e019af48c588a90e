"""Tasks travel with the model: checkpoints, ONNX and OpenVINO exports, Runtime and `predict`."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from u2deploy import Runtime
from u2deploy.export import export
from u2deploy.model import save_checkpoint
from u2deploy.spec import spec_for_task

SIZE = 64  # the tiny network at a small input keeps each export near a second


@pytest.fixture(scope="module")
def portrait_checkpoint(tmp_path_factory, tiny_model):
    spec = spec_for_task("portrait", arch="u2net_test", input_size=SIZE)
    return save_checkpoint(tiny_model, tmp_path_factory.mktemp("portrait") / "portrait.pth", spec)


@pytest.fixture(scope="module")
def portrait_exports(tmp_path_factory, portrait_checkpoint):
    out = tmp_path_factory.mktemp("portrait_exports")
    return {fmt: export(portrait_checkpoint, f"{out}/", fmt=fmt, progress=False).path for fmt in ("onnx", "openvino")}


@pytest.mark.onnxruntime
@pytest.mark.openvino
def test_portrait_task_round_trips_through_every_format(portrait_checkpoint, portrait_exports, photos):
    drawings = {}
    for name, path in {"torch": portrait_checkpoint, **portrait_exports}.items():
        with Runtime(path) as runtime:
            assert runtime.spec.task == "portrait" and runtime.spec.invert_output
            assert runtime.spec.mean == (0.406, 0.456, 0.485)
            assert runtime.describe()["task"] == "portrait"
            drawings[name] = runtime.predict(photos["astronaut"])
    assert drawings["torch"].shape == (SIZE, SIZE)  # the drawing is at the network resolution
    # The drawing is min-max normalised, which stretches the tiny model's narrow output range:
    # OpenVINO's default CPU kernels differ by ~1e-4 before that stretch.
    for name, limit in (("onnx", 1e-3), ("openvino", 2e-2)):
        assert np.abs(drawings[name] - drawings["torch"]).max() < limit, name


def test_task_override_on_a_file_that_carries_none(tmp_path, tiny_model, photos):
    path = tmp_path / "official_layout.pth"
    torch.save(tiny_model.state_dict(), path)
    with Runtime(path, task="portrait") as runtime:
        assert runtime.spec.task == "portrait" and runtime.input_size == (512, 512)
    with Runtime(path, task="human") as runtime:
        saliency = runtime.predict(photos["coffee"])
        assert runtime.spec.task == "human" and saliency.shape == photos["coffee"].shape[:2]


def test_no_face_option_draws_the_whole_image(portrait_checkpoint, photos):
    import warnings

    with Runtime(portrait_checkpoint, task_options={"face": False}) as runtime, warnings.catch_warnings():
        warnings.simplefilter("error")
        assert runtime.predict(np.full((50, 80, 3), 90, np.uint8)).shape == (SIZE, SIZE)


def _predict(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "u2deploy", "predict", *map(str, args)], capture_output=True,
                          text=True, timeout=300)  # fmt: skip


@pytest.mark.onnxruntime
def test_predict_portrait_writes_drawings_and_names_faceless_files(tmp_path, portrait_exports, photos):
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.fromarray(photos["astronaut"]).save(inputs / "astronaut.png")
    Image.fromarray(np.full((60, 90, 3), 128, np.uint8)).save(inputs / "wall.png")
    result = _predict(portrait_exports["onnx"], inputs, "-o", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "wall.png: no face found" in result.stderr and "astronaut.png" not in result.stderr
    drawing = Image.open(tmp_path / "out" / "astronaut.png")
    assert drawing.mode == "L" and drawing.size == (SIZE, SIZE)
    refused = _predict(portrait_exports["onnx"], inputs, "-o", tmp_path / "out2", "--output", "cutout")
    assert refused.returncode == 1 and "a portrait model writes drawings" in refused.stderr

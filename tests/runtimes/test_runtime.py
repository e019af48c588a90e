"""`Runtime`: one API over torch, ONNX Runtime and OpenVINO, with the tiny seeded model."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from tests.tiny_exports import SIZE
from u2deploy import Runtime
from u2deploy.errors import BackendError, InputError


@pytest.fixture(scope="module")
def artifacts(tiny_export, tiny_checkpoint) -> dict:
    """torch checkpoint, static ONNX, batch-2 ONNX and (when installed) an IR, all of one model."""
    from u2deploy._deps import available

    found = {"torch": tiny_checkpoint, "onnx": tiny_export("onnx").path,
             "onnx_b2": tiny_export("onnx", batch=2, verify=False).path}  # fmt: skip
    if available("openvino"):
        found["openvino"] = tiny_export("openvino").path
    return found


def open_runtime(artifacts: dict, kind: str, **kw) -> Runtime:
    if kind not in artifacts:
        pytest.skip(f"{kind} is not installed")
    if kind == "torch":  # the checkpoint has no fixed size: give it the exports' so every backend sees one tensor
        kw.setdefault("input_size", SIZE)
    return Runtime(artifacts[kind], **kw)


@pytest.mark.parametrize("kind", ["torch", "onnx", "openvino"])
def test_predict_single_and_list_at_each_images_size(artifacts, photos, kind):
    with open_runtime(artifacts, kind) as runtime:
        saliency = runtime.predict(photos["coffee"])
        assert saliency.shape == photos["coffee"].shape[:2] and saliency.dtype == np.float32
        assert 0.0 <= saliency.min() and saliency.max() <= 1.0
        maps = runtime.predict([photos["rocket"], photos["chelsea"], photos["astronaut"]])
        assert [m.shape for m in maps] == [photos[n].shape[:2] for n in ("rocket", "chelsea", "astronaut")]
        assert runtime.predict([]) == []


def test_every_backend_gives_the_same_maps(artifacts, photos):
    images = [photos["rocket"], photos["chelsea"]]
    with open_runtime(artifacts, "torch", mode="reference") as runtime:
        reference = runtime.predict(images)
    for kind in ("onnx", "onnx_b2", "openvino"):
        if kind not in artifacts:
            continue
        with open_runtime(artifacts, kind, mode="reference") as runtime:
            for ref, got in zip(reference, runtime.predict(images), strict=True):
                assert np.abs(ref - got).max() <= 2 / 255 + 1e-6, kind  # 8-bit truncation in the reference post-process


def test_static_batch_artifact_takes_any_number_of_images(artifacts):
    batch = np.random.default_rng(1).normal(size=(3, 3, SIZE, SIZE)).astype(np.float32)
    with open_runtime(artifacts, "onnx") as single, open_runtime(artifacts, "onnx_b2") as pairs:
        assert pairs.batch_size == 2
        np.testing.assert_allclose(pairs.infer(batch), single.infer(batch), atol=1e-6)  # 2 + (1 padded to 2)


@pytest.mark.parametrize("kind", ["torch", "onnx", "openvino"])
def test_concurrent_predict_from_several_threads(artifacts, photos, kind):
    images = [photos[name] for name in ("rocket", "chelsea", "coffee", "astronaut")]
    with open_runtime(artifacts, kind) as runtime:
        expected = runtime.predict(images)
        results: dict[int, list] = {}
        errors: list[BaseException] = []

        def work(index: int) -> None:
            try:
                results[index] = [runtime.predict(images[(index + k) % 4]) for k in range(3)]
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    assert not errors, errors
    for index, maps in results.items():
        for k, saliency in enumerate(maps):
            np.testing.assert_allclose(saliency, expected[(index + k) % 4], atol=1e-5)


@pytest.mark.parametrize("kind, backend, device", [("torch", "torch", "cpu"), ("onnx", "onnxruntime", "cpu"),
                                                   ("openvino", "openvino", "CPU")])  # fmt: skip
def test_describe_says_what_runs_where(artifacts, kind, backend, device):
    with open_runtime(artifacts, kind) as runtime:
        info = runtime.describe()
    assert info["backend"] == backend and info["device"] == device and info["precision"] == "fp32"
    assert info["input_shape"][1] == 3 and info["input_size"] == [SIZE, SIZE]
    assert info["versions"]["u2deploy"] and info["thread_safe"] is True
    assert info["spec"]["arch"] == "u2net_test" and info["mode"] == "fast"
    assert [o["name"] for o in info["outputs"]] == ["mask"]


def test_close_and_context_manager(artifacts):
    runtime = open_runtime(artifacts, "onnx")
    with runtime as same:
        assert same is runtime
        runtime.infer(np.zeros((1, 3, SIZE, SIZE), np.float32))
    with pytest.raises(BackendError, match="closed or not loaded"):
        runtime.infer(np.zeros((1, 3, SIZE, SIZE), np.float32))
    runtime.close()  # closing twice is harmless


def test_wrong_input_shapes_are_clear(artifacts):
    with open_runtime(artifacts, "onnx") as runtime:
        with pytest.raises(InputError, match=rf"input 'input' has shape 1x3x32x32, the model takes 1x3x{SIZE}x{SIZE} "
                                             r"\(re-export with another --size/--batch, or --dynamic\)"):
            runtime.infer(np.zeros((1, 3, 32, 32), np.float32))
        with pytest.raises(InputError, match=r"infer\(\) takes an Nx3xHxW array, got shape \(3, 64, 64\)"):
            runtime.infer(np.zeros((3, 64, 64), np.float32))
    with pytest.raises(InputError, match=f"was exported for {SIZE}x{SIZE} input, not 320x320"):
        open_runtime(artifacts, "onnx", input_size=320)


@pytest.mark.weights
@pytest.mark.onnxruntime
def test_a_third_party_onnx_without_metadata_runs_like_the_checkpoint(u2net_onnx, u2net_checkpoint, photos):
    """rembg's u2net.onnx carries no spec: the SOD defaults at the graph's input size apply."""
    with Runtime(u2net_onnx) as runtime:
        info = runtime.describe()
        assert info["spec"]["arch"] == "unknown" and info["input_size"] == [320, 320] and len(info["outputs"]) == 7
        got = runtime.predict(photos["coffee"])
    with Runtime(u2net_checkpoint, input_size=320) as runtime:
        expected = runtime.predict(photos["coffee"])
    assert np.abs(got - expected).max() < 1e-3


@pytest.mark.parametrize("kind", ["onnx", "openvino"])
def test_predict_command_runs_any_artifact(artifacts, tmp_path, photos, kind, capsys):
    from PIL import Image

    from u2deploy.cli import main

    if kind not in artifacts:
        pytest.skip(f"{kind} is not installed")
    Image.fromarray(photos["chelsea"]).save(tmp_path / "chelsea.png")
    assert main(["predict", str(artifacts[kind]), str(tmp_path / "chelsea.png"), "-o", str(tmp_path / "out")]) == 0
    mask = np.asarray(Image.open(tmp_path / "out" / "chelsea.png"))
    assert mask.shape == photos["chelsea"].shape[:2] and mask.dtype == np.uint8
    assert "wrote 1 mask(s)" in capsys.readouterr().out

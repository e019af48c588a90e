"""Backend selection and the errors a user can meet when opening a model."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from u2deploy import Runtime
from u2deploy.errors import BackendError, InputError, MissingDependencyError, ModelLoadError, UnsupportedOptionError
from u2deploy.runtimes.registry import backend_for_path


def test_backend_from_suffix_and_unknown_names():
    assert [backend_for_path(f"m{s}") for s in (".pth", ".pt", ".onnx", ".xml", ".engine", ".plan")] == [
        "torch", "torch", "onnxruntime", "openvino", "tensorrt", "tensorrt"]  # fmt: skip
    with pytest.raises(InputError, match=r"cannot tell the backend from the suffix '.txt'"):
        backend_for_path("notes.txt")


def test_unknown_backend_suggests_but_does_not_switch(tiny_checkpoint):
    with pytest.raises(InputError, match=r"unknown backend 'onnxrt' \(from backend=\) \(did you mean 'onnxruntime'\?\); "
                                         r"available: torch, onnxruntime, openvino, tensorrt"):
        Runtime(tiny_checkpoint, backend="onnxrt")


def test_tensorrt_backend_without_tensorrt_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # as on a machine without it (more in tests/trt)
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\0" * 16)
    with pytest.raises(MissingDependencyError, match="'tensorrt' is needed for the TensorRT backend"):
        Runtime(engine)


@pytest.mark.parametrize("suffix, error, message", [
    (".txt", InputError, "cannot tell the backend from the suffix"),
    (".onnx", ModelLoadError, "onnxruntime cannot load it"),
    (".xml", ModelLoadError, "OpenVINO cannot read it"),
    (".pth", ModelLoadError, "not a PyTorch checkpoint"),
])  # fmt: skip
def test_a_file_that_is_not_a_model(tmp_path, suffix, error, message):
    if suffix == ".xml":
        pytest.importorskip("openvino")
    path = tmp_path / f"notes{suffix}"
    path.write_text("these are my notes, not a model\n")
    with pytest.raises(error, match=message):
        Runtime(path)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_a_model_of_another_network(tmp_path, backend):
    import torch

    pytest.importorskip(backend)
    path = tmp_path / "convnet.onnx"
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 1)).eval()
    torch.onnx.export(net, (torch.zeros(1, 3, 32, 32),), str(path), input_names=["x"], output_names=["y"],
                      opset_version=17, dynamo=False)  # fmt: skip
    with pytest.raises(ModelLoadError, match=r"convnet.onnx: is not a U2-Net model: it takes \[x 1x3x32x32\] and "
                                             r"returns \[y 1x4x32x32\]"):
        Runtime(path, backend=backend)


@pytest.mark.parametrize("module, suffix, extra", [("onnxruntime", ".onnx", "onnx"), ("openvino", ".xml", "openvino"),
                                                   ("torch", ".pth", "torch")])  # fmt: skip
def test_a_backend_that_is_not_installed(monkeypatch, tmp_path, module, suffix, extra):
    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"\0")
    monkeypatch.setitem(sys.modules, module, None)  # import now fails as if the package were absent
    with pytest.raises(MissingDependencyError, match=rf"'{module}' is needed for the .* backend .*"
                                                     rf"pip install 'u2deploy\[{extra}\]'"):
        Runtime(path)


@pytest.mark.onnxruntime
def test_ort_strict_refuses_a_missing_gpu_provider(tiny_export):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    path = tiny_export("onnx").path
    with pytest.raises(BackendError, match="CUDAExecutionProvider not available .* or use device='cpu'"):
        Runtime(path, device="cuda", strict=True)
    with pytest.warns(RuntimeWarning, match="could not be used; running on CPUExecutionProvider"):
        runtime = Runtime(path, device="cuda")
    assert runtime.describe()["device"] == "cpu"
    runtime.close()


@pytest.mark.openvino
def test_openvino_devices_and_options(tiny_export):
    path = tiny_export("openvino").path
    with pytest.raises(BackendError, match="OpenVINO device 'NPU7' not found; this machine has CPU"):
        Runtime(path, device="NPU7")
    with pytest.raises(UnsupportedOptionError, match="hint 'fastest' unknown"):
        Runtime(path, hint="fastest")
    with Runtime(path, device="AUTO", hint="throughput", execution_mode="accuracy") as runtime:
        assert runtime.describe()["device"] == "AUTO"
        size = runtime.input_size
        assert runtime.infer(np.zeros((1, 3, *size), np.float32)).shape == (1, 1, *size)

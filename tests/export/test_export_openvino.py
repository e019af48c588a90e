"""OpenVINO IR export of the tiny seeded model: parity, rt_info metadata, manifest with the .bin."""

from __future__ import annotations

import numpy as np
import pytest

from tests.tiny_exports import SIZE
from u2deploy import Runtime
from u2deploy._io import sha256_file
from u2deploy.runtimes.base import read_sidecar

pytestmark = pytest.mark.openvino


def test_fp32_ir_matches_torch_and_round_trips_its_metadata(tiny_export, tiny_model):
    import torch

    from u2deploy.model import DeployHead

    result = tiny_export("openvino")
    xml, binary, manifest = result.files
    assert (xml.name, binary.name, manifest.name) == ("u2net_test_64_fp32.xml", "u2net_test_64_fp32.bin",
                                                      "u2net_test_64_fp32.xml.json")  # fmt: skip
    assert result.parity.summary()["max_abs"] <= 1e-3
    batch = np.random.default_rng(0).normal(size=(1, 3, SIZE, SIZE)).astype(np.float32)
    with torch.inference_mode():
        expected = DeployHead(tiny_model).eval()(torch.from_numpy(batch)).numpy()
    with Runtime(xml, inference_precision="f32") as runtime:
        assert runtime.backend == "openvino"
        np.testing.assert_allclose(runtime.infer(batch), expected, atol=1e-3, rtol=0)
        info = runtime.describe()
        assert info["precision"] == "fp32" and info["device"] == "CPU" and "openvino" in info["versions"]
        assert runtime.spec.arch == "u2net_test" and runtime.spec.extra["format"] == "openvino"


def test_rt_info_holds_the_same_metadata_as_onnx(tiny_export):
    import openvino as ov

    model = ov.Core().read_model(str(tiny_export("openvino").path))
    assert model.get_rt_info(["arch"]).astype(str) == "u2net_test"
    assert model.get_rt_info(["precision"]).astype(str) == "fp32"
    assert model.get_rt_info(["input_size"]).astype(str) == f"{SIZE}x{SIZE}"


def test_manifest_checksums_the_bin_too(tiny_export):
    result = tiny_export("openvino")
    files = read_sidecar(result.path)["files"]
    assert set(files) == {"u2net_test_64_fp32.xml", "u2net_test_64_fp32.bin"}
    assert files["u2net_test_64_fp32.bin"]["sha256"] == sha256_file(result.files[1])


def test_fp16_ir_has_half_the_weights_and_says_so(tiny_export):
    fp32 = tiny_export("openvino")
    fp16 = tiny_export("openvino", precision="fp16", dynamic=("batch",))
    assert fp16.path.name == "u2net_test_64_fp16_dynamic.xml" and fp16.parity.passed
    ratio = fp16.files[1].stat().st_size / fp32.files[1].stat().st_size
    assert 0.45 < ratio < 0.6
    with Runtime(fp16.path) as runtime:
        assert runtime.describe()["precision"] == "fp16" and runtime.batch_size is None
        assert runtime.infer(np.zeros((3, 3, SIZE, SIZE), np.float32)).shape == (3, 1, SIZE, SIZE)

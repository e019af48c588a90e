"""ONNX export of the tiny seeded model: parity with torch, metadata, manifest, dynamic shapes, fp16."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.tiny_exports import SIZE
from u2deploy import Runtime
from u2deploy._io import sha256_file
from u2deploy.samples import PARITY_PHOTOS

pytestmark = pytest.mark.onnxruntime


def torch_maps(model, batch: np.ndarray, outputs: str = "fused") -> np.ndarray:
    import torch

    from u2deploy.model import DeployHead

    with torch.inference_mode():
        result = DeployHead(model, outputs=outputs).eval()(torch.from_numpy(batch))
    return (result[0] if isinstance(result, tuple) else result).numpy()


def random_batch(n: int, height: int = SIZE, width: int = SIZE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 3, height, width)).astype(np.float32)


def test_fp32_onnx_matches_torch(tiny_export, tiny_model):
    result = tiny_export("onnx")
    assert result.path.name == "u2net_test_64_fp32.onnx"
    assert result.parity.passed and result.parity.summary()["max_abs"] <= 1e-4
    batch = random_batch(1)
    with Runtime(result.path) as runtime:
        assert runtime.backend == "onnxruntime"
        np.testing.assert_allclose(runtime.infer(batch), torch_maps(tiny_model, batch), atol=1e-4, rtol=0)


def test_graph_is_checked_folded_and_current(tiny_export):
    import onnx

    model = onnx.load(str(tiny_export("onnx").path))
    onnx.checker.check_model(model, full_check=True)
    ops = {node.op_type for node in model.graph.node}
    assert "BatchNormalization" not in ops  # folded into the convs
    assert ops <= {"Conv", "Relu", "MaxPool", "Concat", "Resize", "Add", "Sigmoid"}  # simplified: no shape math left
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert [o.name for o in model.graph.output] == ["mask"]


def test_metadata_round_trip(tiny_export, tiny_checkpoint):
    import onnx

    from u2deploy.spec import METADATA_KEY, ModelSpec

    result = tiny_export("onnx")
    props = {p.key: p.value for p in onnx.load(str(result.path)).metadata_props}
    assert {"arch", "input_size", "preprocessing", "outputs", "source_sha256", "u2deploy_version",
            "precision", METADATA_KEY} <= set(props)  # fmt: skip
    assert props["arch"] == "u2net_test" and props["input_size"] == "64x64"
    assert props["source_sha256"] == sha256_file(tiny_checkpoint)
    assert json.loads(props["preprocessing"])["mean"] == [0.485, 0.456, 0.406]
    spec = ModelSpec.from_json(props[METADATA_KEY])
    assert spec.extra["precision"] == "fp32"
    with Runtime(result.path) as runtime:
        assert runtime.spec == spec and runtime.spec.arch == "u2net_test"
        assert runtime.describe()["precision"] == "fp32"


def test_manifest_says_what_it_is_and_how_it_was_made(tiny_export, tiny_checkpoint):
    from u2deploy.runtimes.base import read_sidecar

    result = tiny_export("onnx")
    manifest = read_sidecar(result.path)
    assert manifest == result.manifest
    assert result.files[-1].name == "u2net_test_64_fp32.onnx.json"
    assert manifest["format"] == "u2deploy-artifact"
    assert manifest["artifact"] == {"file": result.path.name, "format": "onnx", "precision": "fp32", "opset": 17,
                                    "batch": 1, "dynamic_hw": False, "outputs": "fused"}  # fmt: skip
    assert manifest["files"] == {result.path.name: {"sha256": sha256_file(result.path),
                                                    "bytes": result.path.stat().st_size}}  # fmt: skip
    assert manifest["source"]["sha256"] == sha256_file(tiny_checkpoint)
    assert manifest["spec"]["arch"] == "u2net_test"
    assert manifest["io"]["inputs"] == [{"name": "input", "shape": [1, 3, SIZE, SIZE], "dtype": "float32"}]
    assert {"u2deploy", "torch", "onnx", "onnxruntime", "onnxslim", "python"} <= set(manifest["versions"])
    assert manifest["created"]["options"]["fmt"] == "onnx" and "convert" in manifest["created"]["seconds"]
    parity = manifest["parity"]
    assert parity["passed"] and [i["image"] for i in parity["images"]] == list(PARITY_PHOTOS)
    assert parity["tolerance"]["max_abs"] == 1e-3


def test_dynamic_batch_runs_at_batch_1_and_3(tiny_export, tiny_model):
    result = tiny_export("onnx", dynamic=("batch",))
    assert result.path.name == "u2net_test_64_fp32_dynamic.onnx"
    with Runtime(result.path) as runtime:
        assert runtime.describe()["input_shape"] == [None, 3, SIZE, SIZE] and runtime.batch_size is None
        for n in (1, 3):
            batch = random_batch(n, seed=n)
            out = runtime.infer(batch)
            assert out.shape == (n, 1, SIZE, SIZE)
            np.testing.assert_allclose(out, torch_maps(tiny_model, batch), atol=1e-4, rtol=0)


def test_fp16_graph_keeps_fp32_io_and_sigmoid(tiny_export, tiny_model):
    import onnx
    from onnx import TensorProto

    result = tiny_export("onnx", precision="fp16", dynamic=("batch", "hw"), outputs="all")
    assert result.path.name == "u2net_test_64_fp16_dynamic_batch_hw_all.onnx"
    model = onnx.load(str(result.path))
    types = {t.data_type for t in model.graph.initializer if len(t.dims) == 4}
    assert types == {TensorProto.FLOAT16}  # every conv weight (no large biases in the tiny model)
    assert {v.type.tensor_type.elem_type for v in [*model.graph.input, *model.graph.output]} == {TensorProto.FLOAT}
    producers = {out: node for node in model.graph.node for out in node.output}
    for node in model.graph.node:
        if node.op_type == "Sigmoid":  # fed by a Cast up to fp32
            cast = producers[node.input[0]]
            assert cast.op_type == "Cast" and cast.attribute[0].i == TensorProto.FLOAT
    assert result.parity.passed
    batch = random_batch(2, 48, 80)
    with Runtime(result.path) as runtime:
        assert runtime.describe()["precision"] == "fp16"
        outputs = runtime.infer_all(batch)
        assert list(outputs) == ["mask", *(f"side{i}" for i in range(1, 7))]
        assert all(o.dtype == np.float32 and o.shape == (2, 1, 48, 80) for o in outputs.values())
        np.testing.assert_allclose(outputs["mask"], torch_maps(tiny_model, batch, "all"), atol=1e-2, rtol=0)


def test_no_verify_records_that_parity_was_skipped(tiny_export):
    result = tiny_export("onnx", batch=2, verify=False)
    assert result.parity is None and result.path.name == "u2net_test_64_fp32_b2.onnx"
    assert result.manifest["parity"] == {"skipped": True, "reason": "--no-verify"}
    assert result.manifest["artifact"]["batch"] == 2

"""Triton model repositories: configs parse into Triton's own ModelConfig and agree with the artifact;
the ensemble's Python-backend pre/post functions give what `Runtime.predict` gives."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from u2deploy.errors import InputError, MissingDependencyError, UnsupportedOptionError
from u2deploy.export import TritonOptions

pytest.importorskip("tritonclient.grpc", reason="tritonclient is not installed (pip install 'u2deploy[triton]')")
pytestmark = pytest.mark.onnxruntime

_TYPES = {1: "TYPE_FP32", 10: "TYPE_FP16"}  # onnx.TensorProto FLOAT / FLOAT16 -> Triton


def parse_config(path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def repo_of(result):
    return result.path.parents[2]


@pytest.fixture(scope="module")
def onnx_repo(tiny_export):
    return tiny_export("triton", triton=TritonOptions(ensemble=True))


def test_every_config_parses_into_model_config(onnx_repo):
    repo = repo_of(onnx_repo)
    names = sorted(p.name for p in repo.iterdir())
    assert names == ["u2net_test_fp32", "u2net_test_fp32_ensemble", "u2net_test_fp32_post", "u2net_test_fp32_pre"]
    for folder in repo.iterdir():
        config = parse_config(folder / "config.pbtxt")
        assert config.name == folder.name
        assert (folder / "1").is_dir()  # Triton loads versions from numbered folders
    assert not [p for p in repo.iterdir() if p.name.startswith(".")]  # the staging folder is gone


def test_network_config_agrees_with_the_onnx_file(onnx_repo):
    import onnx
    from tritonclient.grpc import model_config_pb2 as pb

    config = parse_config(onnx_repo.path.parents[1] / "config.pbtxt")
    graph = onnx.load(str(onnx_repo.path)).graph
    assert config.platform == "onnxruntime_onnx" and config.default_model_filename == onnx_repo.path.name
    assert config.max_batch_size == 8 and list(config.dynamic_batching.preferred_batch_size) == [4, 8]
    assert config.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU
    for tensors, declared in ((graph.input, config.input), (graph.output, config.output)):
        assert [t.name for t in tensors] == [d.name for d in declared]
        for tensor, entry in zip(tensors, declared, strict=True):
            dims = tensor.type.tensor_type.shape.dim
            assert dims[0].dim_param  # the batch axis is dynamic, so Triton batches it
            assert list(entry.dims) == [d.dim_value for d in dims[1:]]
            assert pb.DataType.Name(entry.data_type) == _TYPES[tensor.type.tensor_type.elem_type]


def test_the_verified_artifact_and_its_manifest_are_inside(onnx_repo):
    from u2deploy._io import sha256_file

    manifest = json.loads((onnx_repo.path.parent / "model.onnx.json").read_text())
    assert manifest["parity"]["passed"] is True
    assert manifest["files"]["model.onnx"]["sha256"] == sha256_file(onnx_repo.path)
    assert manifest["triton"]["model"] == "u2net_test_fp32"


def test_ensemble_wires_pre_network_post(onnx_repo):
    repo = repo_of(onnx_repo)
    ensemble = parse_config(repo / "u2net_test_fp32_ensemble" / "config.pbtxt")
    steps = ensemble.ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["u2net_test_fp32_pre", "u2net_test_fp32", "u2net_test_fp32_post"]
    network = parse_config(repo / "u2net_test_fp32" / "config.pbtxt")
    assert set(steps[1].input_map) == {t.name for t in network.input}
    assert set(steps[1].output_map) == {t.name for t in network.output}
    pre = parse_config(repo / "u2net_test_fp32_pre" / "config.pbtxt")
    assert pre.backend == "python" and {t.name for t in pre.output} >= set(steps[1].input_map)
    assert "triton_python" in (repo / "u2net_test_fp32_pre" / "1" / "model.py").read_text()


def _model_config_json(path) -> str:
    """The config as Triton hands it to a Python model's `initialize` (JSON of the ModelConfig)."""
    from google.protobuf import json_format

    return json.dumps(json_format.MessageToDict(parse_config(path), preserving_proto_field_name=True))


def test_python_pre_post_match_runtime_predict(onnx_repo, photos):
    from PIL import Image

    from u2deploy import Runtime
    from u2deploy.processing import to_mask_u8
    from u2deploy.scale.triton_python import PostprocessModel, PreprocessModel

    repo = repo_of(onnx_repo)
    pre, post = PreprocessModel(), PostprocessModel()
    pre.initialize({"model_config": _model_config_json(repo / "u2net_test_fp32_pre" / "config.pbtxt")})
    post.initialize({"model_config": _model_config_json(repo / "u2net_test_fp32_post" / "config.pbtxt")})
    images = [photos["chelsea"], photos["coffee"]]
    encoded = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    with Runtime(onnx_repo.path) as runtime:
        expected = [to_mask_u8(m) for m in runtime.predict(images)]
        batch, sizes = pre.run(np.array(encoded, dtype=np.object_).reshape(-1, 1))
        (pngs,) = post.run(runtime.infer(batch), sizes)
    assert pngs.shape == (2, 1)
    for png, mask in zip(pngs[:, 0], expected, strict=True):
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), mask)


def test_bad_image_bytes_are_an_input_error(onnx_repo):
    from u2deploy.scale.triton_python import preprocess_images
    from u2deploy.spec import spec_for_task

    with pytest.raises(InputError, match="not a readable image"):
        preprocess_images([b"not an image"], spec_for_task("sod", arch="u2net_test", input_size=64))


@pytest.mark.openvino
def test_openvino_repository(tiny_export):
    import openvino as ov

    result = tiny_export("triton", triton=TritonOptions(backend="openvino", instances=2))
    config = parse_config(result.path.parents[1] / "config.pbtxt")
    assert config.backend == "openvino" and result.path.name == "model.xml"
    assert config.instance_group[0].count == 2 and config.instance_group[0].kind == 2  # KIND_CPU
    model = ov.Core().read_model(str(result.path))
    for tensors, declared in ((model.inputs, config.input), (model.outputs, config.output)):
        assert [t.get_any_name() for t in tensors] == [d.name for d in declared]
        for tensor, entry in zip(tensors, declared, strict=True):
            shape = list(tensor.get_partial_shape())
            assert shape[0].is_dynamic and [d.get_length() for d in shape[1:]] == list(entry.dims)


def test_tensorrt_accelerator_and_static_batch_configs():
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from u2deploy.export.options import ExportOptions
    from u2deploy.export.triton import config_text, network_config

    io_static = {"inputs": [{"name": "input", "shape": [2, 3, 64, 64], "dtype": "float32"}],
                 "outputs": [{"name": "mask", "shape": [2, 1, 64, 64], "dtype": "float16"}]}  # fmt: skip
    config = network_config("net", io_static, ExportOptions(precision="fp16"), TritonOptions(accelerator=True))
    parsed = text_format.Parse(config_text(config), model_config_pb2.ModelConfig())
    assert parsed.max_batch_size == 0 and list(parsed.input[0].dims) == [2, 3, 64, 64]
    assert not parsed.HasField("dynamic_batching")  # a fixed batch cannot be batched by Triton
    assert parsed.output[0].data_type == model_config_pb2.TYPE_FP16
    accelerator = parsed.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert accelerator.name == "tensorrt" and accelerator.parameters["precision_mode"] == "FP16"


@pytest.mark.parametrize(("triton", "fields", "error", "match"), [
    (TritonOptions(backend="openvino", kind="gpu"), {}, UnsupportedOptionError, "CPU instances only"),
    (TritonOptions(backend="openvino", accelerator=True), {}, UnsupportedOptionError, "--trt-accelerator"),
    (TritonOptions(backend="tensort"), {}, InputError, "did you mean 'tensorrt'"),
    (TritonOptions(max_batch=0), {}, InputError, "at least 1"),
    (TritonOptions(ensemble=True), {"batch": 2}, UnsupportedOptionError, "dynamic batch"),
])  # fmt: skip
def test_bad_triton_options_fail_before_loading(tmp_path, triton, fields, error, match):
    from u2deploy.export import export

    with pytest.raises(error, match=match):
        export("no_such_model.pth", tmp_path, fmt="triton", triton=triton, progress=False, **fields)
    assert not list(tmp_path.iterdir())


def test_triton_flags_need_fmt_triton_and_a_folder(tmp_path, tiny_checkpoint):
    from u2deploy.cli import main
    from u2deploy.export import export

    assert main(["export", str(tiny_checkpoint), "--fmt", "onnx", "--ensemble", "-o", str(tmp_path)]) == 1
    with pytest.raises(InputError, match="model repository folder"):
        export(tiny_checkpoint, tmp_path / "model.onnx", fmt="triton", progress=False)


def test_tensorrt_backend_needs_tensorrt(tmp_path, tiny_checkpoint):
    from u2deploy._deps import available
    from u2deploy.export import export

    if available("tensorrt"):
        pytest.skip("TensorRT is installed here")
    from u2deploy.errors import BackendError

    # without a GPU the first word is that (as `doctor` says); with one, the missing package
    with pytest.raises((MissingDependencyError, BackendError), match=r"u2deploy\[tensorrt\]"):
        export(tiny_checkpoint, tmp_path, fmt="triton", triton=TritonOptions(backend="tensorrt"), progress=False)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

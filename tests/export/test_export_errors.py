"""Everything `u2deploy export` refuses, each as one clear error and with nothing written."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from tests.tiny_exports import SIZE
from u2deploy.cli import main
from u2deploy.compare import Tolerance
from u2deploy.errors import (
    InputError,
    MissingDependencyError,
    ModelLoadError,
    ParityError,
    UnsupportedOptionError,
)
from u2deploy.export import ExportOptions, TensorRTOptions, export
from u2deploy.export.options import CalibrationOptions, default_output_path, parse_dynamic
from u2deploy.spec import spec_for_task


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main(["export", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.onnxruntime
def test_a_failing_parity_gate_names_the_worst_image_and_writes_nothing(tmp_path, tiny_checkpoint):
    strict = Tolerance(max_abs=1e-9)  # fp16 can never be this close
    with pytest.raises(ParityError, match=r"parity gate failed for fp16: max abs error \S+ on '\w+' \(mask\) is above"
                                          r" the limit 1e-09 \(nothing was written"):
        export(tiny_checkpoint, tmp_path / "m.onnx", precision="fp16", tolerance=strict, input_size=(SIZE, SIZE),
               progress=False)  # fmt: skip
    assert list(tmp_path.iterdir()) == []  # no artifact, no manifest, no staging folder


@pytest.mark.onnxruntime
def test_cli_export_and_its_one_line_errors(capsys, tmp_path, tiny_checkpoint):
    out = tmp_path / "cli.onnx"
    code, stdout, _ = run_cli(capsys, tiny_checkpoint, "--fmt", "onnx", "--size", SIZE, "-o", out, "--quiet")
    assert code == 0 and out.is_file() and (tmp_path / "cli.onnx.json").is_file()
    assert f"wrote {out} (" in stdout and "manifest cli.onnx.json" in stdout
    assert "parity fp32 vs PyTorch FP32 on 5 photos:\n  sigmoid map: max abs" in stdout
    assert "MAE vs the binarised torch map" in stdout and "gate: passed" in stdout

    code, _, stderr = run_cli(capsys, tiny_checkpoint, "--fmt", "onnx", "--fp16", "--int8")
    assert code == 1 and stderr.strip().splitlines() == ["u2deploy export: error: --fp16 and --int8 exclude each "
                                                         "other; pick one"]  # fmt: skip


@pytest.mark.parametrize("args, message", [
    (["--fmt", "onnxx"], "unknown export format 'onnxx' (from --fmt) (did you mean 'onnx'?); available: onnx, openvino, trt"),
    (["--fmt", "trt", "--dla-core", "0"], "DLA runs FP16 or INT8 only: add --fp16 or --int8 to --dla-core"),
    (["--fmt", "onnx", "--int8", "--calib", "photos/"], "--calib photos/: no such folder; pass a folder of images or a glob"),
    (["--fmt", "onnx", "--workspace", "4"], "--workspace, --opt-level, --timing-cache, --dla-core and --accept-unseen-precision apply to --fmt trt only"),
    (["--fmt", "onnx", "--calib", "photos/"], "apply to --int8 only"),
    (["--fmt", "onnx", "--batch", "2", "--dynamic"], "--batch 2 fixes the batch, --dynamic makes it dynamic"),
    (["--fmt", "openvino", "--dynamic", "1:4:8"], "--dynamic 1:4:8 is a TensorRT profile; for --fmt openvino use --dynamic batch"),
    (["--fmt", "onnx", "--dynamic", "depth"], "--dynamic depth: --fmt onnx takes batch, hw or all"),
    (["--fmt", "onnx", "--opset", "11"], "--opset 11: use 17..20"),
    (["--fmt", "onnx", "--batch", "0"], "--batch 0: must be at least 1"),
    (["--fmt", "openvino", "-o", "model.onnx"], "-o model.onnx: --fmt openvino writes .xml files; use e.g. model.xml"),
])  # fmt: skip
def test_option_errors_are_one_line_and_come_before_any_work(capsys, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    code, _, stderr = run_cli(capsys, "no_such_model.pth", *args)  # never loaded: options fail first
    assert code == 1, stderr
    assert len(stderr.strip().splitlines()) == 1 and message in stderr
    assert list(tmp_path.iterdir()) == []


def test_options_validate_the_tensorrt_and_calibration_groups():
    with pytest.raises(InputError, match="--opt-level 7: use 0..5"):
        ExportOptions(fmt="trt", tensorrt=TensorRTOptions(opt_level=7)).validate()
    with pytest.raises(UnsupportedOptionError, match="DLA needs static shapes"):
        ExportOptions(fmt="trt", dynamic=("batch",), tensorrt=TensorRTOptions(dla_core=0)).validate()
    with pytest.raises(InputError, match=r"need 1 <= MIN <= OPT <= MAX"):
        ExportOptions(fmt="trt", dynamic=("batch",), profile=(4, 2, 8)).validate()
    with pytest.raises(UnsupportedOptionError, match="--calib-method magic"):
        ExportOptions(precision="int8", calibration=CalibrationOptions(method="magic")).validate()
    assert ExportOptions(fmt="trt", precision="fp16", dynamic=("batch",), profile=(1, 4, 8),
                         tensorrt=TensorRTOptions(workspace_gb=2, opt_level=3)).validate()  # fmt: skip


def test_parse_dynamic_and_default_names():
    assert parse_dynamic(None) == ((), None)
    assert parse_dynamic("batch") == (("batch",), None)
    assert parse_dynamic("all") == (("batch", "hw"), None)
    assert parse_dynamic("1:4:8") == (("batch",), (1, 4, 8))
    with pytest.raises(InputError, match="MIN:OPT:MAX"):
        parse_dynamic("1:4")
    spec = spec_for_task("sod", arch="u2net")
    names = {
        ExportOptions(precision="fp16"): "u2net_320_fp16.onnx",
        ExportOptions(fmt="openvino"): "u2net_320_fp32.xml",
        ExportOptions(fmt="openvino", input_size=(320, 288), dynamic=("batch",)): "u2net_320x288_fp32_dynamic.xml",
        ExportOptions(batch=4, outputs="all"): "u2net_320_fp32_b4_all.onnx",
        ExportOptions(dynamic=("hw",)): "u2net_320_fp32_dynamic_hw.onnx",
        ExportOptions(fmt="trt", precision="int8"): "u2net_320_int8.engine",
    }
    for options, name in names.items():
        assert default_output_path(spec, options).name == name


def test_not_a_model_and_another_network_are_refused(tmp_path):
    import torch

    notes = tmp_path / "notes.pth"
    notes.write_text("not a model")
    with pytest.raises(ModelLoadError, match="notes.pth: not a PyTorch checkpoint"):
        export(notes, tmp_path / "x.onnx", progress=False)
    other = tmp_path / "resnet_ish.pth"
    torch.save(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU()).state_dict(), other)
    with pytest.raises(ModelLoadError, match="do not look like a U2-Net"):
        export(other, tmp_path / "x.onnx", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.pth", "resnet_ish.pth"]


def test_another_networks_onnx_is_refused(tmp_path, small_convnet_onnx):
    with pytest.raises(ModelLoadError, match="do not match U2-Net"):
        export(small_convnet_onnx, tmp_path / "x.xml", fmt="openvino", progress=False)


def test_a_missing_toolchain_is_named_before_the_model_is_loaded(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed
    with pytest.raises(MissingDependencyError, match=r"'openvino' is needed for --fmt openvino .*u2deploy\[openvino\]"):
        export("no_such_model.pth", fmt="openvino", progress=False)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingDependencyError, match=r"'onnxruntime' is needed for the parity check of --fmt onnx "
                                                     r"\(or pass --no-verify\)"):
        export("no_such_model.pth", fmt="onnx", progress=False)


@pytest.fixture()
def small_convnet_onnx(tmp_path) -> str:
    import torch

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 1)).eval()
    path = tmp_path / "convnet.onnx"
    torch.onnx.export(net, (torch.zeros(1, 3, 32, 32),), str(path), input_names=["x"], output_names=["y"],
                      opset_version=17, dynamo=False)  # fmt: skip
    return str(path)


def test_fp16_pass_keeps_a_large_bias_conv_in_fp32():
    """Unit test of the pass on a hand-built graph: conv A (bias 100) stays fp32, conv B goes fp16."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "wa"),
             numpy_helper.from_array(np.full(4, 100.0, np.float32), "ba"),
             numpy_helper.from_array(rng.normal(size=(1, 4, 1, 1)).astype(np.float32), "wb"),
             numpy_helper.from_array(np.zeros(1, np.float32), "bb")]  # fmt: skip
    nodes = [helper.make_node("Conv", ["x", "wa", "ba"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("Conv", ["r", "wb", "bb"], ["b"]),
             helper.make_node("Sigmoid", ["b"], ["y"])]  # fmt: skip
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 8, 8])], inits)  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    from u2deploy.export.fp16 import convert_to_fp16

    converted = convert_to_fp16(model)
    onnx.checker.check_model(converted, full_check=True)
    dtypes = {t.name: t.data_type for t in converted.graph.initializer}
    assert dtypes == {"wa": TensorProto.FLOAT, "ba": TensorProto.FLOAT, "wb": TensorProto.FLOAT16,
                      "bb": TensorProto.FLOAT16}  # fmt: skip
    assert [n.op_type for n in converted.graph.node] == ["Conv", "Cast", "Relu", "Conv", "Cast", "Sigmoid"]

    ort = pytest.importorskip("onnxruntime")
    x = rng.normal(size=(1, 3, 8, 8)).astype(np.float32)
    run = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]  # noqa: E731
    np.testing.assert_allclose(run(converted), run(model), atol=2e-3)


def test_export_modules_import_without_heavy_packages():
    from tests.test_import_hygiene import assert_import_without_heavy_packages

    modules = ["u2deploy.compare", "u2deploy.cli.export", "u2deploy.export", *(f"u2deploy.export.{m}" for m in (
        "options", "manifest", "fp16", "onnx_export", "ov_convert", "verify", "pipeline"))]  # fmt: skip
    assert_import_without_heavy_packages(modules)


def test_a_failed_export_leaves_no_new_out_folder(tmp_path, tiny_checkpoint, monkeypatch):
    from u2deploy.errors import ExportError
    from u2deploy.export import pipeline

    def broken(*args, **kwargs):
        raise ExportError("the converter broke")

    monkeypatch.setattr(pipeline, "exporter_for", lambda fmt: broken)
    with pytest.raises(ExportError, match="the converter broke"):
        export(tiny_checkpoint, tmp_path / "new" / "deeper" / "m.onnx", input_size=(SIZE, SIZE), progress=False)
    assert list(tmp_path.iterdir()) == []  # neither `new/` nor `new/deeper/` stays behind

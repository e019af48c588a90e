"""bf16 as a gated precision of the OpenVINO IR: settings recorded, sensitive convs kept f32, CPU checked."""

from __future__ import annotations

import numpy as np
import pytest

from u2deploy.errors import UnsupportedOptionError

pytestmark = pytest.mark.openvino
pytest.importorskip("openvino")


def _bf16_reason() -> str | None:
    from u2deploy.runtimes.ov import cpu_bf16_reason

    return cpu_bf16_reason()


def test_large_bias_conv_is_marked_precise_and_the_mark_survives_save(tmp_path):
    import openvino as ov
    from openvino import opset13 as ops

    from u2deploy.export.ov_convert import keep_sensitive_f32

    x = ops.parameter([1, 3, 8, 8], np.float32, name="x")

    def conv(source, bias: float, name: str):
        weights = ops.constant(np.full((3, 3, 3, 3), 0.1, np.float32))
        out = ops.add(ops.convolution(source, weights, [1, 1], [1, 1], [1, 1], [1, 1]),
                      ops.constant(np.full((1, 3, 1, 1), bias, np.float32)))
        out.set_friendly_name(name)
        return out

    model = ov.Model([ops.sigmoid(conv(conv(x, 0.5, "small"), 150.0, "huge"))], [x])
    assert keep_sensitive_f32(model) == ["huge"]
    ov.save_model(model, str(tmp_path / "m.xml"), compress_to_fp16=False)
    reread = ov.Core().read_model(str(tmp_path / "m.xml"))
    marked = {op.get_friendly_name() for op in reread.get_ordered_ops()
              if any(key.startswith("DisablePrecisionConversion") for key in op.get_rt_info())}  # fmt: skip
    assert "huge" in marked and "small" not in marked and len(marked) == 2  # the Add and its Convolution


def test_bf16_export_without_bf16_cpu_says_so_in_one_line(tiny_checkpoint, tmp_path):
    if _bf16_reason() is None:
        pytest.skip("this CPU has bf16; the refusal is for CPUs without it")
    from u2deploy.export import export

    with pytest.raises(UnsupportedOptionError, match=r"^--bf16: this CPU has no bf16 instructions") as caught:
        export(tiny_checkpoint, f"{tmp_path}/", fmt="openvino", precision="bf16", progress=False)
    assert len(str(caught.value)) <= 160 and "--no-verify" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_bf16_ir_records_bf16_settings(tiny_export):
    import openvino as ov

    result = tiny_export("openvino", precision="bf16", verify=False)
    expected = {"backend": "openvino", "options": {"inference_precision": "bf16", "execution_mode": "performance"}}
    assert result.path.name == "u2net_test_64_bf16.xml" and result.manifest["runtime"] == expected
    assert result.manifest["openvino"] == {"kept_f32": []}  # the tiny model has no large bias
    model = ov.Core().read_model(str(result.path))
    assert all(t.get_element_type().get_type_name() == "f32" for t in model.inputs)


def test_bf16_ir_runs_what_the_engine_reports(tiny_export):
    from u2deploy import Runtime

    with Runtime(tiny_export("openvino", precision="bf16", verify=False).path) as runtime:
        info = runtime.describe()
        engine = runtime._backend.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    assert info["settings"]["source"] == "artifact" and info["inference_precision"] == engine
    assert info["precision"] == ("fp32" if _bf16_reason() else "bf16") and info["artifact_precision"] == "bf16"


@pytest.mark.parametrize("fmt", ["onnx", "trt"])
def test_bf16_is_openvino_only(fmt):
    from u2deploy.export import ExportOptions

    with pytest.raises(UnsupportedOptionError, match=f"--fmt {fmt} cannot be exported at bf16"):
        ExportOptions(fmt=fmt, precision="bf16").validate()


def test_cli_precision_flags_exclude_each_other(capsys):
    from u2deploy.cli import main

    assert main(["export", "u2net_test", "--fmt", "openvino", "--bf16", "--fp16"]) != 0
    assert "--fp16 and --bf16 exclude each other" in capsys.readouterr().err


@pytest.mark.weights
@pytest.mark.slow
def test_u2net_bf16_export_passes_its_gate(u2net_checkpoint, tmp_path):
    if reason := _bf16_reason():
        pytest.skip(reason)
    from u2deploy.export import export

    result = export(u2net_checkpoint, f"{tmp_path}/", fmt="openvino", precision="bf16", progress=False)
    assert result.parity.passed, result.parity.describe()
    assert result.parity.precision == "bf16" and result.parity.tolerance.mean_iou == 0.97  # its own row, not fp16's
    assert result.parity.summary()["map_mae"] <= 0.01
    assert len(result.manifest["openvino"]["kept_f32"]) == 4

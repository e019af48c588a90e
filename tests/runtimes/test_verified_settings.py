"""What the gate verified is what runs: recorded settings, applied by default, read back by describe()."""

from __future__ import annotations

import json

import pytest

from u2deploy import Runtime
from u2deploy.runtimes.settings import SAFE_DEFAULTS, resolve_settings

pytest.importorskip("openvino")


def _bf16_cpu() -> bool:
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def test_export_records_its_gate_settings_in_manifest_and_model(tiny_export):
    import openvino as ov

    result = tiny_export("openvino")
    expected = {"backend": "openvino", "options": {"inference_precision": "f32", "execution_mode": "accuracy"}}
    assert result.manifest["runtime"] == expected
    model = ov.Core().read_model(str(result.path))
    assert json.loads(model.get_rt_info(["runtime_settings"]).astype(str)) == expected
    assert json.loads(model.get_rt_info(["u2deploy"]).astype(str))["extra"]["runtime"] == expected


def test_onnx_records_graph_optimization(tiny_export):
    import onnx

    result = tiny_export("onnx")
    props = {p.key: p.value for p in onnx.load(str(result.path)).metadata_props}
    assert json.loads(props["runtime_settings"]) == {"backend": "onnxruntime", "options": {"graph_optimization": "all"}}


def test_openvino_runtime_applies_the_record_and_describe_reads_the_engine(tiny_export):
    with Runtime(tiny_export("openvino").path) as runtime:
        info = runtime.describe()
        compiled = runtime._backend.compiled
        engine = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        assert info["inference_precision"] == engine == "f32"
        assert info["precision"] == "fp32"
        assert info["execution_mode"] == compiled.get_property("EXECUTION_MODE_HINT").name.lower() == "accuracy"
        assert info["settings"]["source"] == "artifact"


def test_user_override_is_applied_reported_and_said_once(tiny_export, capsys):
    with Runtime(tiny_export("openvino").path, inference_precision="bf16", execution_mode="performance") as runtime:
        info = runtime.describe()
        engine = runtime._backend.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    assert info["settings"]["source"] == "user"
    assert info["settings"]["overridden"] == {"inference_precision": "bf16", "execution_mode": "performance"}
    assert info["inference_precision"] == engine  # bf16 where the CPU has it; OpenVINO keeps f32 elsewhere
    lines = [line for line in capsys.readouterr().err.splitlines() if "verified at f32" in line]
    assert len(lines) == 1 and len(lines[0]) <= 160


def test_file_without_record_gets_the_safe_default(tiny_export, tmp_path, capsys):
    """A third-party or older IR (no record): f32 + accuracy, and describe() says where it came from."""
    settings = resolve_settings("openvino", {}, {}, "old.xml")
    assert settings.values == SAFE_DEFAULTS["openvino"] and settings.source == "default"
    with Runtime(tiny_export("onnx").path, backend="openvino") as runtime:  # an ONNX verified on ORT
        info = runtime.describe()
    assert info["settings"]["source"] == "default"
    assert info["inference_precision"] == "f32" and info["execution_mode"] == "accuracy"
    assert capsys.readouterr().err == ""


def test_onnxruntime_describe_reports_active_and_requested_providers(tiny_export):
    with Runtime(tiny_export("onnx").path, device="cpu") as runtime:
        info = runtime.describe()
        assert info["providers"] == runtime._backend._session.get_providers()
    assert info["requested_providers"] == ["CPUExecutionProvider"] and info["fallback"] is False
    assert info["graph_optimization"] == "all" and info["settings"]["source"] == "artifact"


@pytest.mark.weights
@pytest.mark.slow
def test_fp32_ir_with_no_options_matches_torch_to_the_fp32_gate(u2net_checkpoint, u2net_fp32_ir):
    """On a CPU with bf16 OpenVINO computes bf16 by default; the verified f32 must run instead."""
    if not _bf16_cpu():
        pytest.skip("this CPU has no bf16 (OpenVINO CPU OPTIMIZATION_CAPABILITIES lacks BF16): OpenVINO's default is "
                    "f32 here anyway")
    from u2deploy.compare import parity_report
    from u2deploy.export.verify import reference_inputs, torch_reference
    from u2deploy.model import load_checkpoint

    result = u2net_fp32_ir
    loaded = load_checkpoint(u2net_checkpoint)
    names, batch = reference_inputs(loaded.spec.replace(input_size=(320, 320)))
    reference = torch_reference(loaded.model, batch, "fused")
    with Runtime(result.path) as runtime:  # no options: what a user gets
        assert runtime.describe()["inference_precision"] == "f32"
        candidate = runtime.infer_all(batch)
    report = parity_report(reference, candidate, names, "fp32")
    assert report.passed, report.describe()


def test_predict_verbose_prints_what_runs(tiny_export, photos, tmp_path, capsys):
    from PIL import Image

    from u2deploy.cli import main

    image = tmp_path / "coffee.png"
    Image.fromarray(photos["coffee"]).save(image)
    assert main(["predict", str(tiny_export("openvino").path), str(image), "-o", str(tmp_path / "out"), "-v"]) == 0
    err = capsys.readouterr().err
    assert "precision: fp32" in err and "inference precision: f32" in err and "execution mode: accuracy" in err
    settings = next(line for line in err.splitlines() if line.startswith("settings:"))
    assert "inference_precision=f32" in settings and "execution_mode=accuracy" in settings and "(from artifact)" in settings
    assert all(len(line) <= 160 for line in err.splitlines() if not line.startswith("versions"))

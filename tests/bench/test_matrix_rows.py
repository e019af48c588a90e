"""Which rows run, why the others are skipped, the row schema and the artifact cache."""

from __future__ import annotations

import json

import pytest

from u2deploy.bench import matrix
from u2deploy.bench.matrix import (
    BACKEND_OF,
    artifact_path,
    classify,
    ensure_artifact,
    export_options,
    parse_list,
    plan_rows,
    precheck,
)
from u2deploy.bench.rows import COLUMNS, Row, row_name
from u2deploy.errors import BackendError, ExportError, InputError, MissingDependencyError, UnsupportedOptionError

SIZE = (64, 64)


def test_row_names():
    assert row_name("onnx", "fp32", 1) == "onnx fp32"
    assert row_name("openvino", "int8", 4) == "openvino int8 b4"


def test_row_schema_flat_has_every_column_and_is_json_serialisable():
    row = Row("onnx", "onnxruntime", "fp32", latency={"n": 3, "p50": 10.0, "p90": 11.0, "p99": 12.0},
              stages={"preprocess": 1.0, "infer": 8.0, "postprocess": 1.0},
              parity={"passed": True, "summary": {"max_abs": 1e-5, "min_iou": 1.0, "mean_iou": 1.0, "mae": 0.01,
                                                  "min_fbeta": 0.9, "map_mae": 0.0}})
    flat = row.flat()
    assert list(flat) == [key for key, _ in COLUMNS]
    assert (flat["name"], flat["p50_ms"], flat["runs"], flat["infer_ms"], flat["parity_passed"]) == \
        ("onnx fp32", 10.0, 3, 8.0, True)
    json.dumps(row.to_dict())
    assert Row("trt", "tensorrt", "fp16").flat()["p50_ms"] is None


def test_mark_accepts_only_known_statuses():
    row = Row("trt", "tensorrt", "fp32").mark("skipped", "no GPU")
    assert (row.status, row.reason, row.ok) == ("skipped", "no GPU", False)
    with pytest.raises(ValueError):
        row.mark("broken", "?")


def test_errors_are_sorted_into_skipped_and_failed():
    assert classify(MissingDependencyError("x")) == "skipped"
    assert classify(UnsupportedOptionError("x")) == "skipped"
    assert classify(BackendError("x")) == "skipped"
    assert classify(ExportError("x")) == "failed"
    assert classify(RuntimeError("x")) == "failed"


def test_parse_list_rejects_unknown_names_with_a_suggestion():
    assert parse_list("onnx, openvino", matrix.FORMATS, "--formats") == ("onnx", "openvino")
    with pytest.raises(InputError, match=r"unknown format 'onnxx' \(from --formats\) \(did you mean 'onnx'\?\)"):
        parse_list("onnxx", matrix.FORMATS, "--formats")


def test_skip_reasons_without_a_gpu():
    assert "no CUDA device" in precheck("torch", "fp16", 1, SIZE, cuda=False)
    assert "no PyTorch INT8 path" in precheck("torch", "int8", 1, SIZE, cuda=False)
    assert "NVIDIA GPU" in precheck("trt", "fp32", 1, SIZE, cuda=False)
    assert "no bf16 path for onnx" in precheck("onnx", "bf16", 1, SIZE, cuda=False)
    assert precheck("torch", "fp32", 1, SIZE, cuda=False) is None


def test_a_missing_package_is_the_reason(monkeypatch):
    def missing(module, feature=""):
        raise MissingDependencyError(f"'{module}' is needed for {feature} but is not installed")

    monkeypatch.setattr(matrix, "require", missing)
    assert precheck("onnx", "fp32", 1, SIZE, cuda=False).startswith("'torch' is needed for --fmt onnx")


def test_plan_marks_rows_and_gives_bf16_to_openvino_only(monkeypatch):
    monkeypatch.setattr(matrix, "_cuda_available", lambda: False)
    rows = plan_rows(("torch", "onnx", "openvino", "trt"), ("fp32", "bf16"), (1, 4), SIZE)
    names = [row.name for row in rows]
    assert "onnx bf16" not in names and "torch bf16" not in names
    assert "openvino bf16" in names and "openvino bf16 b4" in names
    by_name = {row.name: row for row in rows}
    assert by_name["trt fp32 b4"].status == "skipped"
    assert by_name["torch fp32"].ok and by_name["torch fp32"].backend == BACKEND_OF["torch"]


def test_bf16_runs_the_bf16_artifact():
    assert export_options("openvino", "bf16", 1, SIZE).precision == "bf16"
    assert export_options("onnx", "fp16", 2, SIZE).batch == 2


def test_cache_path_depends_on_every_option_that_changes_the_file(tmp_path):
    from u2deploy.spec import spec_for_task

    spec = spec_for_task("sod", arch="u2net_test")
    fp32 = artifact_path(tmp_path, spec, export_options("onnx", "fp32", 1, SIZE), "ab" * 32)
    assert fp32 == artifact_path(tmp_path, spec, export_options("onnx", "fp32", 1, SIZE), "ab" * 32)
    assert fp32.name == "u2net_test_64_fp32.onnx" and fp32.parent.parent.name == ("ab" * 32)[:16]
    others = {artifact_path(tmp_path, spec, export_options("onnx", "fp16", 1, SIZE), "ab" * 32).parent,
              artifact_path(tmp_path, spec, export_options("onnx", "fp32", 2, SIZE), "ab" * 32).parent,
              artifact_path(tmp_path, spec, export_options("onnx", "fp32", 1, (96, 96)), "ab" * 32).parent,
              artifact_path(tmp_path, spec, export_options("onnx", "fp32", 1, SIZE), "cd" * 32).parent}
    assert fp32.parent not in others and len(others) == 4


def test_cached_artifact_is_reused_without_exporting(tmp_path, monkeypatch):
    from u2deploy import export as export_package
    from u2deploy.spec import spec_for_task

    spec = spec_for_task("sod", arch="u2net_test")
    options = export_options("onnx", "fp32", 1, SIZE)
    target = artifact_path(tmp_path, spec, options, "ef" * 32)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"model")
    target.with_name(target.name + ".json").write_text("{}")
    monkeypatch.setattr(export_package, "export", lambda *a, **k: pytest.fail("exported again"))
    assert ensure_artifact(tmp_path / "ckpt.pth", spec, options, "ef" * 32, tmp_path) == (target, True, 0.0)


def test_calibration_files_change_the_cache_key(tmp_path):
    from u2deploy.export import CalibrationOptions
    from u2deploy.spec import spec_for_task

    spec = spec_for_task("sod", arch="u2net_test")
    (tmp_path / "calib").mkdir()
    (tmp_path / "calib" / "a.png").write_bytes(b"1")
    calibration = CalibrationOptions(source=str(tmp_path / "calib"), count=8)
    before = artifact_path(tmp_path, spec, export_options("onnx", "int8", 1, SIZE, calibration), "ab" * 32)
    (tmp_path / "calib" / "b.png").write_bytes(b"2")
    after = artifact_path(tmp_path, spec, export_options("onnx", "int8", 1, SIZE, calibration), "ab" * 32)
    assert before != after


def test_default_calibration_uses_every_bundled_photo_it_wrote(tmp_path, monkeypatch):
    pytest.importorskip("skimage")
    monkeypatch.setenv("U2DEPLOY_HOME", str(tmp_path))
    calibration = matrix.default_calibration()
    if calibration is None:
        pytest.skip("the calibration package cannot write sample images in this release")
    files = [p for p in (tmp_path / "bench" / "calibration").iterdir() if p.suffix == ".png"]
    assert calibration.source == str(tmp_path / "bench" / "calibration") and calibration.count == len(files) >= 8
    assert export_options("openvino", "int8", 1, SIZE).calibration == calibration

"""benchmarks/gpu_check.py end to end against the fake TensorRT: its control flow and its report only.

Users run this script on real GPUs; a crash there wastes their time. Here it runs on the tiny model
with the reference on the CPU and the fake engine (which executes the ONNX with ONNX Runtime).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_script_builds_checks_times_and_reports(fake_trt, monkeypatch, gpu_check, tiny_checkpoint, tmp_path,
                                                    capsys):
    fake_trt("10.3.0")
    doctor = {"libraries": {"tensorrt": {"version": "10.3.0"}}, "gpu": {"devices": [{"name": "NVIDIA Fake RTX 3000"}]}}
    monkeypatch.setattr("u2deploy.doctor.collect", lambda: doctor)
    code = gpu_check.main(["--model", str(tiny_checkpoint), "--size", "64", "--precisions", "fp32,fp16,int8",
                           "--iterations", "3", "--warmup", "1", "--reference-device", "cpu", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    report = json.loads(next(tmp_path.glob("gpu_check_*.json")).read_text())
    statuses = {e["precision"]: e["status"] for e in report["engines"]}
    assert statuses["fp32"] == statuses["fp16"] == "passed"
    assert statuses["int8"] == "skipped"  # no --calib given
    fp16 = next(e for e in report["engines"] if e["precision"] == "fp16")
    assert fp16["layers"]["verdict"] == "ok" and fp16["timing"]["p50_ms"] > 0 and fp16["timing_cuda_graph"]["fps"] > 0
    assert report["dynamic"] == {"status": "passed", "checks": {"batch_1": True, "batch_3": True, "batch_4": True,
                                                                "batch_5": True}}
    assert report["manifest"]["status"] == "passed" and "TensorRT 0.0.1" in report["manifest"]["message"]
    assert "| fp16 | passed |" in next(tmp_path.glob("gpu_check_*.md")).read_text() and "PASSED" in out

"""Report writing: JSON, CSV, Markdown and PNG exist and parse, for the main run and for --paper."""

from __future__ import annotations

import csv
import json
import re

import pytest

from u2deploy._deps import available
from u2deploy.bench.paper import PaperResult
from u2deploy.bench.report import format_value, markdown_table, speedups, write_bench, write_paper
from u2deploy.bench.rows import COLUMNS, Row
from u2deploy.bench.run import BenchOptions, BenchResult

MACHINE = {"cpu": "Test CPU", "cores": 2, "cpu_flags": ["avx2", "fma"], "load_average": [0.5, 0.4, 0.3],
           "load_average_after": [0.6, 0.5, 0.3], "packages": {"u2deploy": "0.1.0"}}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _stats(p50: float) -> dict:
    return {"n": 5, "mean": p50, "std": 1.0, "min": p50 - 1, "p50": p50, "p90": p50 + 1, "p99": p50 + 2,
            "max": p50 + 2}


def _parity(mean_iou: float, min_iou: float) -> dict:
    return {"passed": True, "summary": {"max_abs": 1e-5, "mean_abs": 1e-7, "min_iou": min_iou, "mean_iou": mean_iou,
                                        "mae": 0.01, "min_fbeta": 0.95, "map_mae": 0.001},
            "iou_per_image": {"astronaut": min_iou}}


def _result() -> BenchResult:
    rows = [Row("torch", "torch", "fp32", latency=_stats(1400.0), infer=_stats(1390.0),
                stages={"preprocess": 2.0, "infer": 1390.0, "postprocess": 1.0}, parity=_parity(1.0, 1.0),
                size_mb=176.4, load_s=1.2, peak_mb=900.0, achieved_gflops=84.3, peak_fraction=0.55),
            Row("openvino", "openvino", "int8", latency=_stats(430.0), infer=_stats(420.0),
                stages={"preprocess": 2.0, "infer": 420.0, "postprocess": 1.0}, parity=_parity(0.975, 0.9)),
            Row("openvino", "openvino", "int8", batch=4, latency=_stats(1600.0), infer=_stats(1590.0),
                parity=_parity(0.975, 0.9)),
            Row("trt", "tensorrt", "fp32").mark("skipped", "TensorRT needs an NVIDIA GPU"),
            Row("onnx", "onnxruntime", "int8").mark("failed", "ExportError: boom")]
    peak = {"fp32": {"gflops": 150.0, "torch_gflops": 150.0, "numpy_gflops": 120.0, "method": "sgemm"},
            "int8": {"measured": False, "reason": "no INT8 dot-product instructions"}}
    peers = {"definition": "photo in, mask out", "quality_rule": "mean IoU >= 0.97", "fastest": "openvino int8",
             "peers": [{"name": "upstream recipe", "description": "torch", "status": "ok", "latency": _stats(1500.0),
                        "ratio_vs_baseline": 3.4, "min_iou": 1.0, "mean_iou": 1.0},
                       {"name": "rembg", "description": "rembg", "status": "skipped", "reason": "not installed"}]}
    model = {"source": "u2net.pth", "sha256": "ab" * 32, "arch": "u2net", "input_size": [320, 320],
             "params": 44009869, "gflop_per_image": 117.2, "photos": ["astronaut"]}
    return BenchResult(MACHINE, BenchOptions().to_dict(), model, rows, peak, peers, 12.0)


def test_format_value():
    assert format_value("p50_ms", None) == ""
    assert format_value("parity_passed", False) == "FAIL"
    assert format_value("max_abs", 1.4e-5) == "1.4e-05"
    assert format_value("mean_iou", 0.97654) == "0.9765"
    assert format_value("peak_fraction", 0.912) == "91%"
    assert format_value("p50_ms", 1234.4) == "1234" and format_value("p50_ms", 12.34) == "12.3"
    assert format_value("runs", 10) == "10"


def test_markdown_table_shape():
    text = markdown_table([{"a": 1.5, "b": None}], ["a", "b"], {"a": "A"})
    head, rule, body = text.splitlines()
    assert [c.strip() for c in head.strip("|").split("|")] == ["A", "b"]
    assert set(rule) <= {"|", "-"} and [c.strip() for c in body.strip("|").split("|")] == ["1.50", ""]


def test_speedups_are_per_image_against_torch_fp32():
    ratios = speedups(_result().rows)
    assert ratios["torch fp32"] == 1.0
    assert ratios["openvino int8"] == pytest.approx(1400 / 430)
    assert ratios["openvino int8 b4"] == pytest.approx(1400 / 400)


def test_write_bench_writes_four_files_that_parse(tmp_path):
    written = write_bench(_result(), tmp_path / "out")
    data = json.loads(written["json"].read_text())
    assert data["kind"] == "u2deploy bench" and len(data["rows"]) == 5
    assert data["rows"][3]["status"] == "skipped" and "NVIDIA" in data["rows"][3]["reason"]
    with open(written["csv"], newline="") as handle:
        records = list(csv.DictReader(handle))
    assert len(records) == 5 and set(records[0]) >= {key for key, _ in COLUMNS}
    assert records[1]["name"] == "openvino int8" and float(records[1]["p50_ms"]) == 430.0
    markdown = re.sub(" +", " ", written["md"].read_text())  # tabulate pads the cells
    assert "| torch fp32 | ok |" in markdown and "load average 0.50/0.40/0.30" in markdown
    assert "**trt fp32**: skipped: TensorRT needs an NVIDIA GPU" in markdown
    assert "**onnx int8**: failed: ExportError: boom" in markdown
    assert "FP32 peak **150 GFLOP/s**" in markdown and "no INT8 dot-product instructions" in markdown
    assert "| upstream recipe |" in markdown and "not installed" in markdown
    if available("matplotlib"):
        assert written["png"].read_bytes()[:8] == PNG_MAGIC
        assert "![latency vs parity](bench.png)" in markdown
    else:
        assert "matplotlib" in written["png"]


def test_write_paper(tmp_path):
    blocks = [{"name": n, "config": "c", "params": 1000, "flops": 2e9, "gflop": 2.0,
               "latency_ms": {"torch": 10.0, "onnxruntime": 5.0}} for n in ("PLN", "RES", "DSE", "INC", "RSU")]
    models = [{"name": "u2net", "params": 44009869, "file_mb": 176.3, "paper_file_mb": 176.3, "gflop": 117.2,
               "paper_fps": 30, "paper_hardware": "GTX 1080 Ti GPU", "latency_ms": {"torch": 1400.0},
               "fps": {"torch": 0.71, "onnxruntime": 1.2}}]
    result = PaperResult(MACHINE, ["torch", "onnxruntime"], blocks, models, "Timing: 1 run", {"tensorrt": "no GPU"},
                         "note")
    written = write_paper(result, tmp_path)
    assert json.loads(written["json"].read_text())["blocks"][4]["name"] == "RSU"
    markdown = re.sub(" +", " ", written["md"].read_text())
    assert "| RSU | c | 1,000 | 2.00 | 10.0 | 5.00 |" in markdown
    assert "GTX 1080 Ti, different hardware" in markdown and "tensorrt: skipped: no GPU" in markdown
    if available("matplotlib"):
        assert written["png"].read_bytes()[:8] == PNG_MAGIC


def test_a_recorded_result_round_trips_through_json(tmp_path):
    result = _result()
    again = BenchResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert [row.to_dict() for row in again.rows] == [row.to_dict() for row in result.rows]
    assert write_bench(again, tmp_path)["md"].read_text() == write_bench(result, tmp_path / "b")["md"].read_text()

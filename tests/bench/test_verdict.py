"""The verdict: which row to ship, its commands and trade-offs, and the artifacts linked under the results."""

from __future__ import annotations

import os

from u2deploy.bench.report import speedups
from u2deploy.bench.rows import Row
from u2deploy.bench.terminal import WIDTH, terminal_report
from u2deploy.bench.verdict import decide, place_artifacts

from .test_report import _parity, _result, _stats


def _rows() -> list[Row]:
    return [Row("torch", "torch", "fp32", latency=_stats(1100.0), parity=_parity(1.0, 1.0), size_mb=176.4),
            Row("onnx", "onnxruntime", "fp32", latency=_stats(590.0), parity=_parity(1.0, 1.0), size_mb=176.1),
            Row("openvino", "openvino", "bf16", latency=_stats(220.0),
                parity=_parity(0.9785, 0.918), size_mb=176.3),
            Row("openvino", "openvino", "int8", latency=_stats(123.0),
                parity=_parity(0.9692, 0.882), size_mb=45.0),
            Row("trt", "tensorrt", "fp16").mark("skipped", "TensorRT needs an NVIDIA GPU")]


def test_fastest_row_that_reaches_the_target_is_shipped_as_its_file():
    rows = _rows()
    placed = {"openvino bf16": "out/artifacts/u2net_320_bf16.xml", "openvino int8": "out/artifacts/u2net_320_int8.xml"}
    verdict = decide(rows, 0.97, placed, speedups(rows))
    assert verdict.row == "openvino bf16" and verdict.path == "out/artifacts/u2net_320_bf16.xml"
    # the bf16 IR carries its bf16 settings: plain commands run what the bench measured
    assert verdict.python == 'Runtime("out/artifacts/u2net_320_bf16.xml").predict("photo.jpg")'
    assert verdict.cli.startswith("u2deploy predict out/artifacts/u2net_320_bf16.xml ")
    assert verdict.speedup == 1100 / 220 and "0.97" in verdict.target
    # the faster row below the target comes first, then the next rows that pass
    assert verdict.tradeoffs[0].startswith("openvino int8: 1.8x faster at mean IoU 0.969 (worst 0.882), 45 MB")
    assert verdict.tradeoffs[1].startswith("onnx fp32: 2.7x slower at mean IoU 1.000")
    text = "\n".join(verdict.lines())
    assert "setting" not in text and "Ship: openvino bf16 (5.0x" in text


def test_a_lower_target_picks_int8():
    rows = _rows()
    verdict = decide(rows, 0.95, {"openvino int8": "out/artifacts/u2net_320_int8.xml"}, speedups(rows))
    assert verdict.row == "openvino int8"
    assert verdict.python == 'Runtime("out/artifacts/u2net_320_int8.xml").predict("photo.jpg")'


def test_no_row_reaches_the_target_and_missing_peers_say_how_to_add_them():
    verdict = decide(_rows(), 1.01, peers_missing=True)
    assert verdict.row is None and verdict.lines()[0].startswith("No row reaches the target")
    assert any("u2deploy[all,peers]" in line for line in verdict.lines())


def test_torch_row_runs_the_weights_name():
    rows = [Row("torch", "torch", "fp32", latency=_stats(100.0), parity=_parity(1.0, 1.0))]
    verdict = decide(rows, 0.97, model="u2netp")
    assert verdict.path == "u2netp" and verdict.python.startswith('Runtime("u2netp")')


def test_artifacts_are_hard_linked_with_bin_and_manifest(tmp_path):
    cache = tmp_path / "cache" / "abc"
    cache.mkdir(parents=True)
    for name in ("u2net_320_int8.xml", "u2net_320_int8.bin", "u2net_320_int8.xml.json"):
        (cache / name).write_text(name)
    row = Row("openvino", "openvino", "int8", artifact=str(cache / "u2net_320_int8.xml"))
    skipped = Row("trt", "tensorrt", "int8").mark("skipped", "no GPU")
    for _ in range(2):  # idempotent: a second run relinks in place
        placed = place_artifacts([row, skipped], tmp_path / "out")
    folder = tmp_path / "out" / "artifacts"
    assert placed == {"openvino int8": str(folder / "u2net_320_int8.xml")}
    assert sorted(p.name for p in folder.iterdir()) == ["u2net_320_int8.bin", "u2net_320_int8.xml",
                                                        "u2net_320_int8.xml.json"]
    assert os.path.samefile(folder / "u2net_320_int8.bin", cache / "u2net_320_int8.bin")


def test_terminal_report_fits_100_columns():
    result = _result()
    result.verdict = decide(result.rows, 0.97, {}, speedups(result.rows)).to_dict()
    text = terminal_report(result, width=300)
    table = [line for line in text.splitlines() if line[:1] in "┏┃┡│└"]
    assert table and max(len(line) for line in table) <= WIDTH
    assert "SHIP" in text and "trt fp32: skipped: TensorRT needs an NVIDIA GPU" in text

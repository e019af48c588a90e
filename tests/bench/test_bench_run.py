"""`u2deploy bench` end to end on the tiny seeded model at 64x64: rows, skips, report, CLI errors.

Few runs, one thread, no peak measurement; nothing here asserts a time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")


@pytest.fixture()
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("U2DEPLOY_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture()
def no_rembg(monkeypatch):
    from u2deploy.bench import peers

    monkeypatch.setattr(peers, "rembg_peer", lambda threads: peers.Peer("rembg", "rembg", status="skipped",
                                                                         reason="rembg is not installed"))


def test_run_bench_on_the_tiny_model(tiny_checkpoint, isolated_cache, no_rembg, tmp_path):
    from u2deploy.bench import BenchOptions, run_bench, write_bench
    from u2deploy.bench.terminal import terminal_report
    from u2deploy.bench.verdict import verdict_for

    # no INT8 here: quantizing takes ~20 s even for the tiny model; its skip logic is tested in test_matrix_rows
    options = BenchOptions(model=str(tiny_checkpoint), formats=("torch", "onnx", "trt"), precisions=("fp32", "fp16"),
                           size=64, warmup=0, runs=2, threads=1, peak=False, progress=False)
    result = run_bench(options)
    rows = {row.name: row for row in result.rows}
    assert list(rows) == ["torch fp32", "torch fp16", "onnx fp32", "onnx fp16", "trt fp32", "trt fp16"]
    for name in ("torch fp32", "onnx fp32"):
        row = rows[name]
        assert row.status == "ok", row.reason
        assert row.latency["n"] == 2 and set(row.stages) == {"preprocess", "infer", "postprocess"}
        assert row.parity["passed"] and row.parity["summary"]["min_iou"] == 1.0
        assert row.size_mb > 0 and row.load_s is not None and row.peak_mb is not None
        assert row.throughput_ips > 0 and row.throughput_mode.startswith("latency mode")
    assert rows["onnx fp32"].cached is False and rows["onnx fp32"].artifact.startswith(str(isolated_cache))
    assert rows["torch fp16"].status == "skipped" and rows["trt fp32"].status == "skipped"
    assert rows["onnx fp16"].ok and rows["onnx fp16"].parity["precision"] == "fp16"
    assert result.peers["fastest"] in ("onnx fp32", "torch fp32", "onnx fp16")
    peers = {peer["name"]: peer for peer in result.peers["peers"]}
    assert peers["rembg"]["status"] == "skipped" and peers["upstream recipe"]["status"] == "ok"
    assert peers["u2deploy fastest"]["ratio_vs_baseline"] == 1.0
    verdict = verdict_for(result, tmp_path / "out")
    placed = tmp_path / "out" / "artifacts" / "u2net_test_64_fp32.onnx"
    assert verdict.row == result.peers["fastest"] and placed.is_file()
    assert os.path.samefile(placed, rows["onnx fp32"].artifact)  # a hard link, not a second copy
    assert (tmp_path / "out" / "artifacts" / "u2net_test_64_fp32.onnx.json").is_file()
    written = write_bench(result, tmp_path / "out")
    data = json.loads(written["json"].read_text())
    assert data["rows"][0]["name"] == "torch fp32" and data["verdict"]["row"] == verdict.row
    report = terminal_report(result)
    assert "Ship: " in report and max(len(line) for line in report.splitlines() if "│" in line) <= 100

    again = run_bench(BenchOptions(model=str(tiny_checkpoint), formats=("onnx",), precisions=("fp32",), size=64,
                                   warmup=0, runs=1, peers=False, peak=False, progress=False))
    assert again.rows[0].cached is True and again.rows[0].artifact == rows["onnx fp32"].artifact


def _cli(*args: str) -> subprocess.CompletedProcess:
    code = textwrap.dedent(f"""
        import sys
        from u2deploy.cli import main
        sys.exit(main({list(args)!r}))
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("args", "message"), [
    (("--runs", "0"), "--runs 0: must be at least 1"),
    (("--formats", "onnxx"), "did you mean 'onnx'"),
    (("--precisions", "int4"), "unknown precision 'int4'"),
    (("--batch", "1,x"), "--batch 1,x: use a comma list of integers"),
    (("--calib-count", "16"), "--calib-count 16 needs --calib"),
])
def test_cli_user_errors_are_one_line(args, message):
    result = _cli("bench", *args)
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr


def test_cli_runs_and_seconds_are_exclusive():
    result = _cli("bench", "--runs", "3", "--seconds", "5")
    assert result.returncode == 2 and "not allowed with argument" in result.stderr


def test_bench_modules_import_without_heavy_packages():
    from tests.test_import_hygiene import BLOCKER

    modules = ["u2deploy.bench", "u2deploy.bench.harness", "u2deploy.bench.rows", "u2deploy.bench.matrix",
               "u2deploy.bench.peak", "u2deploy.bench.peers", "u2deploy.bench.run", "u2deploy.bench.paper",
               "u2deploy.bench.report", "u2deploy.bench.machine", "u2deploy.cli.bench"]
    code = BLOCKER + textwrap.dedent(f"""
        import importlib
        for name in {modules!r}:
            importlib.import_module(name)
        heavy = [m for m in sys.modules if m.split(".")[0] in BLOCKED]
        assert not heavy, heavy
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr

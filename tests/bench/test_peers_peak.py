"""Peers and the physical limit: the comparison logic with fake peers, and the peak's reporting."""

from __future__ import annotations

import numpy as np
import pytest

from u2deploy.bench import peak, peers
from u2deploy.bench.peers import Peer, compare_peers, rembg_peer, safe_peer
from u2deploy.bench.rows import Row
from u2deploy.bench.run import fastest_row
from u2deploy.errors import MissingDependencyError

PHOTOS = {name: np.zeros((8, 8, 3), np.uint8) for name in ("a", "b", "c")}


def _mask(value: int) -> np.ndarray:
    mask = np.zeros((8, 8), np.uint8)
    mask[:, :value] = 255
    return mask


def test_compare_peers_reports_ratio_and_iou_against_the_reference():
    found = [Peer("upstream recipe", "ref", lambda photo: _mask(4)),
             Peer("u2deploy fastest", "fast", lambda photo: _mask(2)),
             Peer("rembg", "absent", status="skipped", reason="rembg is not installed")]
    results = {r["name"]: r for r in compare_peers(found, PHOTOS, warmup=0, runs=2)}
    assert results["rembg"] == {"name": "rembg", "description": "absent", "status": "skipped",
                                "reason": "rembg is not installed"}
    fast = results["u2deploy fastest"]
    assert fast["ratio_vs_baseline"] == 1.0 and fast["latency"]["n"] == 2
    assert fast["iou_vs_reference"] == {"a": 0.5, "b": 0.5, "c": 0.5}  # photo c was run untimed for the check
    assert results["upstream recipe"]["min_iou"] == 1.0
    assert results["upstream recipe"]["ratio_vs_baseline"] > 0


def test_rembg_absent_is_a_skip_with_the_fix(monkeypatch):
    monkeypatch.setattr(peers, "available", lambda module: False)
    peer = rembg_peer(None)
    assert peer.predict is None and peer.status == "skipped" and "pip install rembg" in peer.reason


@pytest.mark.weights
def test_installed_rembg_runs_on_our_cached_weights_without_downloading(photos, monkeypatch, tmp_path):
    """Any rembg 2.0 that `.[peers]` may install (2.0.69 beside scikit-image < 0.26, 2.0.86 above)."""
    pytest.importorskip("rembg", reason="rembg is not installed (pip install 'u2deploy[all,peers]')")
    from u2deploy import weights

    if weights.download_path("u2net") is None or weights.download_path("u2net").suffix != ".onnx":
        pytest.skip("the cached u2net weights did not come from rembg's u2net.onnx")
    for name in ("REMBG_HOME", "U2NET_HOME"):
        monkeypatch.delenv(name, raising=False)
    peer = rembg_peer(1)
    assert peer.status == "ok", peer.reason
    assert "u2deploy's cached rembg u2net.onnx" in peer.info["weights"]
    mask = peer.predict(photos["chelsea"])
    assert mask.shape == photos["chelsea"].shape[:2] and mask.dtype == np.uint8 and mask.max() == 255


def test_safe_peer_turns_errors_into_reasons():
    def missing() -> Peer:
        raise MissingDependencyError("'torch' is needed")

    def broken() -> Peer:
        raise OSError("no network")

    assert (safe_peer(missing, "p", "d").status, safe_peer(missing, "p", "d").reason) == ("skipped", "'torch' is needed")
    assert safe_peer(broken, "p", "d").status == "failed" and "OSError: no network" in safe_peer(broken, "p", "d").reason


def _row(fmt: str, precision: str, p50: float, mean_iou: float, batch: int = 1) -> Row:
    return Row(fmt, fmt, precision, batch=batch, latency={"p50": p50},
               parity={"summary": {"mean_iou": mean_iou, "min_iou": mean_iou}})


def test_fastest_row_at_equal_quality():
    rows = [_row("onnx", "fp32", 800, 1.0), _row("openvino", "int8", 420, 0.96), _row("onnx", "int8", 450, 0.975),
            _row("openvino", "fp32", 300, 1.0, batch=4), Row("trt", "tensorrt", "fp32").mark("skipped", "no GPU")]
    assert fastest_row(rows, 0.97).name == "onnx int8"
    assert fastest_row(rows, 0.95).name == "openvino int8"
    assert fastest_row(rows, 1.01) is None


def test_fp32_peak_reports_both_libraries():
    pytest.importorskip("torch")
    result = peak.fp32_peak(threads=1, n=64, seconds=0.01)
    assert result["gflops"] == max(result["torch_gflops"], result["numpy_gflops"]) > 0
    assert "2 FLOPs per multiply-accumulate" in result["method"]


def test_int8_peak_is_not_measured_without_dot_product_instructions(monkeypatch):
    monkeypatch.setattr(peak, "cpu_flags", lambda: ["avx2", "fma"])
    assert peak.int8_peak() == {"measured": False, "reason": "no INT8 dot-product instructions (VNNI/AMX/dotprod) "
                                                             "on this CPU; int8 peak not measured"}


def test_int8_peak_with_vnni(monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setattr(peak, "cpu_flags", lambda: ["avx2", "avx512_vnni"])
    result = peak.int8_peak(n=64, seconds=0.01)
    assert result["measured"] is True and result["gops"] > 0 or "int8 matmul failed" in result["reason"]

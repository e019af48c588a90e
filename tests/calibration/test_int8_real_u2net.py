"""The pretrained U2-Net through `--int8`: the OpenVINO NNCF IR passes the issue's gate on the held-out photos.

Calibrated on the bundled stand-in photos (`calibration.source.sample_calibration_names()`, 12). A cold
run calibrates (about 2.5 min on the 2-core CPU: statistics, then NNCF's full bias correction); the result
goes to the user's calibration cache, so later runs only export and judge (about 30 s). The Q/DQ ONNX
is measured by benchmarks/int8.py rather than here, to keep the suite's time.
"""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.weights, pytest.mark.slow, pytest.mark.openvino]
pytest.importorskip("nncf")


@pytest.fixture
def user_cache(monkeypatch):
    """The real calibration cache (tests/calibration/conftest.py points every other test at a temporary one)."""
    from u2deploy.calibration import cache
    from u2deploy.weights import cache_dir

    monkeypatch.setattr(cache, "default_cache_root", lambda: cache_dir() / "calibration")


def test_openvino_int8_passes_the_default_gate(u2net_checkpoint, tmp_path, user_cache):
    from u2deploy.calibration.source import sample_calibration_names, write_sample_images
    from u2deploy.compare import TOLERANCES
    from u2deploy.export import CalibrationOptions, export
    from u2deploy.weights import cache_dir

    images = write_sample_images(cache_dir() / "calibration" / "samples")
    calibration = CalibrationOptions(str(images), count=len(sample_calibration_names()))
    result = export(u2net_checkpoint, f"{tmp_path}/", fmt="openvino", precision="int8", calibration=calibration,
                    progress=False)  # fmt: skip
    summary = result.parity.summary()
    assert result.parity.tolerance == TOLERANCES["int8"] and result.parity.passed, result.parity.failures
    assert summary["mean_iou"] >= 0.95 and summary["map_mae"] <= 0.02
    record = result.manifest["calibration"]
    assert record["bias_correction"] == "full" and record["count"] == 12 and record["graph"]["fake_quantize"] > 100
    assert result.files[1].stat().st_size < 0.3 * 176e6  # int8 weights

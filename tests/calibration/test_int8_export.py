"""`export(..., precision="int8")` end to end on the tiny model: gate, manifest, both runtimes, nothing on failure."""

from __future__ import annotations

import numpy as np
import pytest

from tests.calibration.conftest import COUNT, SIZE
from u2deploy.compare import Tolerance
from u2deploy.export import CalibrationOptions

pytest.importorskip("nncf")
#: The tiny model has random weights, so its INT8 maps are judged loosely; real limits: test_int8_real_u2net.py.
LOOSE = Tolerance(mean_iou=0.5, map_mae=0.2)


def int8_export(tiny_export, calib_dir, fmt: str):
    """The tiny INT8 export; OpenVINO's full bias correction (minutes even here) is left to the real-weights test."""
    calibration = CalibrationOptions(str(calib_dir), COUNT, bias_correction="fast" if fmt == "openvino" else None)
    return tiny_export(fmt, precision="int8", tolerance=LOOSE, calibration=calibration)


@pytest.mark.onnxruntime
def test_onnx_int8_passes_its_gate_and_records_calibration_and_gate(tiny_export, calib_dir):
    from u2deploy import Runtime
    from u2deploy.runtimes.base import read_sidecar

    result = int8_export(tiny_export, calib_dir, "onnx")
    assert result.path.name == "u2net_test_64_int8.onnx" and result.parity.passed
    manifest = read_sidecar(result.path)
    calibration = manifest["calibration"]
    assert calibration["count"] == COUNT and calibration["method"] == "mse" and len(calibration["sha256"]) == 64
    assert calibration["preprocessing"]["input_size"] == [SIZE, SIZE]
    summary = manifest["parity"]["summary"]
    assert {"mean_iou", "map_mae", "min_fbeta"} <= set(summary) and manifest["parity"]["precision"] == "int8"
    assert {row["image"] for row in manifest["parity"]["images"]} == {"astronaut", "chelsea", "coffee", "motorcycle",
                                                                      "rocket"}  # fmt: skip
    with Runtime(result.path) as runtime:
        saliency = runtime.predict(np.zeros((40, 50, 3), np.uint8) + 128)
    assert saliency.shape == (40, 50) and runtime.describe()["precision"] == "int8"


@pytest.mark.openvino
def test_openvino_int8_ir_runs_with_fake_quantize(tiny_export, calib_dir):
    import openvino as ov

    from u2deploy import Runtime

    result = int8_export(tiny_export, calib_dir, "openvino")
    xml, binary, _ = result.files
    assert (xml.suffix, binary.suffix) == (".xml", ".bin") and result.parity.passed
    model = ov.Core().read_model(str(xml))
    assert sum(op.get_type_name() == "FakeQuantize" for op in model.get_ops()) > 100
    assert model.get_rt_info(["precision"]).astype(str) == "int8"
    assert result.manifest["calibration"]["graph"]["fake_quantize"] > 100
    with Runtime(xml) as runtime:
        assert runtime.infer(np.zeros((1, 3, SIZE, SIZE), np.float32)).shape == (1, 1, SIZE, SIZE)


@pytest.mark.onnxruntime
def test_a_failing_int8_gate_names_the_worst_image_and_writes_nothing(tmp_path, tiny_checkpoint, calib_dir):
    from u2deploy.errors import ParityError
    from u2deploy.export import export

    strict = Tolerance(mean_iou=1.01, map_mae=1e-9)
    with pytest.raises(ParityError, match=r"parity gate failed for int8: map MAE \(after min-max\) \S+ on '\w+' "
                                          r"\(mask\) is above the limit 1e-09; mean mask IoU \S+ over 5 maps is below "
                                          r"the limit 1.01 \(worst '\w+'"):
        export(tiny_checkpoint, tmp_path / "m.onnx", precision="int8", tolerance=strict, input_size=(SIZE, SIZE),
               calibration=CalibrationOptions(str(calib_dir), COUNT), progress=False)  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_the_int8_tolerance_is_the_issues_gate():
    from u2deploy.compare import TOLERANCES, compare_maps, parity_report

    assert TOLERANCES["int8"] == Tolerance(mean_iou=0.95, map_mae=0.02)
    reference = np.zeros((2, 1, 16, 16), np.float32)
    reference[:, :, 4:12, 4:12] = 1
    candidate = reference.copy()
    candidate[1, :, 4:12, 4:8] = 0.3  # half of the second mask is lost
    report = parity_report({"mask": reference}, {"mask": candidate}, ["a", "b"], "int8")
    assert [round(r.iou, 3) for r in report.images] == [1.0, 0.5]
    assert report.images[1].map_mae == pytest.approx(32 * 0.7 / 256)
    assert report.failures == ["map MAE (after min-max) 0.0875 on 'b' (mask) is above the limit 0.02",
                               "mean mask IoU 0.75 over 2 maps is below the limit 0.95 (worst 'b' (mask) 0.5)"]
    assert "worst image 'b' (IoU 0.5000" in report.describe()
    assert compare_maps(reference[0], reference[0]).map_mae == 0.0

"""Sensitivity and mixed precision on the tiny model: float convs in a calibrated Q/DQ graph, the ranking,
and the INT8 + FP16 graph staying in TensorRT form."""

from __future__ import annotations

import numpy as np
import pytest

from tests.calibration.conftest import COUNT

pytestmark = [pytest.mark.onnxruntime]
pytest.importorskip("nncf")


@pytest.fixture(scope="module")
def graphs(tmp_path_factory, tiny_onnx, calib_dir):
    """(fp32 model, Q/DQ model): the same calibration as test_qdq.py (a cache hit when it ran first)."""
    import onnx

    from u2deploy.calibration.qdq import quantize_onnx
    from u2deploy.export import CalibrationOptions, ExportOptions

    fp32, spec = tiny_onnx
    out = tmp_path_factory.mktemp("sens") / "tiny.int8.onnx"
    # (the conftest's session cache makes this a hit after test_qdq.py)
    options = ExportOptions(fmt="onnx", precision="int8", calibration=CalibrationOptions(str(calib_dir), count=COUNT),
                            progress=False)
    quantize_onnx(fp32, out, spec, options)
    return onnx.load(str(fp32)), onnx.load(str(out))


@pytest.fixture(scope="module")
def emulator(graphs, tiny_onnx):
    from u2deploy.calibration.sensitivity import Emulator, held_out_photos

    photos = held_out_photos()
    return Emulator(graphs[0], {name: photos[name] for name in ("astronaut", "coffee", "rocket")}, threads=1,
                    spec=tiny_onnx[1])


def test_floating_every_conv_gives_back_the_fp32_maps(graphs, emulator):
    from u2deploy.calibration.mixed import float_convs, quantized_convs, quantized_nodes

    fp32, qdq = graphs
    convs = quantized_convs(qdq)
    assert len(convs) > 20 and set(convs) < set(quantized_nodes(qdq))  # the residual Adds read Q/DQ too
    floated = float_convs(qdq, fp32, quantized_nodes(qdq))
    assert quantized_convs(floated) == []
    assert not [n for n in floated.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    np.testing.assert_allclose(emulator.maps(floated), emulator.reference, atol=1e-6)
    one = float_convs(qdq, fp32, convs[3:4])
    assert quantized_convs(one) == convs[:3] + convs[4:]  # the others keep their INT8 weights and scales


def test_the_ranking_measures_every_block_both_ways(graphs, emulator):
    from u2deploy.calibration.sensitivity import measure_sensitivity

    fp32, qdq = graphs
    report = measure_sensitivity(fp32, qdq, emulator=emulator, refine=1, cache=False)
    blocks = [g for g in report.groups if ":" not in g]
    assert {"stage1", "stage6", "stage1d", "side1"} <= set(blocks) and len(blocks) == 17
    assert set(report.alone_float) == set(report.alone_int8) == set(report.groups)
    rows = report.rows()
    gains = [r["float_gain_iou"] for r in rows]
    assert gains == sorted(gains, reverse=True) and rows[0]["rank"] == 1
    refined = [g for g in report.groups if g.startswith(rows[0]["group"] + ":")] if ":" not in rows[0]["group"] else []
    assert refined or len(report.groups[rows[0]["group"]]) == 1
    assert abs(sum(r["macs_percent"] for r in rows if ":" not in r["group"]) - 100) < 0.1
    for score in report.alone_int8.values():  # one block in INT8 is never worse than every block in INT8 by much
        assert 0 <= score.mean_iou <= 1 and all(0 <= v <= 1 for v in score.boundary_f.values())


def test_the_report_is_written_as_table_csv_json_and_plot(graphs, emulator, tmp_path):
    import json

    from u2deploy.calibration.sensitivity import measure_sensitivity, write_report

    report = measure_sensitivity(*graphs, emulator=emulator, refine=0, both=False, cache=False)
    files = write_report(report, tmp_path)
    assert {f.name for f in files} >= {"sensitivity.json", "sensitivity.csv", "sensitivity.md"}
    data = json.loads((tmp_path / "sensitivity.json").read_text())
    assert data["ranking"][0]["rank"] == 1 and len(data["ranking"]) == 17
    assert (tmp_path / "sensitivity.md").read_text().count("\n| ") == 18


def test_boundary_f():
    from u2deploy.calibration.sensitivity import boundary_f

    square = np.zeros((40, 40))
    square[10:30, 10:30] = 1
    assert boundary_f(square, square) == 1.0
    shifted = np.roll(square, 1, axis=1)
    assert 0.9 < boundary_f(square, shifted) <= 1.0  # within the 2-pixel tolerance
    far = np.roll(square, 8, axis=1)
    assert boundary_f(square, far) < 0.7


def test_the_mixed_graph_is_int8_plus_fp16_in_tensorrt_form(graphs, emulator):
    from onnx import TensorProto

    from u2deploy.calibration.mixed import float_convs, quantized_convs, to_mixed_fp16
    from u2deploy.calibration.qdq import check_tensorrt_form

    fp32, qdq = graphs
    convs = quantized_convs(qdq)
    chosen = [c for c in convs if c.startswith("/stage1d/") or c.startswith("/stage6/")]
    mixed = to_mixed_fp16(float_convs(qdq, fp32, chosen), chosen)
    form = check_tensorrt_form(mixed)  # every Q/DQ symmetric int8 with zero points 0
    assert form["int8_convs"] == len(convs) - len(chosen)
    types = {v.name: v.type.tensor_type.elem_type for v in list(mixed.graph.value_info) + list(mixed.graph.output)}
    inits = {t.name: t.data_type for t in mixed.graph.initializer}
    for node in mixed.graph.node:
        if node.name in chosen:  # the float part: fp16 weights and output
            assert inits[node.input[1]] == TensorProto.FLOAT16 and types[node.output[0]] == TensorProto.FLOAT16
        elif node.name in set(convs) - set(chosen):  # INT8 convs keep the DQ -> Conv pattern TensorRT fuses
            assert types[node.output[0]] == TensorProto.FLOAT
    assert types[mixed.graph.output[0].name] == TensorProto.FLOAT
    score = emulator.score(mixed)
    assert score.mean_iou > 0.5


@pytest.fixture(scope="module")
def graph_files(graphs, tiny_onnx, tmp_path_factory):
    """The two tiny graphs on disk, the fp32 one with the spec in its metadata as `u2deploy export` writes it."""
    import onnx

    from u2deploy.export.onnx_export import set_metadata
    from u2deploy.spec import METADATA_KEY

    folder = tmp_path_factory.mktemp("graphs")
    fp32 = onnx.ModelProto()
    fp32.CopyFrom(graphs[0])
    set_metadata(fp32, {METADATA_KEY: tiny_onnx[1].to_json()})
    onnx.save(fp32, str(folder / "fp32.onnx"))
    onnx.save(graphs[1], str(folder / "int8.onnx"))
    return folder / "fp32.onnx", folder / "int8.onnx"


def test_cli_sensitivity_writes_the_ranked_report(graph_files, tmp_path, capsys):
    from u2deploy.cli import main

    fp32, qdq = graph_files
    code = main(["quant", "sensitivity", "u2net_test", "--fp32", str(fp32), "--qdq", str(qdq), "-o",
                 str(tmp_path / "sens"), "--no-extra-photos", "--float-only", "--refine", "0", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and "| 1 | " in out and "on 5 held-out photos" in out and "measured on 3 photos" in out
    assert (tmp_path / "sens" / "sensitivity.csv").read_text().startswith("rank,group,convs,macs_percent")


def test_cli_mixed_meets_a_target_or_writes_nothing(graph_files, tmp_path, capsys):
    import json

    import onnx

    from u2deploy.calibration.qdq import check_tensorrt_form
    from u2deploy.cli import main

    fp32, qdq = graph_files
    common = ["quant", "mixed", "u2net_test", "--fp32", str(fp32), "--qdq", str(qdq), "--no-extra-photos", "--quiet"]
    code = main([*common, "-o", str(tmp_path / "never.onnx"), "--target-mean", "1.01"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "no float set found that meets mean IoU >= 1.01" in err[0]
    assert not (tmp_path / "never.onnx").exists()

    out = tmp_path / "mixed.onnx"
    assert main([*common, "-o", str(out), "--target-mean", "0.97", "--target-worst", "0.9"]) == 0
    record = json.loads(out.with_name("mixed.onnx.json").read_text())["mixed_precision"]
    assert record["auto"]["met"] and record["auto"]["nodes"] and record["keep_float"] == "auto"
    assert record["score_fp16_float_part"]["mean_iou"] >= 0.96
    check_tensorrt_form(onnx.load(str(out)))


def test_export_keep_float_auto_records_its_choice_and_ships_int8_plus_fp16(tiny_export, calib_dir):
    import onnx
    from onnx import TensorProto

    from u2deploy.calibration.qdq import check_tensorrt_form
    from u2deploy.compare import Tolerance
    from u2deploy.export import CalibrationOptions

    calibration = CalibrationOptions(str(calib_dir), COUNT, keep_float="auto")
    result = tiny_export("onnx", precision="int8", tolerance=Tolerance(mean_iou=0.5, map_mae=0.2),
                         calibration=calibration)
    record = result.manifest["calibration"]
    auto = record["keep_float_auto"]
    assert auto["target"] == {"mean_iou": 0.985, "worst_iou": 0.95} and auto["nodes"] and auto["steps"]
    assert set(auto["nodes"]) <= set(record["keep_float"])
    model = onnx.load(str(result.path))
    form = check_tensorrt_form(model)
    assert form["int8_convs"] < form["convs"] - 1
    inits = {t.name: t.data_type for t in model.graph.initializer}
    floated = [n for n in model.graph.node if n.name in set(auto["nodes"]) and n.op_type == "Conv"]
    assert floated and all(inits[n.input[1]] == TensorProto.FLOAT16 for n in floated)


@pytest.mark.openvino
def test_openvino_keep_float_auto_ignores_the_same_nodes(tiny_export, calib_dir):
    from u2deploy.compare import Tolerance
    from u2deploy.export import CalibrationOptions

    loose = Tolerance(mean_iou=0.5, map_mae=0.2)
    fast = {"bias_correction": "fast"}  # OpenVINO's full bias correction takes minutes even on the tiny model
    auto = tiny_export("openvino", precision="int8", tolerance=loose,
                       calibration=CalibrationOptions(str(calib_dir), COUNT, keep_float="auto", **fast))
    full = tiny_export("openvino", precision="int8", tolerance=loose,
                       calibration=CalibrationOptions(str(calib_dir), COUNT, **fast))
    record = auto.manifest["calibration"]
    nodes = record["keep_float_auto"]["nodes"]
    assert nodes and set(nodes) <= set(record["keep_float"])  # the export checked none of them reads int8 data
    assert record["graph"]["fake_quantize"] < full.manifest["calibration"]["graph"]["fake_quantize"]

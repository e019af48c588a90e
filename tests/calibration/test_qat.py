"""Quantization-aware fine-tuning: the Q/DQ graph as a torch module, its export, and distillation on u2netp.

The model is a seeded random u2netp at 64x64 (distillation needs no labels, so random weights do);
its fuse conv is scaled up so the fp32 maps span most of [0, 1] instead of sitting near 0.47, which
makes the min-max normalised error of the gate mean what it means on a trained model.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = [pytest.mark.onnxruntime]
pytest.importorskip("nncf")

SIZE = 64


def _u2netp():
    import torch

    from tests.seeded import seed_batchnorm
    from u2deploy.model import u2netp

    torch.manual_seed(0)
    model = seed_batchnorm(u2netp().eval())
    with torch.no_grad():
        model.outconv.weight.mul_(30)  # logits wide enough for masks that are not all 0.5
    return model


@pytest.fixture(scope="module")
def train_images(tmp_path_factory):
    """The 12 bundled stand-in photos (never the held-out ones) as arrays."""
    from u2deploy.calibration.source import write_sample_images
    from u2deploy.processing import load_image

    folder = write_sample_images(tmp_path_factory.mktemp("stand_in"))
    return folder, [load_image(p) for p in sorted(folder.glob("*.png"))]


@pytest.fixture(scope="module")
def graph_files(tmp_path_factory, train_images):
    """(fp32 ONNX path, Q/DQ ONNX path, spec) of the seeded u2netp, calibrated like an export on the stand-ins."""
    import onnx

    from u2deploy.calibration.qdq import quantize_onnx
    from u2deploy.export import CalibrationOptions, ExportOptions
    from u2deploy.export.onnx_export import build_onnx, set_metadata
    from u2deploy.spec import METADATA_KEY, spec_for_task

    folder = tmp_path_factory.mktemp("qat")
    spec = spec_for_task("sod", arch="u2netp", input_size=(SIZE, SIZE))
    fp32 = build_onnx(_u2netp(), spec)
    set_metadata(fp32, {METADATA_KEY: spec.to_json()})
    onnx.save(fp32, str(folder / "fp32.onnx"))
    options = ExportOptions(fmt="onnx", precision="int8", calibration=CalibrationOptions(str(train_images[0]), count=12),
                            progress=False)
    quantize_onnx(folder / "fp32.onnx", folder / "int8.onnx", spec, options)
    return folder / "fp32.onnx", folder / "int8.onnx", spec


@pytest.fixture(scope="module")
def graphs(graph_files):
    import onnx

    return onnx.load(str(graph_files[0])), onnx.load(str(graph_files[1]))


def _ort(model, x):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])


def _torch(module, x):
    import torch

    with torch.no_grad():
        return module(torch.from_numpy(x))[0].numpy()


def _inputs():
    """Two held-out photos as the graph takes them (random noise would sit outside the calibrated ranges)."""
    from u2deploy.processing import preprocess_batch
    from u2deploy.samples import sample_photos
    from u2deploy.spec import spec_for_task

    spec = spec_for_task("sod", arch="u2netp", input_size=(SIZE, SIZE))
    return preprocess_batch(list(sample_photos(("astronaut", "rocket")).values()), spec, mode="reference")[0]


def _close_to_onnxruntime(ours, theirs, fp32, share: float = 0.02):
    """Equal but for a rare int8 step: conv sums in another order can cross a rounding boundary, and the
    step propagates; `share` bounds that against the quantization error itself."""
    difference, quantization = np.abs(ours - theirs), np.abs(theirs - fp32)
    assert difference.mean() < share * quantization.mean() and difference.max() < 0.05, (
        difference.mean(), difference.max(), quantization.mean())


def test_fake_quantize_is_quantize_linear_with_lsq_gradients():
    import torch

    from u2deploy.calibration.qat import fake_quantize

    x = torch.tensor([0.5, 1.5, 2.5, -0.5, -2.5, 300.0, -300.0, 7.4], dtype=torch.float64) * 0.25  # exact ties
    scale = torch.tensor(0.25, dtype=torch.float64, requires_grad=True)
    xs = x.clone().requires_grad_()
    y = fake_quantize(xs, scale, -128, 127)
    # round half to even and ONNX's int8 saturation
    assert torch.equal(y / 0.25, torch.tensor([0.0, 2, 2, -0, -2, 127, -128, 7], dtype=torch.float64))
    (y * torch.arange(8)).sum().backward()
    reference_x = x.clone().requires_grad_()
    reference_s = torch.tensor(0.25, dtype=torch.float64, requires_grad=True)
    scaled = reference_x / reference_s
    steps = torch.clamp(scaled + (torch.round(scaled) - scaled).detach(), -128, 127)
    ((steps * reference_s) * torch.arange(8)).sum().backward()
    assert torch.allclose(xs.grad, reference_x.grad) and torch.allclose(scale.grad, reference_s.grad)
    assert xs.grad[5] == 0 and xs.grad[6] == 0  # saturated: no gradient to x


def test_the_module_runs_both_graphs_as_onnxruntime_does(graphs):
    from u2deploy.calibration.qat import graph_module

    fp32, qdq = graphs
    x = _inputs()
    np.testing.assert_allclose(_torch(graph_module(fp32), x), _ort(fp32, x), atol=1e-5)
    _close_to_onnxruntime(_torch(graph_module(qdq, fp32), x), _ort(qdq, x), _ort(fp32, x))


def test_a_crop_runs_the_graph_at_a_smaller_size(graphs):
    import torch

    from u2deploy.calibration.qat import graph_module

    crop = _inputs()[:, :, :32, :32]
    with torch.no_grad():
        expected = _u2netp()(torch.from_numpy(crop))[0].numpy()
    np.testing.assert_allclose(_torch(graph_module(graphs[0]), crop), expected, atol=1e-5)
    with pytest.raises(Exception, match="crop"):
        _torch(graph_module(graphs[0]), _inputs()[:, :, :40, :40])


def test_learned_values_are_written_back_in_tensorrt_form(graphs):
    import torch
    from onnx import numpy_helper

    from u2deploy.calibration.qat import graph_module, learned_graph
    from u2deploy.calibration.qdq import check_tensorrt_form

    fp32, qdq = graphs
    module = graph_module(qdq, fp32)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for log in module.logs:
            log.add_(0.01 * torch.randn(log.shape, generator=generator))
        for value in module.values:
            value.mul_(1 + 0.01 * torch.randn(value.shape, generator=generator))
    learned = learned_graph(module)
    assert check_tensorrt_form(learned) == check_tensorrt_form(qdq)
    assert [n.op_type for n in learned.graph.node] == [n.op_type for n in qdq.graph.node]
    before = {t.name: numpy_helper.to_array(t) for t in qdq.graph.initializer}
    after = {t.name: numpy_helper.to_array(t) for t in learned.graph.initializer}
    changed = [name for name in before if not np.array_equal(before[name], after[name])]
    assert any(after[n].dtype == np.int8 for n in changed) and any(n.startswith("scale") for n in changed)
    x = _inputs()
    _close_to_onnxruntime(_torch(module, x), _ort(learned, x), _ort(fp32, x), share=0.1)


def test_qat_on_u2netp_lowers_the_emulated_error_of_ptq(graphs, graph_files, train_images):
    from u2deploy.calibration.qat_train import DistillImages, QatOptions, fine_tune
    from u2deploy.calibration.qdq import check_tensorrt_form
    from u2deploy.calibration.sensitivity import Emulator, held_out_photos

    fp32, qdq = graphs
    emulator = Emulator(fp32, held_out_photos(extra=False), threads=1, spec=graph_files[2])
    images = DistillImages(train_images[1], graph_files[2], seed=0)
    run = fine_tune(fp32, qdq, images, QatOptions(iterations=60))
    before, after = emulator.score(qdq), emulator.score(run.model)
    mae = [np.mean(list(score.map_mae.values())) for score in (before, after)]
    assert run.best_loss < 0.8 * run.start_loss and run.iterations == 60
    assert mae[1] < 0.85 * mae[0], (mae, before.summary(), after.summary())
    assert after.mean_iou >= before.mean_iou - 0.005
    check_tensorrt_form(run.model)


def test_cli_qat_writes_the_graph_and_its_record(graph_files, train_images, tmp_path, capsys):
    import json

    import onnx

    from u2deploy.calibration.qdq import check_tensorrt_form
    from u2deploy.cli import main

    fp32, qdq, _ = graph_files
    out = tmp_path / "qat.onnx"
    code = main(["quant", "qat", "u2netp", "--fp32", str(fp32), "--qdq", str(qdq), "--images", str(train_images[0]),
                 "--iters", "3", "--no-extra-photos", "--quiet", "-o", str(out)])
    assert code == 0 and "3 QAT steps" in capsys.readouterr().out
    record = json.loads(out.with_name("qat.onnx.json").read_text())["qat"]
    assert record["iterations"] == 3 and record["images"]["count"] == 12 and record["photos"][0] == "astronaut"
    assert {"mean_iou", "worst_iou", "map_mae"} <= set(record["before"]) and record["after"]["iou"]
    check_tensorrt_form(onnx.load(str(out)))


@pytest.mark.parametrize(("extra", "message"), [
    ([], "QAT needs a budget: --iters N or --minutes M"),
    (["--iters", "0"], "QAT budget must be positive"),
    (["--iters", "2", "--images", "{missing}"], "--images {missing}: no such folder"),
    (["--iters", "2", "--images", "{parity}"], "training image zz.png is the held-out photo 'rocket'"),
    (["--iters", "2", "-o", "{qdq}"], "is an input graph"),
    (["--iters", "2", "-o", "out.txt"], "use a name ending in .onnx"),
])  # fmt: skip
def test_cli_qat_refuses_bad_input_in_one_line(graph_files, train_images, tmp_path, capsys, extra, message):
    from PIL import Image

    from u2deploy.cli import main
    from u2deploy.samples import sample_photo

    fp32, qdq, _ = graph_files
    parity = tmp_path / "parity"
    parity.mkdir()
    for path in sorted(train_images[0].glob("*.png"))[:8]:
        (parity / path.name).write_bytes(path.read_bytes())
    Image.fromarray(sample_photo("rocket")).save(parity / "zz.png")
    fields = {"missing": str(tmp_path / "nope"), "parity": str(parity), "qdq": str(qdq)}
    extra = [part.format(**fields) for part in extra]
    command = ["quant", "qat", "u2netp", "--fp32", str(fp32), "--qdq", str(qdq), "--images", str(train_images[0]),
               "--no-extra-photos", "--quiet", "-o", str(tmp_path / "never.onnx"), *extra]
    code = main(command)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and message.format(**fields) in err[0] and len(err[0]) <= 160, err
    assert not (tmp_path / "never.onnx").exists()

"""The Q/DQ ONNX: TensorRT form, what is quantized and what is not, ONNX Runtime and OpenVINO, the cache."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.calibration.conftest import COUNT, SIZE, write_images
from u2deploy.calibration import CalibrationSource, select_images
from u2deploy.export import CalibrationOptions, ExportOptions

pytestmark = [pytest.mark.onnxruntime]
pytest.importorskip("nncf")


def options(folder, **fields) -> ExportOptions:
    calibration = CalibrationOptions(str(folder), count=COUNT, **fields)
    return ExportOptions(fmt="onnx", precision="int8", calibration=calibration, progress=False)


@pytest.fixture(scope="module")
def quantized(tmp_path_factory, tiny_onnx, calib_dir):
    """(Q/DQ model path, its calibration record, the fp32 path): one cold calibration shared by the module.

    It fills the session's calibration cache, so the tiny INT8 exports of test_int8_export.py (same graph,
    images and method) reuse it.
    """
    from u2deploy.calibration.qdq import quantize_onnx

    fp32, spec = tiny_onnx
    out = tmp_path_factory.mktemp("qdq") / "tiny.int8.onnx"
    files = quantize_onnx(fp32, out, spec, options(calib_dir))
    return out, files.sections["calibration"], fp32


def reads_int8(name: str, producers: dict) -> bool:
    """Tensor `name` is dequantized int8, possibly moved through ops TensorRT commutes with DQ (MaxPool, Resize,
    Concat of dequantized inputs)."""
    node = producers.get(name)
    if node is None:
        return False
    if node.op_type == "DequantizeLinear":
        return True
    if node.op_type in ("MaxPool", "Resize"):
        return reads_int8(node.input[0], producers)
    if node.op_type == "Concat":
        return all(reads_int8(i, producers) for i in node.input)
    return False


def test_every_conv_but_the_head_reads_int8_weights_and_activations(quantized):
    import onnx
    from onnx import numpy_helper

    from u2deploy.calibration.qdq import check_tensorrt_form, head_nodes

    path, record, fp32 = quantized
    model = onnx.load(str(path))
    head = head_nodes(onnx.load(str(fp32)))
    producers = {out: node for node in model.graph.node for out in node.output}
    initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    kept = {head.fuse, head.concat, *head.resizes, *head.sigmoids}
    for node in model.graph.node:
        fed = [producers[i].op_type if i in producers else "initializer" for i in node.input]
        if node.name in kept:
            assert "DequantizeLinear" not in fed, node.name  # fuse conv, its input and the Sigmoid stay float
        elif node.op_type == "Conv":
            weight_dq = producers[node.input[1]]
            assert weight_dq.op_type == "DequantizeLinear" and reads_int8(node.input[0], producers), node.name
            weights, scales = (initializers[n] for n in weight_dq.input[:2])
            assert weights.dtype == np.int8 and weights.min() >= -127 and scales.size == weights.shape[0]
    zero_points = [initializers[n.input[2]] for n in model.graph.node if n.op_type.endswith("QuantizeLinear")]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    form = check_tensorrt_form(model)
    assert form["int8_convs"] == form["convs"] - 1 and form["opset"] >= 13 and record["graph"] == form
    assert record["keep_float"][0] == head.fuse and record["method"] == "mse" and record["bias_correction"] == "fast"


def test_check_refuses_graphs_tensorrt_cannot_build(quantized):
    import onnx
    from onnx import numpy_helper

    from u2deploy.calibration.qdq import check_tensorrt_form
    from u2deploy.errors import ExportError

    model = onnx.load(str(quantized[0]))
    zp = next(n.input[2] for n in model.graph.node if n.op_type == "QuantizeLinear")
    index = next(i for i, t in enumerate(model.graph.initializer) if t.name == zp)
    model.graph.initializer[index].CopyFrom(numpy_helper.from_array(np.array(0, np.uint8), zp))
    with pytest.raises(ExportError, match=r"uint8 zero point \[0\] \(TensorRT needs int8 zeros\)"):
        check_tensorrt_form(model)


def test_the_qdq_graph_runs_in_onnxruntime_and_loads_in_openvino(quantized):
    from u2deploy import Runtime
    from u2deploy.export.verify import INT8_VERIFY_OPTIONS

    path = quantized[0]
    batch = np.random.default_rng(1).normal(size=(2, 3, SIZE, SIZE)).astype(np.float32)
    exact_options = INT8_VERIFY_OPTIONS["onnxruntime"]
    with Runtime(path, device="cpu", **exact_options) as exact, Runtime(path, device="cpu") as fast:
        literal, optimised = exact.infer(batch), fast.infer(batch)
        assert exact.describe()["precision"] == "int8"
    assert literal.shape == (2, 1, SIZE, SIZE) and np.all((literal >= 0) & (literal <= 1))
    assert np.mean(np.abs(literal - optimised)) < 0.05  # ORT's int8 kernels compute nearly the same map
    ov = pytest.importorskip("openvino")
    compiled = ov.Core().compile_model(ov.Core().read_model(str(path)), "CPU")  # "loads in OpenVINO"
    assert compiled.output(0).get_partial_shape().to_shape()[1] == 1


def test_a_second_calibration_of_the_same_inputs_comes_from_the_cache(tmp_path, quantized, tiny_onnx, calib_dir):
    import onnx

    from u2deploy.calibration.qdq import quantize_onnx

    fp32, spec = tiny_onnx
    start = time.perf_counter()
    files = quantize_onnx(fp32, tmp_path / "again.onnx", spec, options(calib_dir))
    assert files.sections["calibration"]["cached"] is True and time.perf_counter() - start < 5
    first, again = onnx.load(str(quantized[0])), onnx.load(str(files[0]))
    assert first.graph.SerializeToString() == again.graph.SerializeToString()


def test_every_input_of_the_cache_key_invalidates_it(tmp_path, tiny_onnx):
    import onnx

    from u2deploy.calibration import qdq
    from u2deploy.calibration.cache import cache_key, cache_parts
    from u2deploy.export.options import bias_correction_for

    fp32, spec = tiny_onnx
    model = onnx.load(str(fp32))
    folder = write_images(tmp_path / "images", count=COUNT + 1)

    def key(images=folder, seed=0, graph=model, size=spec.input_size, quantizer=qdq.QUANTIZER, **fields):
        source = CalibrationSource(select_images(images, COUNT, seed), spec.replace(input_size=size), progress=False)
        calibration = CalibrationOptions(str(images), **fields)
        return cache_key(cache_parts(quantizer, graph, source, calibration, bias_correction_for("onnx", calibration),
                                     ("nncf",)))

    base = key()
    assert key() == base
    renamed = tmp_path / "renamed"
    folder.rename(renamed)
    assert key(images=renamed) == base  # where the images live does not matter, what they hold does
    other = onnx.load(str(fp32))
    other.graph.initializer[0].raw_data = bytes(len(other.graph.initializer[0].raw_data))  # other weights
    changed = [key(images=renamed, seed=1), key(images=renamed, method="minmax"),
               key(images=renamed, keep_float="heads"), key(images=renamed, bias_correction="full"),
               key(images=renamed, size=(96, 96)),
               key(images=renamed, graph=other), key(images=renamed, quantizer={**qdq.QUANTIZER, "version": 0})]
    write_images(renamed, count=1, seed=7)  # an image's content changes
    changed.append(key(images=renamed))
    assert len({base, *changed}) == len(changed) + 1
    assert key(images=renamed, bias_correction="fast") == changed[-1]  # the default for the Q/DQ graph, spelled out


def test_a_corrupt_or_foreign_cache_entry_is_ignored(tmp_path):
    from u2deploy.calibration.cache import CalibrationCache

    cache = CalibrationCache(tmp_path / "cache")
    model = tmp_path / "model.onnx"
    model.write_bytes(b"calibrated")
    (stored,) = cache.store("k" * 64, [model], {"method": "entropy"})
    assert cache.lookup("k" * 64) == [stored] and cache.lookup("x" * 64) is None
    stored.write_bytes(b"truncated")
    assert cache.lookup("k" * 64) is None
    cache.store("k" * 64, [model], {"method": "entropy"})  # rebuilt in place
    assert cache.lookup("k" * 64)[0].read_bytes() == b"calibrated"


def test_source_from_options_needs_a_source(tiny_onnx):
    from u2deploy.errors import InputError

    with pytest.raises(InputError, match="INT8 needs calibration images"):
        CalibrationSource.from_options(CalibrationOptions(), tiny_onnx[1])
    assert select_images  # re-exported by u2deploy.calibration

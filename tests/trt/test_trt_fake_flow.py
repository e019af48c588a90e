"""u2deploy's TensorRT control flow, run against the hand-written fake `tensorrt` (see fake_tensorrt.py).

These tests check *our* logic: which build path is chosen, what reaches the builder config, that a
None from the builder or runtime becomes one clear error, that nothing is written when a check
fails, what the manifest records, how the backend binds buffers, handles profiles and replays a
CUDA graph, and why it refuses an engine from another machine. They prove nothing about TensorRT
itself; `test_tensorrt_gpu.py` and `benchmarks/gpu_check.py` do that on real hardware.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.trt.conftest import FAKE_GPU
from tests.trt.fake_tensorrt import MAGIC, FakeMemory
from u2deploy import hardware
from u2deploy.cli import main
from u2deploy.errors import BackendError, ExportError, InputError, MissingDependencyError, UnsupportedOptionError
from u2deploy.export import export
from u2deploy.export.trt_build import onnx_to_tensorrt
from u2deploy.runtimes.base import sidecar_path
from u2deploy.runtimes.runtime import Runtime
from u2deploy.runtimes.trt_support import Profile

SIZE = 64


def onnx_reference(onnx_path, batch: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": batch})[0]


def images(count: int) -> np.ndarray:
    return np.random.default_rng(count).standard_normal((count, 3, SIZE, SIZE)).astype(np.float32)


@pytest.fixture()
def onnx_file(tiny_export):
    """The tiny model's ONNX at a precision (fp32, fp16), with dynamic axes ("batch", "hw") if asked."""

    def make(precision: str = "fp32", dynamic: tuple[str, ...] = ()):
        return tiny_export("onnx", precision=precision, dynamic=dynamic).path

    return make


# -- the export pipeline ----------------------------------------------------------------------
def test_export_writes_a_raw_plan_and_a_manifest_with_the_engine_record(fake_trt, tiny_checkpoint, tmp_path):
    trt = fake_trt("10.3.0")
    result = export(tiny_checkpoint, tmp_path / "m.engine", fmt="trt", precision="fp16", input_size=(SIZE, SIZE),
                    progress=False)  # fmt: skip
    assert [p.name for p in result.files] == ["m.engine", "m.engine.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.engine", "m.engine.json"]  # the ONNX was temporary
    assert result.path.read_bytes().startswith(MAGIC)  # the builder's bytes, no header in front
    record = json.loads(sidecar_path(result.path).read_text())["tensorrt"]
    assert record["version"] == "10.3.0" and record["strongly_typed"] and record["builder_flags"] == []
    assert (record["built_on"]["gpu"], record["built_on"]["compute_capability"]) == (FAKE_GPU.name, "8.6")
    assert record["profiles"] == [Profile.static("input", (1, 3, SIZE, SIZE)).to_dict()]
    assert record["layers"]["verdict"] == "ok" and record["graph_precision"] == "fp16"
    assert result.manifest["parity"]["passed"] and result.parity.precision == "fp16"
    assert trt.builds[-1]["verbosity"] == "DETAILED" and trt.builds[-1]["strongly_typed"]


def test_the_cli_passes_every_tensorrt_knob_to_the_builder(fake_trt, tiny_checkpoint, tmp_path, capsys):
    trt = fake_trt("10.3.0")
    cache = tmp_path / "timing.cache"
    code = main(["export", str(tiny_checkpoint), "--fmt", "trt", "--size", str(SIZE), "--workspace", "0.5",
                 "--opt-level", "5", "--timing-cache", str(cache), "-o", str(tmp_path / "m.engine"), "--quiet"])
    assert code == 0, capsys.readouterr().err
    header = trt.builds[-1]
    assert header["workspace"] == 2**29 and header["opt_level"] == 5
    assert "TF32" not in header["flags"]  # an fp32 engine computes in fp32
    assert cache.read_bytes() == b"entry;"
    assert "parity fp32 vs PyTorch FP32" in capsys.readouterr().out


def test_a_missing_cuda_memory_provider_is_one_line_before_the_build(fake_trt, monkeypatch, tiny_checkpoint, tmp_path):
    trt = fake_trt("10.3.0")
    monkeypatch.setattr("u2deploy.runtimes._cuda.provider_name", lambda prefer=None: None)
    with pytest.raises(MissingDependencyError, match="needs cuda-python or a CUDA build of PyTorch; fix: pip install "
                                                     "cuda-python \\(or pass --no-verify\\)"):
        export(tiny_checkpoint, tmp_path / "m.engine", fmt="trt", input_size=(SIZE, SIZE), progress=False)
    assert trt.builds == [] and list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_int8_builds_strongly_typed_from_the_qdq_graph_and_keeps_the_calibration_record(fake_trt, tiny_checkpoint,
                                                                                        tmp_path):
    from u2deploy.calibration.source import write_sample_images
    from u2deploy.export import CalibrationOptions

    trt = fake_trt("11.4.1")
    photos = write_sample_images(tmp_path / "calib")
    result = export(tiny_checkpoint, tmp_path / "m.engine", fmt="trt", precision="int8", input_size=(SIZE, SIZE),
                    calibration=CalibrationOptions(source=str(photos), count=8, cache=False), verify=False,
                    progress=False)  # the random tiny model's map is too flat for the INT8 gate
    record = result.manifest["tensorrt"]
    assert record["graph_precision"] == "int8" and record["strongly_typed"] and trt.builds[-1]["strongly_typed"]
    assert record["layers"]["verdict"] == "ok" and record["layers"]["share"] == 1.0
    assert result.manifest["calibration"]["method"] == "mse"  # the quantizer's section travels with the engine
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib", "m.engine", "m.engine.json"]


# -- build paths ------------------------------------------------------------------------------
def test_tensorrt_11_builds_the_fp16_graph_strongly_typed_and_refuses_the_fp32_one(fake_trt, onnx_file, tmp_path):
    trt = fake_trt("11.4.1")
    record = onnx_to_tensorrt(onnx_file("fp16"), tmp_path / "a.engine", precision="fp16")
    assert record["strongly_typed"] and record["builder_flags"] == [] and trt.builds[-1]["strongly_typed"]
    with pytest.raises(ExportError, match=r"TensorRT 11.4.1 builds strongly typed networks only.*rf-detr#1453"):
        onnx_to_tensorrt(onnx_file("fp32"), tmp_path / "b.engine", precision="fp16")
    assert not (tmp_path / "b.engine").exists()


def test_tensorrt_10_may_use_the_fp16_flag_on_an_fp32_graph(fake_trt, onnx_file, tmp_path):
    trt = fake_trt("10.3.0")
    record = onnx_to_tensorrt(onnx_file("fp32"), tmp_path / "a.engine", precision="fp16")
    assert not record["strongly_typed"] and record["builder_flags"] == ["FP16"]
    assert not trt.builds[-1]["strongly_typed"] and "FP16" in trt.builds[-1]["flags"]  # re-parsed weakly typed


def test_an_engine_that_stayed_fp32_is_refused_and_not_written(fake_trt, onnx_file, tmp_path):
    fake_trt("10.3.0", silent_fp32=True)
    with pytest.raises(ExportError, match=r"a.engine: fp16 was asked for, but only 0% of the convolution MACs run in "
                                          r"fp16.*nothing was written"):
        onnx_to_tensorrt(onnx_file("fp16"), tmp_path / "a.engine", precision="fp16")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_none_from_the_builder_becomes_the_loggers_error(fake_trt, onnx_file, tmp_path):
    fake_trt("10.3.0", fail_build=True)
    with pytest.raises(ExportError, match=r"TensorRT 10.3.0 could not build an engine: \[fake\] Error Code 4: Internal "
                                          r"Error \(could not find any implementation"):
        onnx_to_tensorrt(onnx_file("fp16"), tmp_path / "a.engine", precision="fp16")
    assert list(tmp_path.iterdir()) == []


def test_a_parser_error_names_the_node(fake_trt, onnx_file, tmp_path):
    fake_trt("10.3.0", fail_parse=True)
    with pytest.raises(ExportError, match=r"TensorRT 10.3.0 cannot parse it: In node 12 \(parseGraph\)"):
        onnx_to_tensorrt(onnx_file("fp16"), tmp_path / "a.engine", precision="fp16")


def test_the_timing_cache_is_reused_updated_and_replaced_when_foreign(fake_trt, onnx_file, tmp_path):
    fake_trt("10.3.0")
    first = onnx_to_tensorrt(onnx_file("fp16"), tmp_path / "a.engine", precision="fp16")
    second = onnx_to_tensorrt(onnx_file("fp16"), tmp_path / "b.engine", precision="fp16")
    cache = first["timing_cache"]["path"]
    assert (first["timing_cache"]["state"], second["timing_cache"]["state"]) == ("new", "reused")
    assert cache == second["timing_cache"]["path"] and "timing_trt10.3.0_sm8.6_nvidia-fake-rtx-3000" in cache
    assert open(cache, "rb").read() == b"entry;entry;"
    fake_trt("10.3.0", reject_cache=True)
    third = onnx_to_tensorrt(onnx_file("fp16"), tmp_path / "c.engine", precision="fp16", timing_cache=cache)
    assert third["timing_cache"]["state"].startswith("replaced") and open(cache, "rb").read() == b"entry;"


def test_profiles_must_fit_the_graph(fake_trt, onnx_file, tmp_path):
    fake_trt("10.3.0")
    with pytest.raises(ExportError, match=r"input 'input' is \?x3x64x64; a dynamic input needs a profile"):
        onnx_to_tensorrt(onnx_file("fp16", ("batch",)), tmp_path / "a.engine", precision="fp16")
    wrong = Profile("input", (1, 3, 64, 64), (2, 3, 64, 64), (4, 3, 64, 64))
    with pytest.raises(ExportError, match=r"input 'input' is 1x3x64x64, which the profile 'input' .* does not fit"):
        onnx_to_tensorrt(onnx_file("fp16"), tmp_path / "a.engine", precision="fp16", profile=wrong)


def test_dla_build_with_gpu_fallback_and_its_report(fake_trt, onnx_file, tmp_path):
    trt = fake_trt("10.3.0", dla_cores=2)
    record = onnx_to_tensorrt(onnx_file("fp16"), tmp_path / "a.engine", precision="fp16", dla_core=1)
    assert record["builder_flags"] == ["FP16", "GPU_FALLBACK"] and trt.builds[-1]["dla_core"] == 1
    assert record["dla"]["on_gpu"] == record["dla"]["gpu_layer_types"]["RESIZE"] > 0  # the fake's DLA rejects Resize
    assert any("pytorch_half_pixel" in note for note in record["dla"]["notes"])
    fake_trt("10.3.0", dla_cores=0)
    with pytest.raises(UnsupportedOptionError, match="--dla-core 0: TensorRT 10.3.0 on this machine reports no DLA"):
        onnx_to_tensorrt(onnx_file("fp16"), tmp_path / "b.engine", precision="fp16", dla_core=0)


def test_legacy_int8_calibrator_on_tensorrt_10_only(fake_trt, monkeypatch, onnx_file, tmp_path):
    fake_trt("10.3.0")
    memory = FakeMemory()
    monkeypatch.setattr("u2deploy.runtimes._cuda.cuda_memory", lambda device=0, prefer=None: memory)
    from u2deploy.calibration.trt_legacy import entropy_calibrator

    calibrator = entropy_calibrator([images(2), images(2)], "input", tmp_path / "c.cache")
    assert calibrator.get_batch_size() == 2 and calibrator.read_calibration_cache() is None
    pointers = [calibrator.get_batch(["input"]), calibrator.get_batch(["input"]), calibrator.get_batch(["input"])]
    assert pointers[0] == pointers[1] == [memory.ptrs[0]] and pointers[2] is None
    calibrator.write_calibration_cache(b"TRT-1003-EntropyCalibration2")
    assert calibrator.read_calibration_cache() == b"TRT-1003-EntropyCalibration2"
    record = onnx_to_tensorrt(onnx_file("fp32"), tmp_path / "a.engine", precision="int8", calibration=[images(1)])
    assert record["builder_flags"] == ["INT8", "FP16"] and "IInt8EntropyCalibrator2" in record["build_mode"]
    fake_trt("11.4.1")
    with pytest.raises(UnsupportedOptionError, match="removed implicit INT8 calibration"):
        entropy_calibrator([images(1)], "input")


# -- the backend ------------------------------------------------------------------------------
def test_a_standalone_build_runs_in_runtime_and_matches_the_onnx(fake_trt, onnx_file, tmp_path):
    trt = fake_trt("10.3.0")
    engine = tmp_path / "m.engine"
    onnx_to_tensorrt(onnx_file("fp16"), engine, precision="fp16")
    manifest = json.loads(sidecar_path(engine).read_text())
    assert manifest["spec"]["arch"] == "u2net_test" and manifest["tensorrt"]["precision"] == "fp16"
    batch = images(1)
    with Runtime(engine) as runtime:
        assert runtime.backend == "tensorrt" and runtime.describe()["precision"] == "fp16"
        assert runtime.describe()["layer_precisions"].startswith("ok (")  # the inspector's verdict, read back
        assert "layer precisions: ok" in runtime.summary()
        np.testing.assert_allclose(runtime.infer(batch), onnx_reference(onnx_file("fp16"), batch), atol=1e-6)
        assert runtime.predict(np.zeros((50, 70, 3), np.uint8)).shape == (50, 70)
        assert len(trt.memories) == 1 and len(trt.memories[0].ptrs) == 2  # one buffer per tensor, allocated once


def test_dynamic_batches_run_in_profile_sized_chunks(fake_trt, onnx_file, tmp_path):
    fake_trt("10.3.0")
    engine = tmp_path / "m.engine"
    profile = Profile("input", (2, 3, SIZE, SIZE), (2, 3, SIZE, SIZE), (4, 3, SIZE, SIZE))
    onnx_to_tensorrt(onnx_file("fp16", ("batch",)), engine, precision="fp16", profile=profile)
    with Runtime(engine) as runtime:
        assert runtime.batch_size is None
        engine_object = runtime._backend._engine
        for count, runs in ((3, 1), (1, 1), (4, 1), (9, 3)):  # 1 is padded to the profile's 2; 9 = 4 + 4 + (1+1)
            batch, before = images(count), engine_object._executions
            expected = onnx_reference(onnx_file("fp16", ("batch",)), batch)
            np.testing.assert_allclose(runtime.infer(batch), expected, atol=1e-6)
            assert engine_object._executions - before == runs
        with pytest.raises(UnsupportedOptionError, match="cuda_graph=True needs a static-shape GPU engine, but its "
                                                         "input input has a dynamic profile"):
            Runtime(engine, cuda_graph=True)


def test_a_size_outside_a_dynamic_hw_profile_names_the_profile(fake_trt, onnx_file, tmp_path):
    fake_trt("10.3.0")
    engine = tmp_path / "m.engine"
    profile = Profile("input", (1, 3, 32, 32), (1, 3, SIZE, SIZE), (1, 3, 128, 128))
    onnx_to_tensorrt(onnx_file("fp16", ("hw",)), engine, precision="fp16", profile=profile)
    with Runtime(engine) as runtime:
        assert runtime.infer(np.zeros((1, 3, 96, 128), np.float32)).shape == (1, 1, 96, 128)
        with pytest.raises(InputError, match=r"m.engine: input 'input' has shape 1x3x256x256, outside the engine's "
                                             r"profile \(min 1x3x32x32, opt 1x3x64x64, max 1x3x128x128\); rebuild"):
            runtime.infer(np.zeros((1, 3, 256, 256), np.float32))


def test_cuda_graph_is_captured_once_after_a_warm_up_and_replayed(fake_trt, onnx_file, tmp_path):
    trt = fake_trt("10.3.0")
    engine = tmp_path / "m.engine"
    onnx_to_tensorrt(onnx_file("fp16"), engine, precision="fp16")
    batch = images(1)
    with Runtime(engine, cuda_graph=True) as runtime:
        outputs = [runtime.infer(batch) for _ in range(3)]
        memory = trt.memories[-1]
        assert (memory.captures, memory.replays) == (1, 2)
    for output in outputs[1:]:
        np.testing.assert_array_equal(output, outputs[0])


def test_an_engine_from_another_machine_is_refused_before_deserializing(fake_trt, fake_gpu, onnx_file, tmp_path):
    fake_trt("10.3.0")
    engine = tmp_path / "m.engine"
    onnx_to_tensorrt(onnx_file("fp16"), engine, precision="fp16")
    fake_trt("10.7.0")
    with pytest.raises(BackendError, match=r"m.engine: this engine cannot run here: it was built with TensorRT 10.3.0, "
                                           r"this machine has TensorRT 10.7.0\. A TensorRT plan runs only with .*; "
                                           r"rebuild it on this machine: u2deploy export MODEL --fmt trt"):
        Runtime(engine)
    fake_trt("10.3.0")
    fake_gpu(hardware.GpuInfo(0, "NVIDIA GeForce RTX 4090", "8.9", 24.0))
    with pytest.raises(BackendError, match=r"built for compute capability 8.6 \(NVIDIA Fake RTX 3000\), this GPU is "
                                           r"compute capability 8.9 \(NVIDIA GeForce RTX 4090\)"):
        Runtime(engine)
    with Runtime(engine, check_host=False) as runtime:  # the user's call; TensorRT itself decides then
        assert runtime.infer(images(1)).shape == (1, 1, SIZE, SIZE)


def test_a_plan_tensorrt_cannot_load_says_why_and_how_to_rebuild(fake_trt, onnx_file, tmp_path):
    fake_trt("10.3.0")
    not_a_plan = tmp_path / "renamed.engine"
    not_a_plan.write_bytes(onnx_file("fp16").read_bytes())
    with pytest.raises(BackendError, match=r"renamed.engine: TensorRT 10.3.0 cannot load it \(1: \[runtime.cpp::"
                                           r"parsePlan::314\] Error Code 1: Serialization .*\); a plan runs only with "
                                           r"the TensorRT version and GPU it was built for; rebuild it here: "
                                           r"u2deploy export MODEL"):
        Runtime(not_a_plan)


def test_tensorrt_older_than_10_is_refused(fake_trt, tmp_path):
    fake_trt("8.6.1")
    (tmp_path / "m.engine").write_bytes(b"plan")
    with pytest.raises(MissingDependencyError, match="TensorRT 8.6.1 is too old"):
        Runtime(tmp_path / "m.engine")

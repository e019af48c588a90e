"""Real TensorRT on a real NVIDIA GPU: the tiny model built, checked and run for real.

Skipped, with the reason, where TensorRT, a GPU or a CUDA memory provider is missing (our machines
and CI). On a GPU machine: `pytest tests/trt/test_tensorrt_gpu.py`; `benchmarks/gpu_check.py` does
the same on the real U2-Net with timings and a report.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from u2deploy import hardware
from u2deploy._deps import require
from u2deploy.errors import BackendError, MissingDependencyError
from u2deploy.runtimes.base import sidecar_path
from u2deploy.runtimes.runtime import Runtime

SIZE = 64


def _skip_reason() -> str | None:
    try:
        require("tensorrt", "the TensorRT tests")
    except MissingDependencyError as exc:
        return str(exc)
    devices, why = hardware.cuda_devices()
    if not devices:
        return f"no CUDA device: {why}"
    from u2deploy.runtimes._cuda import provider_name

    if provider_name() is None:
        return "the TensorRT backend needs cuda-python or a CUDA build of PyTorch (pip install cuda-python)"
    return None


REASON = _skip_reason()
pytestmark = [pytest.mark.tensorrt, pytest.mark.skipif(REASON is not None, reason=str(REASON))]


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_real_engine_passes_the_parity_gate_and_the_layer_check(tiny_export, precision):
    result = tiny_export("trt", precision=precision)
    record = json.loads(sidecar_path(result.path).read_text())["tensorrt"]
    assert result.parity.passed and record["layers"]["verdict"] in ("ok", "not judged for fp32")
    assert record["built_on"]["compute_capability"] and record["strongly_typed"]
    with Runtime(result.path) as runtime:
        assert runtime.backend == "tensorrt" and runtime.describe()["device"] == "cuda:0"


def test_real_cuda_graph_replay_matches_plain_execution(tiny_export):
    path = tiny_export("trt", precision="fp16").path
    batch = np.random.default_rng(0).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)
    with Runtime(path) as plain, Runtime(path, cuda_graph=True) as graph:
        expected = plain.infer(batch)
        for _ in range(3):
            np.testing.assert_allclose(graph.infer(batch), expected, atol=1e-6)


def test_real_dynamic_batch_engine_runs_any_batch(tiny_export):
    path = tiny_export("trt", precision="fp16", dynamic=("batch",), profile=(1, 2, 4)).path
    batch = np.random.default_rng(1).standard_normal((5, 3, SIZE, SIZE)).astype(np.float32)
    with Runtime(path) as runtime:
        whole = runtime.infer(batch)  # 4 + 1
        singles = np.concatenate([runtime.infer(batch[i:i + 1]) for i in range(5)])
    np.testing.assert_allclose(whole, singles, atol=2e-3)


def test_real_tensorrt_refuses_a_file_that_is_not_a_plan(tmp_path):
    engine = tmp_path / "junk.engine"
    engine.write_bytes(b"\0" * 256)
    with pytest.raises(BackendError, match="junk.engine: TensorRT .* cannot load it"):
        Runtime(engine)

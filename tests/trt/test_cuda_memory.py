"""The cuda-python memory provider's own logic, against a recording stand-in for `cuda.bindings.runtime`.

cuda-python returns (error, *values) from every call; these tests check that u2deploy unpacks that
convention, turns an error into one BackendError line, and issues capture/instantiate/launch in
order. Whether real CUDA accepts the calls is for test_tensorrt_gpu.py and gpu_check.py.
"""

from __future__ import annotations

import enum
from types import SimpleNamespace

import numpy as np
import pytest

from u2deploy.errors import BackendError
from u2deploy.runtimes._cuda import CudaPythonMemory


class Error(enum.Enum):
    cudaSuccess = 0
    cudaErrorMemoryAllocation = 2


def fake_cudart(calls: list, fail: str | None = None) -> SimpleNamespace:
    def call(name, *values):
        def function(*args):
            calls.append((name, args))
            return (Error.cudaErrorMemoryAllocation if name == fail else Error.cudaSuccess, *values)
        return function

    names = {"cudaSetDevice": (), "cudaStreamCreate": (42,), "cudaMalloc": (0x1000,), "cudaMemcpyAsync": (),
             "cudaStreamSynchronize": (), "cudaStreamBeginCapture": (), "cudaStreamEndCapture": ("graph",),
             "cudaGraphInstantiate": ("exec",), "cudaGraphLaunch": (), "cudaGraphExecDestroy": (), "cudaFree": (),
             "cudaGraphDestroy": (),
             "cudaStreamDestroy": ()}
    runtime = SimpleNamespace(**{name: call(name, *values) for name, values in names.items()})
    runtime.cudaError_t = Error
    runtime.cudaGetErrorString = lambda error: (Error.cudaSuccess, b"out of memory")
    runtime.cudaMemcpyKind = SimpleNamespace(cudaMemcpyHostToDevice="H2D", cudaMemcpyDeviceToHost="D2H")
    runtime.cudaStreamCaptureMode = SimpleNamespace(cudaStreamCaptureModeGlobal="global")
    return runtime


def test_calls_unpack_results_and_keep_order():
    calls: list = []
    memory = CudaPythonMemory(fake_cudart(calls), device=1)
    assert memory.stream_handle == 42 and memory.alloc(16) == 0x1000
    array = np.ones(4, np.float32)
    memory.upload(0x1000, array)
    memory.download(array, 0x1000)
    replay = memory.capture(lambda: calls.append(("enqueue", ())))
    replay()
    memory.close()
    assert [name for name, _ in calls] == [
        "cudaSetDevice", "cudaStreamCreate", "cudaMalloc", "cudaMemcpyAsync", "cudaMemcpyAsync",
        "cudaStreamBeginCapture", "enqueue", "cudaStreamEndCapture", "cudaGraphInstantiate", "cudaGraphDestroy",
        "cudaGraphLaunch", "cudaGraphExecDestroy", "cudaFree", "cudaStreamDestroy"]  # fmt: skip
    assert calls[0][1] == (1,) and calls[3][1] == (0x1000, array.ctypes.data, 16, "H2D", 42)


def test_a_cuda_error_is_one_backend_error():
    with pytest.raises(BackendError, match="CUDA call cudaMalloc failed: out of memory"):
        CudaPythonMemory(fake_cudart([], fail="cudaMalloc"), device=0).alloc(1 << 40)


def test_an_error_inside_a_capture_is_the_one_reported():
    """The enqueue's error surfaces; ending the now-invalid capture must not replace it with its own."""
    calls: list = []
    memory = CudaPythonMemory(fake_cudart(calls, fail="cudaStreamEndCapture"), device=0)

    def enqueue() -> None:
        raise BackendError("execute_async_v3 failed: the original error")

    with pytest.raises(BackendError, match="the original error"):
        memory.capture(enqueue)
    assert [name for name, _ in calls][-2:] == ["cudaStreamBeginCapture", "cudaStreamEndCapture"]


def test_close_destroys_captured_graphs():
    calls: list = []
    memory = CudaPythonMemory(fake_cudart(calls), device=0)
    memory.capture(lambda: None)
    memory.capture(lambda: None)
    memory.close()
    names = [name for name, _ in calls]
    assert names.count("cudaGraphDestroy") == 2 and names.count("cudaGraphExecDestroy") == 2


def test_torch_graphs_are_reset_on_close():
    from u2deploy.runtimes._cuda import TorchMemory

    reset: list = []
    memory = TorchMemory.__new__(TorchMemory)  # no CUDA here: only close() is under test
    memory._graphs, memory._blocks = [SimpleNamespace(reset=lambda: reset.append(1))] * 2, {}
    memory.close()
    assert reset == [1, 1] and memory._graphs == []


def _patch_cudart(monkeypatch, count_result):
    from u2deploy.runtimes import _cuda

    runtime = fake_cudart([])
    runtime.cudaGetDeviceCount = lambda: count_result
    monkeypatch.setattr(_cuda, "available", lambda name: name == "cuda.bindings")
    monkeypatch.setattr(_cuda, "_cudart", lambda: runtime)
    monkeypatch.setattr(_cuda, "_torch_has_cuda", lambda: False)
    return _cuda


def test_provider_is_chosen_by_a_cuda_call_that_succeeds(monkeypatch):
    cuda = _patch_cudart(monkeypatch, (Error.cudaSuccess, 1))
    assert cuda.provider_name() == "cuda-python" and cuda.cuda_python_problem() is None


def test_importable_cuda_python_that_cannot_reach_the_driver_is_not_chosen(monkeypatch):
    from u2deploy.errors import MissingDependencyError

    cuda = _patch_cudart(monkeypatch, (Error.cudaErrorMemoryAllocation, 0))  # any error code stands for the driver's
    assert cuda.provider_name() is None
    assert cuda.cuda_python_problem() == "cuda-python cannot use the driver (cudaErrorMemoryAllocation)"
    with pytest.raises(MissingDependencyError, match=r"\(cuda-python cannot use the driver"):
        cuda.cuda_memory(0)
    cuda = _patch_cudart(monkeypatch, (Error.cudaSuccess, 0))
    assert cuda.provider_name() is None and cuda.cuda_python_problem() == "cuda-python sees no CUDA device"

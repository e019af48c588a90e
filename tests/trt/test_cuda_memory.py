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
        "cudaStreamBeginCapture", "enqueue", "cudaStreamEndCapture", "cudaGraphInstantiate", "cudaGraphLaunch",
        "cudaGraphExecDestroy", "cudaFree", "cudaStreamDestroy"]  # fmt: skip
    assert calls[0][1] == (1,) and calls[3][1] == (0x1000, array.ctypes.data, 16, "H2D", 42)


def test_a_cuda_error_is_one_backend_error():
    with pytest.raises(BackendError, match="CUDA call cudaMalloc failed: out of memory"):
        CudaPythonMemory(fake_cudart([], fail="cudaMalloc"), device=0).alloc(1 << 40)

"""Device memory, one stream and CUDA graphs for the TensorRT backend, through cuda-python or PyTorch.

TensorRT takes raw device pointers and a stream handle; something else must provide them. The
`tensorrt` extra installs cuda-python (NVIDIA's samples use it since PyCUDA was dropped), which is
light and preferred; a CUDA build of PyTorch, often present on desktops and in NVIDIA's Jetson
wheels, works too. There is no pycuda dependency (STYLE.md guideline 3).

Both providers expose the same five operations on plain integer pointers: `alloc`, `upload`,
`download`, `synchronize` and `capture` (record one enqueue into a CUDA graph and return a replay
function). Copies are issued on the provider's stream, so they are ordered with the engine's work.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._deps import available
from ..errors import BackendError, MissingDependencyError

__all__ = ["PROVIDERS", "provider_name", "cuda_memory", "cuda_python_problem"]

PROVIDERS = ("cuda-python", "torch")
_FIX = ("fix: pip install cuda-python (the 'tensorrt' extra includes it), or install a CUDA build of PyTorch "
        "(on Jetson, NVIDIA's JetPack wheel)")


def _cudart() -> Any:
    try:
        from cuda.bindings import runtime  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart as runtime  # older cuda-python
    return runtime


def _torch_has_cuda() -> bool:
    if not available("torch"):
        return False
    import torch

    return bool(torch.cuda.is_available())


def cuda_python_problem() -> str | None:
    """Why cuda-python cannot reach a GPU here, from a real call (cudaGetDeviceCount), or None when it can.

    An import that succeeds proves nothing: a cuda-python built for CUDA 13 imports on a CUDA 12
    driver and fails at the first call (cudaErrorInsufficientDriver).
    """
    if not (available("cuda.bindings") or available("cuda.cudart")):
        return "cuda-python is not installed"
    try:
        runtime = _cudart()
        error, count = runtime.cudaGetDeviceCount()
    except Exception as exc:  # noqa: BLE001 - a broken install raises anything from ImportError to RuntimeError
        return f"cuda-python fails ({type(exc).__name__}: {str(exc)[:120]})"
    if error != runtime.cudaError_t.cudaSuccess:
        return f"cuda-python cannot use the driver ({getattr(error, 'name', error)})"
    return None if count > 0 else "cuda-python sees no CUDA device"


def provider_name(prefer: str | None = None) -> str | None:
    """The provider `cuda_memory` would use: `prefer` if usable, else cuda-python, else a CUDA PyTorch.

    Usable means a real CUDA call succeeded (`cuda_python_problem`, `torch.cuda.is_available`).
    """
    for name in [prefer] if prefer else PROVIDERS:
        if name == "cuda-python" and cuda_python_problem() is None:
            return name
        if name == "torch" and _torch_has_cuda():
            return name
    return None


def cuda_memory(device: int = 0, prefer: str | None = None) -> Any:
    """A `CudaPythonMemory` or `TorchMemory` bound to GPU `device`, or one clear error."""
    if prefer is not None and prefer not in PROVIDERS:
        raise BackendError(f"memory='{prefer}' is not known; use {' or '.join(PROVIDERS)}")
    name = provider_name(prefer)
    if name is None:
        wanted = {"torch": "a CUDA build of PyTorch", "cuda-python": "cuda-python"}.get(
            prefer or "", "cuda-python or a CUDA build of PyTorch")
        why = cuda_python_problem() if prefer in (None, "cuda-python") else None
        why = None if why == "cuda-python is not installed" else why  # installed but unusable is worth saying
        raise MissingDependencyError(f"the TensorRT backend needs {wanted} to put data on the GPU"
                                     f"{f' ({why})' if why else ''}; {_FIX}")
    if name == "torch":
        import torch

        return TorchMemory(torch, device)
    return CudaPythonMemory(_cudart(), device)


class CudaPythonMemory:
    """cuda-python's runtime API: every call returns (error, *values)."""

    name = "cuda-python"

    def __init__(self, cudart: Any, device: int) -> None:
        self._rt = cudart
        self._ptrs: list[int] = []
        self._check(cudart.cudaSetDevice(device), "cudaSetDevice")
        self._stream = self._check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._execs: list[Any] = []

    def _check(self, result: Any, call: str) -> Any:
        error, *values = result if isinstance(result, tuple) else (result,)
        if error != self._rt.cudaError_t.cudaSuccess:
            text = self._rt.cudaGetErrorString(error)[1]
            raise BackendError(f"CUDA call {call} failed: {text.decode() if isinstance(text, bytes) else text}")
        return values[0] if len(values) == 1 else tuple(values) or None

    @property
    def stream_handle(self) -> int:
        return int(self._stream)

    def alloc(self, nbytes: int) -> int:
        ptr = int(self._check(self._rt.cudaMalloc(max(int(nbytes), 1)), "cudaMalloc"))
        self._ptrs.append(ptr)
        return ptr

    def _copy(self, dst: int, src: int, nbytes: int, kind: Any) -> None:
        self._check(self._rt.cudaMemcpyAsync(dst, src, nbytes, kind, self._stream), "cudaMemcpyAsync")

    def upload(self, ptr: int, array: np.ndarray) -> None:
        self._copy(ptr, array.ctypes.data, array.nbytes, self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice)

    def download(self, array: np.ndarray, ptr: int) -> None:
        self._copy(array.ctypes.data, ptr, array.nbytes, self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost)

    def synchronize(self) -> None:
        self._check(self._rt.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")

    def capture(self, enqueue: Callable[[], None]) -> Callable[[], None]:
        mode = self._rt.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal
        self._check(self._rt.cudaStreamBeginCapture(self._stream, mode), "cudaStreamBeginCapture")
        try:
            enqueue()
        except BaseException:
            self._abandon_capture()  # the enqueue's error is the one to report, not the capture's
            raise
        graph = self._check(self._rt.cudaStreamEndCapture(self._stream), "cudaStreamEndCapture")
        try:
            executable = self._check(self._rt.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
        finally:
            self._rt.cudaGraphDestroy(graph)  # the executable graph is independent of the captured one
        self._execs.append(executable)
        return lambda: self._check(self._rt.cudaGraphLaunch(executable, self._stream), "cudaGraphLaunch")

    def _abandon_capture(self) -> None:
        """End a capture that failed part-way and free what it recorded, ignoring errors (the stream is invalidated)."""
        error, *values = self._rt.cudaStreamEndCapture(self._stream)
        if error == self._rt.cudaError_t.cudaSuccess and values and values[0] is not None:
            self._rt.cudaGraphDestroy(values[0])

    def close(self) -> None:
        for executable in self._execs:
            self._rt.cudaGraphExecDestroy(executable)
        for ptr in self._ptrs:
            self._rt.cudaFree(ptr)
        self._rt.cudaStreamDestroy(self._stream)
        self._ptrs, self._execs = [], []


class TorchMemory:
    """PyTorch CUDA tensors as raw buffers (uint8), and `torch.cuda.CUDAGraph` for capture."""

    name = "torch"

    def __init__(self, torch: Any, device: int) -> None:
        self._torch = torch
        self._device = torch.device("cuda", device)
        torch.cuda.set_device(self._device)  # TensorRT uses the thread's current device
        self._stream = torch.cuda.Stream(device=self._device)
        self._blocks: dict[int, Any] = {}
        self._graphs: list[Any] = []

    @property
    def stream_handle(self) -> int:
        return int(self._stream.cuda_stream)

    def alloc(self, nbytes: int) -> int:
        block = self._torch.empty(max(int(nbytes), 1), dtype=self._torch.uint8, device=self._device)
        self._blocks[block.data_ptr()] = block
        return block.data_ptr()

    def _bytes(self, array: np.ndarray) -> Any:
        return self._torch.from_numpy(array.reshape(-1).view(np.uint8))

    def upload(self, ptr: int, array: np.ndarray) -> None:
        source = self._bytes(np.ascontiguousarray(array))
        with self._torch.cuda.stream(self._stream):
            self._blocks[ptr][: source.numel()].copy_(source, non_blocking=True)

    def download(self, array: np.ndarray, ptr: int) -> None:
        target = self._bytes(array)
        with self._torch.cuda.stream(self._stream):
            target.copy_(self._blocks[ptr][: target.numel()])  # blocking: ordered after the enqueue on this stream

    def synchronize(self) -> None:
        self._stream.synchronize()

    def capture(self, enqueue: Callable[[], None]) -> Callable[[], None]:
        graph = self._torch.cuda.CUDAGraph()
        with self._torch.cuda.graph(graph, stream=self._stream):
            enqueue()
        self._graphs.append(graph)

        def replay() -> None:
            with self._torch.cuda.stream(self._stream):
                graph.replay()

        return replay

    def close(self) -> None:
        for graph in self._graphs:
            graph.reset()  # frees the graph and its private memory pool now, not at garbage collection
        self._blocks, self._graphs = {}, []

"""TensorRT backend: serialized engines (.engine/.plan) on a CUDA GPU or a Jetson DLA core.

Name-based I/O (TensorRT 10/11): every tensor is bound by name to a device buffer allocated once,
at the largest shape the optimization profile allows, and `execute_async_v3` runs on one CUDA
stream. Before deserializing, the engine's manifest (written by `u2deploy export --fmt trt`) is
compared with this machine, so an engine built elsewhere fails with what differs and the command
that rebuilds it, rather than with TensorRT's serialization assertion.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .. import hardware
from .._deps import require
from ..errors import BackendError, UnsupportedOptionError
from ._cuda import cuda_memory
from .base import BaseBackend, TensorInfo, read_sidecar, spec_from_metadata
from .trt_support import (
    Profile,
    batch_chunks,
    capturing_logger,
    check_host,
    detect_features,
    parse_device,
    rebuild_command,
    require_supported,
)

if TYPE_CHECKING:  # NVIDIA's API, for mypy with tensorrt-stubs (tests/trt/test_typecheck.py); never imported
    import tensorrt as trt_api

__all__ = ["TrtBackend"]


class TrtBackend(BaseBackend):
    """Options: `cuda_graph` (replay one captured CUDA graph per call; static-shape GPU engines only),
    `memory` ('cuda-python' or 'torch': who owns the device buffers; default: whichever is installed),
    `check_host` (False skips the manifest-vs-machine check). `device`: 'cuda', 'cuda:N' or 'dla:N'.

    Not thread-safe (one execution context and one set of buffers): `Runtime` serialises calls.
    """

    name: ClassVar[str] = "tensorrt"
    suffixes: ClassVar[tuple[str, ...]] = (".engine", ".plan")
    thread_safe: ClassVar[bool] = False

    def _load(self) -> None:
        trt = require("tensorrt", "the TensorRT backend (.engine/.plan files)")
        self._features = detect_features(trt)
        require_supported(self._features)
        gpu, dla_core = parse_device(self.device)
        manifest = read_sidecar(self.path)
        record = (manifest or {}).get("tensorrt") or {}
        self._layers = record.get("layers") or {}  # the inspector's verdict at build time (export/trt_checks.py)
        dla_core = record.get("dla_core") if dla_core is None else dla_core
        self._logger = capturing_logger(trt)
        self._runtime: trt_api.Runtime = trt.Runtime(self._logger)
        if record and self.options.get("check_host", True):
            host = {"tensorrt": self._features.version, "host": hardware.host_record(gpu),
                    "dla_cores": getattr(self._runtime, "num_DLA_cores", None)}
            for note in check_host(self.path, record, host, manifest):
                warnings.warn(f"{self.path.name}: {note}", RuntimeWarning, stacklevel=3)
        self._memory = cuda_memory(gpu, self.options.get("memory"))
        self._engine: trt_api.ICudaEngine = self._deserialize(dla_core, manifest)
        self._context: trt_api.IExecutionContext = self._engine.create_execution_context()
        if self._context is None:
            raise BackendError(f"{self.path.name}: TensorRT could not create an execution context "
                               f"({self._logger.error_text() or 'out of GPU memory?'})")
        self._fill_io(trt, manifest)
        self._use_graph, self._graph, self._calls = self._check_graph_option(dla_core), None, 0
        self._allocate()
        self.device = f"dla:{dla_core}" if dla_core is not None else f"cuda:{gpu}"

    def _deserialize(self, dla_core: int | None, manifest: dict[str, Any] | None) -> trt_api.ICudaEngine:
        if dla_core is not None:
            self._runtime.DLA_core = dla_core  # before deserializing (DEPLOY_APIS section 4)
        engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:  # TensorRT returns None and logs why (wrong version, GPU or not a plan)
            raise BackendError(
                f"{self.path.name}: TensorRT {self._features.version} cannot load it "
                f"({self._logger.error_text() or 'no error logged'}); a plan runs only with the TensorRT version and "
                f"GPU it was built for; rebuild it here: {rebuild_command(manifest, self.path)}")
        return engine

    def _fill_io(self, trt: Any, manifest: dict[str, Any] | None) -> None:
        engine, self._profiles, self._dtypes = self._engine, {}, {}
        self.inputs, self.outputs = [], []
        for name in (engine.get_tensor_name(i) for i in range(engine.num_io_tensors)):
            shape = tuple(int(d) for d in engine.get_tensor_shape(name))
            self._dtypes[name] = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            info = TensorInfo(name, tuple(None if d < 0 else d for d in shape), self._dtypes[name].name)
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self.inputs.append(info)
                low, opt, high = engine.get_tensor_profile_shape(name, 0) if -1 in shape else (shape,) * 3
                self._profiles[name] = Profile(name, *(tuple(int(d) for d in s) for s in (low, opt, high)))
            else:
                self.outputs.append(info)
        self._check_u2net_io()
        self.spec = spec_from_metadata(self.path, None, self.inputs[0], [t.name for t in self.outputs])
        self.precision = ((manifest or {}).get("artifact") or {}).get("precision") or self.spec.extra.get(
            "precision", "unknown")

    def _allocate(self) -> None:
        """One device buffer per tensor, sized for the profile's largest shape, bound once by name."""
        for name, profile in self._profiles.items():
            if not profile.is_static:
                self._context.set_input_shape(name, profile.max)
        self._ptrs = {}
        for info in (*self.inputs, *self.outputs):
            shape = tuple(self._context.get_tensor_shape(info.name))
            self._ptrs[info.name] = self._memory.alloc(int(np.prod(shape)) * self._dtypes[info.name].itemsize)
            self._context.set_tensor_address(info.name, self._ptrs[info.name])
        self._shapes = {name: profile.max for name, profile in self._profiles.items()}

    def _check_graph_option(self, dla_core: int | None) -> bool:
        if not self.options.get("cuda_graph"):
            return False
        dynamic = [p.name for p in self._profiles.values() if not p.is_static]
        if dynamic or dla_core is not None:
            why = f"its input {dynamic[0]} has a dynamic profile" if dynamic else "it runs on DLA"
            raise UnsupportedOptionError(f"{self.path.name}: cuda_graph=True needs a static-shape GPU engine, "
                                         f"but {why}")
        return True

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Batches beyond the profile's batch range run in chunks; other dimensions must fit the profile."""
        (name, array), = feeds.items()  # one image input (checked at load)
        profile, parts = self._profiles[name], []
        for start, stop, pad in batch_chunks(len(array), profile.min[0], profile.max[0]):
            chunk = array[start:stop]
            if pad:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
            parts.append({k: v[: stop - start] for k, v in self._run(name, chunk).items()})
        return parts[0] if len(parts) == 1 else {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _run(self, name: str, array: np.ndarray) -> dict[str, np.ndarray]:
        self._profiles[name].check(self.path.name, array.shape)
        if array.shape != self._shapes[name]:
            if not self._context.set_input_shape(name, array.shape):
                raise BackendError(f"{self.path.name}: TensorRT refused input shape {array.shape} "
                                   f"({self._logger.error_text() or 'no error logged'})")
            self._shapes[name] = array.shape
        self._memory.upload(self._ptrs[name], array)
        self._enqueue()
        results = {}
        for info in self.outputs:
            results[info.name] = np.empty(tuple(self._context.get_tensor_shape(info.name)), self._dtypes[info.name])
            self._memory.download(results[info.name], self._ptrs[info.name])
        self._memory.synchronize()
        return results

    def _enqueue(self) -> None:
        """Run the engine; with `cuda_graph`, capture after one warm-up call and replay from then on."""
        if self._use_graph and self._graph is None and self._calls:
            self._graph = self._memory.capture(self._execute)
        self._calls += 1
        if self._graph is not None:
            self._graph()
        else:
            self._execute()

    def _execute(self) -> None:
        if not self._context.execute_async_v3(self._memory.stream_handle):
            raise BackendError(f"{self.path.name}: TensorRT failed to run it "
                               f"({self._logger.error_text() or 'no error logged'})")

    def close(self) -> None:
        memory, self._memory = getattr(self, "_memory", None), None
        # TensorRT objects go before the buffers they point at
        self._graph = self._context = self._engine = None  # type: ignore[assignment]
        if memory is not None:
            memory.close()
        super().close()

    def describe(self) -> dict[str, Any]:
        """Adds the engine inspector's verdict recorded at build: layers by precision and whether it was seen."""
        info = super().describe()
        layers = self._layers
        by_precision = ", ".join(f"{k} {v}" for k, v in (layers.get("by_precision") or {}).items())
        info["layer_precisions"] = (f"{layers.get('verdict', 'not recorded')}" + (f" ({by_precision})" if by_precision
                                                                                     else ""))  # fmt: skip
        return info

    def _versions(self) -> dict[str, str]:
        return {"tensorrt": self._features.version, "memory": self._memory.name if self._memory else ""}

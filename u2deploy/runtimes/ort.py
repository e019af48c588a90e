"""ONNX Runtime backend: TensorRT / CUDA execution providers when present, else CPU."""

from __future__ import annotations

import warnings
from typing import ClassVar

import numpy as np

from .._deps import require
from ..errors import BackendError, ModelLoadError, UnsupportedOptionError
from .base import BaseBackend, TensorInfo, spec_from_metadata
from ..spec import METADATA_KEY

__all__ = ["OrtBackend", "providers_for"]

_GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
_OPT_LEVELS = {"all": "ORT_ENABLE_ALL", "extended": "ORT_ENABLE_EXTENDED", "basic": "ORT_ENABLE_BASIC",
               "disable": "ORT_DISABLE_ALL"}  # fmt: skip


def providers_for(device: str | None, installed: list[str]) -> list[str]:
    """Execution providers to ask for, best first. `None`/'auto' takes any GPU provider installed."""
    if device in (None, "auto"):
        return [p for p in _GPU_PROVIDERS if p in installed] + ["CPUExecutionProvider"]
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device in ("cuda", "gpu") or device.startswith("cuda:"):
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device in ("tensorrt", "trt"):
        return ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    raise UnsupportedOptionError(f"onnxruntime device '{device}' is not known; use cpu, cuda, tensorrt or auto")


class OrtBackend(BaseBackend):
    """Options: `threads` (intra-op), `graph_optimization` ('all', 'extended', 'basic', 'disable';
    'disable' computes Q/DQ graphs literally, the closest CPU proxy for an exact INT8 engine),
    `strict` (fail instead of falling back to CPU when a GPU provider was asked for)."""

    name: ClassVar[str] = "onnxruntime"
    suffixes: ClassVar[tuple[str, ...]] = (".onnx",)
    thread_safe: ClassVar[bool] = True  # InferenceSession.run may be called concurrently

    def _load(self) -> None:
        ort = require("onnxruntime", "the ONNX Runtime backend")
        wanted = providers_for(self.device, ort.get_available_providers())
        installed = set(ort.get_available_providers())
        missing = [p for p in wanted if p not in installed]
        if missing and self.options.get("strict"):
            raise BackendError(f"{self.path.name}: execution provider(s) {', '.join(missing)} not available in this "
                               "onnxruntime; install onnxruntime-gpu with a matching CUDA, or use device='cpu'")
        self._session = self._create_session(ort, [p for p in wanted if p in installed])
        self._check_fallback(wanted)
        self._fill_io()
        self._ort = ort

    def _create_session(self, ort, providers: list[str]):
        options = ort.SessionOptions()
        if self.options.get("threads"):
            options.intra_op_num_threads = int(self.options["threads"])
        level = self.options.get("graph_optimization", "all")
        if level not in _OPT_LEVELS:
            raise UnsupportedOptionError(f"graph_optimization '{level}' unknown; use {', '.join(_OPT_LEVELS)}")
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _OPT_LEVELS[level])
        options.log_severity_level = 3
        try:
            return ort.InferenceSession(str(self.path), sess_options=options, providers=providers)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types
            message = str(exc).strip().splitlines()[0][:300]
            raise ModelLoadError(f"{self.path}: onnxruntime cannot load it ({message})") from None

    def _check_fallback(self, wanted: list[str]) -> None:
        active = self._session.get_providers()
        asked_gpu = [p for p in wanted if p in _GPU_PROVIDERS]
        if asked_gpu and not any(p in active for p in asked_gpu):
            message = f"{self.path.name}: {', '.join(asked_gpu)} could not be used; running on {', '.join(active)}"
            if self.options.get("strict"):
                raise BackendError(message + " (strict=True)")
            if self.device not in (None, "auto"):
                warnings.warn(message, RuntimeWarning, stacklevel=3)
        self.device = "cuda" if any(p in active for p in _GPU_PROVIDERS) else "cpu"
        self.providers = active

    def _fill_io(self) -> None:
        def info(arg) -> TensorInfo:
            shape = tuple(d if isinstance(d, int) else None for d in arg.shape)
            dtype = {"tensor(float)": "float32", "tensor(float16)": "float16"}.get(arg.type, arg.type)
            return TensorInfo(arg.name, shape, dtype)

        self.inputs = [info(a) for a in self._session.get_inputs()]
        self.outputs = [info(a) for a in self._session.get_outputs()]
        if len(self.inputs) != 1 or len(self.inputs[0].shape) != 4:
            raise ModelLoadError(f"{self.path}: expected one NCHW input, found {[t.to_dict() for t in self.inputs]}; "
                                 "this is not a U2-Net export")
        props = self._session.get_modelmeta().custom_metadata_map
        self.spec = spec_from_metadata(self.path, props.get(METADATA_KEY), self.inputs[0], [t.name for t in self.outputs])
        self.precision = props.get("precision", self.spec.extra.get("precision", "fp32"))

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [t.name for t in self.outputs]
        return dict(zip(names, self._session.run(names, feeds)))

    def close(self) -> None:
        self._session = None
        super().close()

    def _versions(self) -> dict[str, str]:
        return {"onnxruntime": self._ort.__version__, "providers": ",".join(self.providers)}

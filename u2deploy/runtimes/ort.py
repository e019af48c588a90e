"""ONNX Runtime backend: TensorRT / CUDA execution providers when present, else CPU."""

from __future__ import annotations

import warnings
from typing import ClassVar

import numpy as np

from .._deps import require
from ..errors import BackendError, ModelLoadError, UnsupportedOptionError, first_line
from ..spec import METADATA_KEY, ModelSpec
from .base import BaseBackend, TensorInfo, read_sidecar, spec_from_metadata
from .settings import resolve_settings

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
    if device in ("cuda", "gpu") or device.startswith("cuda:"):  # cuda:N picks the GPU (see _create_session)
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device in ("tensorrt", "trt"):
        return ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    raise UnsupportedOptionError(f"onnxruntime device '{device}' is not known; use cpu, cuda, tensorrt or auto")


class OrtBackend(BaseBackend):
    """Options: `threads` (intra-op), `graph_optimization` ('all', 'extended', 'basic', 'disable';
    'disable' computes Q/DQ graphs literally, the closest CPU proxy for an exact INT8 engine; by
    default what the artifact's gate ran with, `settings.py`),
    `strict` (fail instead of falling back to CPU when a GPU provider was asked for)."""

    name: ClassVar[str] = "onnxruntime"
    suffixes: ClassVar[tuple[str, ...]] = (".onnx",)
    thread_safe: ClassVar[bool] = True  # InferenceSession.run may be called concurrently

    def _load(self) -> None:
        ort = require("onnxruntime", "the ONNX Runtime backend")
        installed = ort.get_available_providers()
        wanted = providers_for(self.device, installed)
        missing = [p for p in wanted if p not in installed]
        if missing and self.options.get("strict"):
            raise BackendError(f"{self.path.name}: execution provider(s) {', '.join(missing)} not available in this "
                               "onnxruntime; install onnxruntime-gpu with a matching CUDA, or use device='cpu'")
        self.requested_providers = wanted
        self._session = self._verified_session(ort, [p for p in wanted if p in installed])
        self._check_fallback(wanted)
        self._fill_io()
        self._ort = ort

    def _create_session(self, ort, providers: list[str]):
        options = ort.SessionOptions()
        if self.options.get("threads"):
            options.intra_op_num_threads = int(self.options["threads"])
        level = self.settings.values.get("graph_optimization", "all")
        if level not in _OPT_LEVELS:
            raise UnsupportedOptionError(f"graph_optimization '{level}' unknown; use {', '.join(_OPT_LEVELS)}")
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _OPT_LEVELS[level])
        options.log_severity_level = 3
        gpu = {"device_id": self.device.split(":")[1]} if self.device and self.device.startswith("cuda:") else {}
        try:
            return ort.InferenceSession(str(self.path), sess_options=options,
                                        providers=[(p, gpu if p in _GPU_PROVIDERS else {}) for p in providers])
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types
            raise ModelLoadError(f"{self.path}: onnxruntime cannot load it ({first_line(exc, 300)})") from None

    def _check_fallback(self, wanted: list[str]) -> None:
        active = self._session.get_providers()
        asked_gpu = [p for p in wanted if p in _GPU_PROVIDERS]
        if asked_gpu and not any(p in active for p in asked_gpu):
            message = f"{self.path.name}: {', '.join(asked_gpu)} could not be used; running on {', '.join(active)}"
            if self.options.get("strict"):
                raise BackendError(message + " (strict=True)")
            # also under device='auto': a GPU provider that is installed but unusable is a setup problem
            warnings.warn(message, RuntimeWarning, stacklevel=3)
        self.device = {"TensorrtExecutionProvider": "tensorrt", "CUDAExecutionProvider": "cuda"}.get(active[0], "cpu")
        self.providers = active

    def _fill_io(self) -> None:
        def info(arg) -> TensorInfo:
            shape = tuple(d if isinstance(d, int) else None for d in arg.shape)
            dtype = arg.type.removeprefix("tensor(").removesuffix(")")
            dtype = {"float": "float32", "double": "float64"}.get(dtype, dtype)
            return TensorInfo(arg.name, shape, dtype)

        self.inputs = [info(a) for a in self._session.get_inputs()]
        self.outputs = [info(a) for a in self._session.get_outputs()]
        self._check_u2net_io()  # before the spec is read from a graph that may not have one image input
        props = self._session.get_modelmeta().custom_metadata_map
        self.spec = spec_from_metadata(self.path, props.get(METADATA_KEY), self.inputs[0], [t.name for t in self.outputs])
        self.precision = self.spec.extra.get("precision", "fp32")

    def _verified_session(self, ort, providers: list[str]):
        """A session with the settings the artifact's gate ran with (unless the user gave them).

        The record sits in the model's metadata, which ORT reads only with a session; the session
        is built with the sidecar's copy of the record (or the default) and rebuilt in the rare
        case the embedded record asks for other settings.
        """
        sidecar = read_sidecar(self.path) or {}
        extra = (sidecar.get("spec") or {}).get("extra") or {}
        self.settings = resolve_settings(self.name, extra, self.options, self.path.name)
        session = self._create_session(ort, providers)
        embedded = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if embedded:
            settings = resolve_settings(self.name, ModelSpec.from_json(embedded).extra, self.options, self.path.name)
            if settings.values != self.settings.values:
                self.settings, session = settings, None  # free the first session before building the second
                session = self._create_session(ort, providers)
            self.settings = settings
        return session

    def describe(self) -> dict:
        info = super().describe()
        info["providers"] = list(self.providers)
        info["requested_providers"] = list(self.requested_providers)
        info["fallback"] = self.providers[0] != self.requested_providers[0]
        info["graph_optimization"] = self.settings.values.get("graph_optimization", "all")
        info["settings"] = self.settings.to_dict()
        return info

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [t.name for t in self.outputs]
        return dict(zip(names, self._session.run(names, feeds), strict=True))

    def close(self) -> None:
        self._session = None
        super().close()

    def _versions(self) -> dict[str, str]:
        return {"onnxruntime": self._ort.__version__, "providers": ",".join(self.providers)}

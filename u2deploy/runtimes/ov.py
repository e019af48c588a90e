"""OpenVINO backend: IR (.xml/.bin) or ONNX files on CPU, GPU, NPU or AUTO."""

from __future__ import annotations

import threading
from typing import ClassVar

import numpy as np

from .._deps import require
from ..errors import BackendError, ModelLoadError, UnsupportedOptionError, first_line
from ..spec import METADATA_KEY
from .base import BaseBackend, TensorInfo, spec_from_metadata
from .settings import resolve_settings

__all__ = ["OpenVinoBackend", "cpu_bf16_reason"]

_HINTS = ("latency", "throughput", "cumulative_throughput")
_EXECUTION_MODES = ("performance", "accuracy")
_VIRTUAL_DEVICES = ("AUTO", "MULTI", "HETERO", "BATCH")
#: OpenVINO element type -> the precision names u2deploy reports
_PRECISIONS = {"f32": "fp32", "f16": "fp16", "bf16": "bf16"}
_RANK = {"int8": 0, "bf16": 1, "fp16": 2, "fp32": 3}


def cpu_bf16_reason() -> str | None:
    """Why OpenVINO cannot compute bf16 on this CPU (it then silently runs f32), or None when it can."""
    ov = require("openvino", "bf16 with OpenVINO")
    if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        return None
    return "this CPU has no bf16 instructions (AVX512_BF16 or AMX)"


class OpenVinoBackend(BaseBackend):
    """Options: `hint` ('latency', 'throughput', 'cumulative_throughput'), `inference_precision`
    ('f32', 'f16', 'bf16') and `execution_mode` ('performance', 'accuracy'), both by default what
    the artifact's gate ran with (`settings.py`), `threads`, `cache_dir` (compiled-model cache).

    Thread safety: each thread gets its own InferRequest, so `infer` may be called concurrently.
    """

    name: ClassVar[str] = "openvino"
    suffixes: ClassVar[tuple[str, ...]] = (".xml",)
    thread_safe: ClassVar[bool] = True

    def _load(self) -> None:
        ov = require("openvino", "the OpenVINO backend")
        core = ov.Core()
        self.device = self._check_device((self.device or "CPU").upper(), core.available_devices)
        try:
            model = core.read_model(str(self.path))
        except Exception as exc:  # openvino raises RuntimeError subclasses with long texts
            raise ModelLoadError(f"{self.path}: OpenVINO cannot read it ({first_line(exc, 300)})") from None
        self._fill_io(model)
        try:
            self._compiled = core.compile_model(model, self.device, self._config())
        except RuntimeError as exc:
            message = first_line(exc, 300)
            raise BackendError(f"{self.path}: OpenVINO cannot compile it for {self.device} ({message})") from None
        self._local = threading.local()
        self._ov = ov
        self.precision = self._engine_precision()

    @staticmethod
    def _check_device(device: str, available: list[str]) -> str:
        """'GPU' matches 'GPU.0'; AUTO/MULTI/HETERO (with or without ':GPU,CPU') are always accepted."""
        if device.split(":")[0] in _VIRTUAL_DEVICES:
            return device
        if any(d == device or d.startswith(device + ".") for d in available):
            return device
        raise BackendError(f"OpenVINO device '{device}' not found; this machine has {', '.join(available)} "
                           "(or use AUTO)")

    def _config(self) -> dict[str, str]:
        config = {}
        hint = self.options.get("hint", "latency")
        if hint not in _HINTS:
            raise UnsupportedOptionError(f"OpenVINO hint '{hint}' unknown; use {', '.join(_HINTS)}")
        config["PERFORMANCE_HINT"] = hint.upper()
        settings = self.settings.values
        if settings.get("inference_precision"):
            config["INFERENCE_PRECISION_HINT"] = settings["inference_precision"]
        mode = settings.get("execution_mode")
        if mode is not None and mode not in _EXECUTION_MODES:
            raise UnsupportedOptionError(f"OpenVINO execution_mode '{mode}' unknown; use {', '.join(_EXECUTION_MODES)}")
        if mode:
            config["EXECUTION_MODE_HINT"] = mode.upper()
        if self.options.get("threads"):
            config["INFERENCE_NUM_THREADS"] = str(int(self.options["threads"]))
        if self.options.get("cache_dir"):
            config["CACHE_DIR"] = str(self.options["cache_dir"])
        return config

    def _fill_io(self, model) -> None:
        def info(port) -> TensorInfo:
            shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
            return TensorInfo(port.get_any_name(), shape, port.get_element_type().to_dtype().name)

        self.inputs = [info(p) for p in model.inputs]
        self.outputs = [info(p) for p in model.outputs]
        self._check_u2net_io()  # before the spec is read from a graph that may not have one image input
        embedded = model.get_rt_info([METADATA_KEY]).astype(str) if model.has_rt_info([METADATA_KEY]) else None
        self.spec = spec_from_metadata(self.path, embedded, self.inputs[0], [t.name for t in self.outputs])
        self.settings = resolve_settings(self.name, self.spec.extra, self.options, self.path.name)

    def _engine_precision(self) -> str:
        """The narrower of what the weights hold and what the compiled model computes in (read back from it).

        An fp32 IR run in bf16 is bf16; an fp16 IR run at f32 keeps its fp16-rounded weights, so fp16;
        a bf16 IR (fp32 weights) on a CPU without bf16 runs f32, so fp32; an int8 IR is int8.
        """
        stored = {"bf16": "fp32"}.get(self.spec.extra.get("precision", "fp32"), self.spec.extra.get("precision", "fp32"))
        engine = _PRECISIONS.get(self._engine_property("INFERENCE_PRECISION_HINT"))
        if engine is None:
            return stored
        return min(stored, engine, key=lambda p: _RANK.get(p, 3))

    def _engine_property(self, name: str) -> str:
        try:
            value = self._compiled.get_property(name)
        except RuntimeError:  # a device (or AUTO) that does not report it
            return "unknown"
        if hasattr(value, "get_type_name"):  # an element type: 'f32', 'bf16', 'f16'
            return value.get_type_name()
        return getattr(value, "name", str(value))  # an enum such as ExecutionMode.ACCURACY

    def describe(self) -> dict:
        info = super().describe()
        info["artifact_precision"] = self.spec.extra.get("precision", "fp32")
        info["inference_precision"] = self._engine_property("INFERENCE_PRECISION_HINT")
        info["execution_mode"] = self._engine_property("EXECUTION_MODE_HINT").lower()
        info["settings"] = self.settings.to_dict()
        return info

    def _request(self):
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        return request

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self._request().infer(feeds)
        # copy: the request reuses its output buffers on the next call
        return {t.name: np.array(results[i], copy=True) for i, t in enumerate(self.outputs)}

    def close(self) -> None:
        self._compiled = None
        self._local = threading.local()  # drop this thread's request with the compiled model
        super().close()

    def _versions(self) -> dict[str, str]:
        return {"openvino": self._ov.__version__}

    @property
    def compiled(self):
        """The compiled model, for throughput-mode benchmarking (AsyncInferQueue)."""
        return self._compiled

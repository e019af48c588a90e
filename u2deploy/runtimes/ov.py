"""OpenVINO backend: IR (.xml/.bin) or ONNX files on CPU, GPU, NPU or AUTO."""

from __future__ import annotations

import threading
from typing import ClassVar

import numpy as np

from .._deps import require
from ..errors import BackendError, ModelLoadError, UnsupportedOptionError
from ..spec import METADATA_KEY
from .base import BaseBackend, TensorInfo, spec_from_metadata

__all__ = ["OpenVinoBackend"]

_HINTS = ("latency", "throughput", "cumulative_throughput")


class OpenVinoBackend(BaseBackend):
    """Options: `hint` ('latency', 'throughput'), `inference_precision` ('f32', 'f16', 'bf16';
    f32 for parity runs), `threads`, `cache_dir` (compiled-model cache).

    Thread safety: each thread gets its own InferRequest, so `infer` may be called concurrently.
    """

    name: ClassVar[str] = "openvino"
    suffixes: ClassVar[tuple[str, ...]] = (".xml",)
    thread_safe: ClassVar[bool] = True

    def _load(self) -> None:
        ov = require("openvino", "the OpenVINO backend")
        core = ov.Core()
        self.device = (self.device or "CPU").upper()
        if self.device.split(".")[0] not in ("AUTO", "MULTI", "HETERO") and self.device not in core.available_devices:
            raise BackendError(f"OpenVINO device '{self.device}' not found; this machine has {', '.join(core.available_devices)}")
        try:
            model = core.read_model(str(self.path))
        except Exception as exc:  # openvino raises RuntimeError subclasses with long texts
            raise ModelLoadError(f"{self.path}: OpenVINO cannot read it ({str(exc).strip().splitlines()[0][:300]})") from None
        self._fill_io(model)
        self._compiled = core.compile_model(model, self.device, self._config())
        self._local = threading.local()
        self._ov = ov

    def _config(self) -> dict[str, str]:
        config = {}
        hint = self.options.get("hint", "latency")
        if hint not in _HINTS:
            raise UnsupportedOptionError(f"OpenVINO hint '{hint}' unknown; use {', '.join(_HINTS)}")
        config["PERFORMANCE_HINT"] = hint.upper()
        if self.options.get("inference_precision"):
            config["INFERENCE_PRECISION_HINT"] = self.options["inference_precision"]
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
        if len(self.inputs) != 1 or len(self.inputs[0].shape) != 4:
            raise ModelLoadError(f"{self.path}: expected one NCHW input; this is not a U2-Net export")
        embedded = model.get_rt_info([METADATA_KEY]).astype(str) if model.has_rt_info([METADATA_KEY]) else None
        self.spec = spec_from_metadata(self.path, embedded, self.inputs[0], [t.name for t in self.outputs])
        self.precision = self.spec.extra.get("precision", "fp32")

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
        super().close()

    def _versions(self) -> dict[str, str]:
        return {"openvino": self._ov.__version__}

    @property
    def compiled(self):
        """The compiled model, for throughput-mode benchmarking (AsyncInferQueue)."""
        return self._compiled

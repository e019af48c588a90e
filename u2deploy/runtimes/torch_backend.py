"""PyTorch backend: the reference model itself, from any checkpoint `load_checkpoint` accepts."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .._deps import require
from ..errors import BackendError, UnsupportedOptionError
from .base import BaseBackend, TensorInfo

__all__ = ["TorchBackend"]


class TorchBackend(BaseBackend):
    """Options: `precision` ('fp32' or 'fp16', fp16 on CUDA only), `outputs` ('fused' or 'all'),
    `threads` (intra-op threads), `task` (for files that carry none)."""

    name: ClassVar[str] = "torch"
    suffixes: ClassVar[tuple[str, ...]] = (".pth", ".pt")
    thread_safe: ClassVar[bool] = True

    def _load(self) -> None:
        torch = require("torch", "the PyTorch backend")
        from ..model import DeployHead, load_checkpoint

        loaded = load_checkpoint(self.path, task=self.options.get("task"))
        self.device = self.device or "cpu"
        self.precision = self.options.get("precision", "fp32")
        if self.precision not in ("fp32", "fp16"):
            raise UnsupportedOptionError(f"torch backend precision '{self.precision}' is not supported; use fp32 or fp16")
        if self.precision == "fp16" and not self.device.startswith("cuda"):
            raise UnsupportedOptionError("torch fp16 runs on CUDA only; use device='cuda' or precision='fp32'")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError("device 'cuda' asked for, but this PyTorch has no CUDA device; use device='cpu'")
        if self.options.get("threads"):
            torch.set_num_threads(int(self.options["threads"]))
        outputs = self.options.get("outputs", "fused")
        head = DeployHead(loaded.model, outputs=outputs).eval().to(self.device)
        self._module = head.half() if self.precision == "fp16" else head
        self._torch = torch
        self.spec = loaded.spec.replace(output_names=DeployHead.output_names(outputs))
        self.inputs = [TensorInfo(self.spec.input_name, (None, 3, None, None))]
        self.outputs = [TensorInfo(name, (None, 1, None, None)) for name in self.spec.output_names]
        self.source = loaded

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        tensor = torch.from_numpy(feeds[self.spec.input_name]).to(self.device)
        if self.precision == "fp16":
            tensor = tensor.half()
        with torch.inference_mode():
            result = self._module(tensor)
        results = result if isinstance(result, tuple) else (result,)
        return {name: r.float().cpu().numpy() for name, r in zip(self.spec.output_names, results, strict=True)}

    def close(self) -> None:
        self._module = None
        super().close()

    def _versions(self) -> dict[str, str]:
        return {"torch": self._torch.__version__}

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["source_sha256"] = self.source.sha256
        return info

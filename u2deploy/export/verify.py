"""The parity gate: the artifact against PyTorch FP32, on the same tensors from real photos.

Both sides get the five held-out photos of `samples.PARITY_PHOTOS`, preprocessed once in
`reference` mode at the artifact's input size; the artifact runs through the same `Runtime`
users get, on the backend and settings its `Capability` names (CPU, f32 inference precision),
so the file is judged rather than a device's defaults. `compare.parity_report` does the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .._deps import require
from ..compare import ParityReport, parity_report
from ..spec import ModelSpec
from .options import ExportOptions, gate_tolerance

__all__ = ["INT8_VERIFY_OPTIONS", "reference_inputs", "torch_reference", "verify_options", "run_artifact",
           "verify_artifact"]


def reference_inputs(spec: ModelSpec) -> tuple[list[str], np.ndarray]:
    """(photo names, Nx3xHxW float32 batch) at `spec.input_size`."""
    from ..processing import preprocess_batch
    from ..samples import PARITY_PHOTOS, sample_photos

    photos = sample_photos(PARITY_PHOTOS)
    batch, _ = preprocess_batch(list(photos.values()), spec, mode="reference")
    return list(photos), batch


def torch_reference(model: Any, batch: np.ndarray, outputs: str) -> dict[str, np.ndarray]:
    """The FP32 PyTorch maps on CPU: output name -> Nx1xHxW."""
    torch = require("torch", "the PyTorch reference of the export check")
    from ..model import DeployHead

    head = DeployHead(model, outputs=outputs).eval()
    with torch.inference_mode():
        result = head(torch.from_numpy(batch))
    results = result if isinstance(result, tuple) else (result,)
    return {name: r.numpy() for name, r in zip(DeployHead.output_names(outputs), results, strict=True)}


#: Backend options added when an INT8 artifact is judged. A Q/DQ graph is judged as an exact INT8
#: engine (TensorRT) computes it: ONNX Runtime with graph optimisation off runs every
#: QuantizeLinear/DequantizeLinear literally, while its optimised CPU int8 kernels are a different,
#: lossier computation on AVX2 CPUs without VNNI (BASELINES.md).
INT8_VERIFY_OPTIONS: dict[str, dict[str, str]] = {"onnxruntime": {"graph_optimization": "disable"}}


#: A bf16 IR is judged as it runs: OpenVINO's CPU plugin in bf16, in its PERFORMANCE mode (the
#: convs the IR marks precise stay f32 inside that run; `ov_convert.keep_sensitive_f32`).
BF16_VERIFY_OPTIONS: dict[str, str] = {"inference_precision": "bf16", "execution_mode": "performance"}


def verify_options(options: ExportOptions) -> dict[str, str]:
    """The verifying backend's options for this export."""
    cap = options.capability
    extra = INT8_VERIFY_OPTIONS.get(cap.verify_backend, {}) if options.precision == "int8" else {}
    if options.precision == "bf16":
        extra = BF16_VERIFY_OPTIONS
    return {**cap.verify_options, **extra}


def run_artifact(path: Path, options: ExportOptions, batch: np.ndarray) -> dict[str, np.ndarray]:
    """Every output of the artifact on `batch`, through `Runtime` and the verifying backend."""
    from ..runtimes.runtime import Runtime

    with Runtime(path, backend=options.capability.verify_backend, **verify_options(options)) as runtime:
        return runtime.infer_all(batch)


def verify_artifact(path: Path, reference: dict[str, np.ndarray], names: list[str], batch: np.ndarray,
                    options: ExportOptions) -> ParityReport:
    """Run the artifact and judge it against `reference` with the precision's tolerance."""
    candidate = run_artifact(path, options, batch)
    return parity_report(reference, candidate, names, options.precision, gate_tolerance(options))

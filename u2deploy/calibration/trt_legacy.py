"""IInt8EntropyCalibrator2 factory for TensorRT <= 10 (implicit INT8 from an fp32 graph).

The forward-compatible INT8 path is the Q/DQ ONNX (`calibration/qdq.py`), which TensorRT 10 and 11
both build strongly typed. This calibrator exists for TensorRT 10.x builds from an fp32 graph
(`onnx_to_tensorrt(fp32.onnx, out, precision="int8", calibration=batches)`) and for DLA on
JetPack 6, where ENTROPY_2 is the calibrator DLA requires. TensorRT deprecated it in 10.1 and
removed it in 11.0; there this module says so in one line.

The subclass is defined inside the factory, after TensorRT is imported (STYLE.md guideline 3).
`set_calibration_profile` is deliberately not called (Ultralytics saw internal errors on 10.x).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .._deps import require
from .._io import atomic_write_bytes
from ..errors import InputError, UnsupportedOptionError

__all__ = ["entropy_calibrator"]


def entropy_calibrator(batches: Iterable[np.ndarray] | None, input_name: str, cache: str | Path | None = None,
                       device: int = 0) -> Any:
    """A `trt.IInt8EntropyCalibrator2` over float32 NCHW `batches` (all of one batch size).

    Args:
        batches: preprocessed batches, e.g. a `CalibrationSource`; None only with an existing `cache`.
        input_name: the network input they feed.
        cache: calibration cache file, reused when present and written (atomically) after calibration.
        device: CUDA device of the build.
    """
    trt = require("tensorrt", "INT8 calibration")
    if not hasattr(trt, "IInt8EntropyCalibrator2"):
        raise UnsupportedOptionError(f"TensorRT {trt.__version__} removed implicit INT8 calibration; build from the "
                                     "Q/DQ ONNX instead (u2deploy export --fmt trt --int8 --calib DIR)")
    from ..runtimes._cuda import cuda_memory

    cache_path = Path(cache) if cache else None
    if batches is None and not (cache_path and cache_path.is_file()):
        raise InputError("INT8 calibration needs batches of images or an existing calibration cache")
    iterator = iter(batches or ())
    first = next(iterator, None)
    memory = cuda_memory(device)

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._pending, self._ptr, self._nbytes = first, None, 0

        def get_batch_size(self) -> int:
            return int(first.shape[0]) if first is not None else 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            batch, self._pending = self._pending, next(iterator, None)
            if batch is None:
                return None  # no more data: calibration ends
            array = np.ascontiguousarray(batch, dtype=np.float32)
            if first is not None and array.shape != first.shape:
                raise InputError(f"calibration batches must all be {'x'.join(map(str, first.shape))}; got "
                                 f"{'x'.join(map(str, array.shape))}")
            if self._ptr is None:
                self._ptr, self._nbytes = memory.alloc(array.nbytes), array.nbytes
            memory.upload(self._ptr, array)
            memory.synchronize()
            return [int(self._ptr) if name == input_name else 0 for name in names]

        def read_calibration_cache(self) -> bytes | None:
            return cache_path.read_bytes() if cache_path and cache_path.is_file() else None

        def write_calibration_cache(self, data: Any) -> None:
            if cache_path:
                atomic_write_bytes(cache_path, bytes(data))

    return EntropyCalibrator()

"""The machine's measured compute peak, the yardstick for each row's achieved GFLOP/s.

U2-Net is almost all 3x3 convolutions, which every CPU library lowers to matrix multiplies (or
Winograd/direct kernels of the same arithmetic intensity), so a large single-precision matrix
multiply is the fair FP32 ceiling: what BLAS gets out of the FMA units with data in cache.
FLOPs are counted as REFERENCE.md counts the model's: 2 per multiply-accumulate.

INT8: a peak is measured only where the CPU has 8-bit dot-product instructions (x86 VNNI or AMX,
Arm dot product). Without them, int8 kernels emulate the dot product with 16-bit multiplies
(`vpmaddubsw` on AVX2), and a "peak" would only measure that emulation; the result says so.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .machine import cpu_flags, has_int8_dot

__all__ = ["fp32_peak", "int8_peak", "measure_peak"]


def _rate(run: Any, flop: float, seconds: float) -> tuple[float, float]:
    """(best, median) GFLOP/s of `run()` repeated for about `seconds` after one warm-up call."""
    run()
    rates, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds or len(rates) < 3:
        begin = time.perf_counter()
        run()
        rates.append(flop / (time.perf_counter() - begin) / 1e9)
    return float(max(rates)), float(np.median(rates))


def _torch_sgemm(n: int, threads: int | None, seconds: float) -> tuple[float, float]:
    import torch

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        generator = torch.Generator().manual_seed(0)
        a, b = (torch.rand(n, n, generator=generator) for _ in range(2))
        out = torch.empty(n, n)
        return _rate(lambda: torch.mm(a, b, out=out), 2.0 * n**3, seconds)
    finally:
        torch.set_num_threads(previous)


def _numpy_sgemm(n: int, seconds: float) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    a, b = (rng.random((n, n), dtype=np.float32) for _ in range(2))
    out = np.empty((n, n), np.float32)
    return _rate(lambda: np.matmul(a, b, out=out), 2.0 * n**3, seconds)


def fp32_peak(threads: int | None = None, n: int = 2048, seconds: float = 1.5) -> dict[str, Any]:
    """FP32 peak from an n x n sgemm in torch (MKL/oneDNN) and numpy (its BLAS); the best one counts.

    Args:
        threads: torch intra-op threads (None: torch's default); numpy's BLAS uses its default.
        n: matrix size; 2048 is 17.2 GFLOP per multiply, well out of cache-blocking overhead.
        seconds: time spent per library.
    """
    result: dict[str, Any] = {"method": f"sgemm {n}x{n}x{n}, 2 FLOPs per multiply-accumulate, best of repeated calls",
                              "threads": threads}  # fmt: skip
    try:
        result["torch_gflops"], result["torch_median_gflops"] = _torch_sgemm(n, threads, seconds)
    except ImportError:
        result["torch_gflops"] = None
    result["numpy_gflops"], result["numpy_median_gflops"] = _numpy_sgemm(n, seconds)
    result["gflops"] = max(v for v in (result["torch_gflops"], result["numpy_gflops"]) if v is not None)
    return result


def int8_peak(threads: int | None = None, n: int = 2048, seconds: float = 1.5) -> dict[str, Any]:
    """INT8 peak via torch's int8 matrix multiply, only on CPUs with 8-bit dot-product instructions."""
    flags = cpu_flags()
    if not has_int8_dot(flags):
        return {"measured": False, "reason": "no INT8 dot-product instructions (VNNI/AMX/dotprod) on this CPU; "
                                             "int8 peak not measured"}  # fmt: skip
    try:
        import torch

        previous = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        try:
            a = torch.randint(-128, 127, (n, n), dtype=torch.int8)
            b = torch.randint(-128, 127, (n, n), dtype=torch.int8)
            best, median = _rate(lambda: torch._int_mm(a, b), 2.0 * n**3, seconds)
        finally:
            torch.set_num_threads(previous)
    except (ImportError, RuntimeError, AttributeError) as exc:
        return {"measured": False, "reason": f"the CPU has {', '.join(flags)} but torch's int8 matmul failed: {exc}"}
    return {"measured": True, "gops": best, "median_gops": median, "method": f"torch._int_mm {n}x{n}x{n} int8 -> int32"}


def measure_peak(threads: int | None = None, seconds: float = 1.5) -> dict[str, Any]:
    """{'fp32': fp32_peak(...), 'int8': int8_peak(...), 'cpu_flags': [...]}."""
    return {"fp32": fp32_peak(threads, seconds=seconds), "int8": int8_peak(threads, seconds=seconds),
            "cpu_flags": cpu_flags()}  # fmt: skip

"""Timing and memory measurement: interleaved runs, percentiles, peak RSS, and the staged predict.

Why interleaved: on a shared 2-core machine the speed of the whole process drifts by up to
+-8% between runs (BASELINES.md). Timing variant A for a minute and then variant B for a minute
puts that drift into the A/B ratio. `interleave` runs one call of every row per round (the
starting row rotates each round, so no row always runs first after a pause), so drift hits
every row alike and the ratios of one run are trustworthy even when the absolute numbers move.

Why peak RSS via the kernel's high-water mark: inference libraries allocate outside Python
(ONNX Runtime arenas, OpenVINO plugin memory, torch's allocator), which tracemalloc cannot see.
On Linux `/proc/self/clear_refs` resets VmHWM, so the peak of one phase can be read exactly;
elsewhere a sampling thread approximates it. tracemalloc is used only for the numpy parts
(pre/post-processing), where it sees every array.

This module imports numpy only; psutil (the bench extra) measures RSS where installed, /proc otherwise.
"""

from __future__ import annotations

import os
import re
import threading
import time
import tracemalloc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .._deps import available

__all__ = ["Stats", "summarize", "Timings", "interleave", "PeakMemory", "rss_mb", "traced_peak_mb", "StagedPredict",
           "STAGES", "default_threads"]  # fmt: skip

#: the three parts of one end-to-end prediction, in order
STAGES = ("preprocess", "infer", "postprocess")


# --------------------------------------------------------------------------------------------
# Statistics


@dataclass(frozen=True)
class Stats:
    """Summary of timed samples, in milliseconds."""

    n: int
    mean: float
    std: float
    min: float
    p50: float
    p90: float
    p99: float
    max: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def summarize(seconds: Sequence[float]) -> Stats:
    """Percentiles (linear interpolation between order statistics, numpy's default) in ms.

    With few runs p99 is close to the maximum; the row records `n` so a reader can tell.
    """
    if len(seconds) == 0:
        raise ValueError("no samples to summarize")
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return Stats(n=len(ms), mean=float(ms.mean()), std=float(ms.std(ddof=1)) if len(ms) > 1 else 0.0,
                 min=float(ms.min()), p50=float(p50), p90=float(p90), p99=float(p99), max=float(ms.max()))  # fmt: skip


# --------------------------------------------------------------------------------------------
# Interleaved timing


@dataclass
class Timings:
    """Samples of one row: the wall time of each call and, when the call reports them, its stages."""

    total: list[float] = field(default_factory=list)
    stages: dict[str, list[float]] = field(default_factory=dict)

    def add(self, seconds: float, stages: object) -> None:
        """Record one call; its return value counts as stage times only when it is a mapping."""
        self.total.append(seconds)
        if isinstance(stages, Mapping):
            for name, value in stages.items():
                self.stages.setdefault(name, []).append(value)


Call = Callable[[int], object]


def interleave(calls: Mapping[str, Call], *, warmup: int = 1, runs: int | None = 10, seconds: float | None = None,
               min_runs: int = 3, pause: float = 0.0,
               on_round: Callable[[int], None] | None = None) -> dict[str, Timings]:
    """Time every call in rounds: one call of each per round, the first one rotating.

    Args:
        calls: name -> function of the round index (used to pick an input); when it returns a
            mapping, that is taken as the seconds of its stages (`STAGES`). The harness times the
            whole call itself.
        warmup: untimed rounds first (first-call allocations, kernel selection, caches).
        runs: timed rounds; with `seconds` as well, whichever ends first.
        seconds: stop starting rounds after this much wall time (at least `min_runs` rounds).
        min_runs: floor for `seconds`.
        pause: untimed sleep before each call, so the previous library's worker threads stop
            spin-waiting (ONNX Runtime and OpenMP spin after a run) before the next row starts.
        on_round: progress callback, given the number of rounds done.
    """
    if runs is None and seconds is None:
        raise ValueError("give runs, seconds or both")
    names = list(calls)
    for index in range(warmup):
        for name in names:
            calls[name](index)
    results = {name: Timings() for name in names}
    start, done = time.perf_counter(), 0
    while _more_rounds(done, runs, seconds, min_runs, time.perf_counter() - start):
        shift = done % len(names) if names else 0
        for name in names[shift:] + names[:shift]:
            if pause:
                time.sleep(pause)
            begin = time.perf_counter()
            stages = calls[name](done)
            results[name].add(time.perf_counter() - begin, stages)
        done += 1
        if on_round:
            on_round(done)
    return results


def _more_rounds(done: int, runs: int | None, seconds: float | None, min_runs: int, elapsed: float) -> bool:
    if runs is not None and done >= runs:
        return False
    if seconds is not None and elapsed >= seconds and done >= min_runs:
        return False
    return True


# --------------------------------------------------------------------------------------------
# Memory


def _status_mb(field_name: str) -> float | None:
    """A kB field of /proc/self/status in MiB. Kept for VmHWM: psutil reports no high-water mark on
    Linux, and only /proc/self/clear_refs resets it (so one phase's peak can be read exactly)."""
    try:
        with open("/proc/self/status") as handle:
            match = re.search(rf"^{field_name}:\s+(\d+) kB", handle.read(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) / 1024 if match else None


def rss_mb() -> float:
    """Resident set size of this process in MiB: psutil (any OS), else /proc (Linux without the bench extra)."""
    if available("psutil"):
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    return _status_mb("VmRSS") or 0.0


def _reset_high_water_mark() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return _status_mb("VmHWM") is not None
    except OSError:
        return False


class PeakMemory:
    """Peak and retained RSS growth over a `with` block, in MiB.

    `peak_mb` is the process's high-water mark during the block minus the RSS before it: what
    loading and first runs cost at their worst. `retained_mb` is what is still resident after.
    Exact on Linux (VmHWM reset); elsewhere a thread samples RSS every `interval` seconds.
    """

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.method = ""
        self.before = self.peak_mb = self.retained_mb = 0.0
        self._stop = threading.Event()
        self._sampled = 0.0
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        self.before = rss_mb()
        if _reset_high_water_mark():
            self.method = "VmHWM"
        else:
            self.method = "sampled"
            self._sampled = self.before
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._sampled = max(self._sampled, rss_mb())

    def __exit__(self, *exc: object) -> None:
        after = rss_mb()
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            peak = max(self._sampled, after)
        else:
            peak = max(_status_mb("VmHWM") or after, after)
        self.peak_mb = max(peak - self.before, 0.0)
        self.retained_mb = after - self.before


def traced_peak_mb(function: Callable[[], Any]) -> tuple[Any, float]:
    """(result, peak MiB that Python and numpy allocated while `function` ran), via tracemalloc."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        result = function()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return result, max(peak - base, 0) / 2**20


# --------------------------------------------------------------------------------------------
# One prediction, in three timed parts


class StagedPredict:
    """`Runtime.predict` split into its three stages, each timed.

    It calls the same public pieces `Runtime.predict` does (the task's `prepare`/`finish` around
    `Runtime.infer`), so the total is what a user's `predict` costs, and the split says where
    the time goes.

    Args:
        runtime: an open `Runtime`.
        images: decoded images (RGB uint8 arrays); call `i` takes `batch` of them from position
            `i * batch`, cycling.
        batch: images per call (the artifact's batch size for static-batch artifacts).
    """

    def __init__(self, runtime: Any, images: Sequence[np.ndarray], batch: int = 1) -> None:
        from ..tasks import task_for

        self.runtime = runtime
        self.images = list(images)
        self.batch = batch
        self.spec = runtime.spec.replace(input_size=runtime.input_size)
        self.task = task_for(self.spec)
        self.last: list[np.ndarray] = []

    def pick(self, index: int) -> list[np.ndarray]:
        start = index * self.batch
        return [self.images[(start + k) % len(self.images)] for k in range(self.batch)]

    def __call__(self, index: int) -> dict[str, float]:
        mode = self.runtime.mode
        t0 = time.perf_counter()
        prepared = [self.task.prepare(image, self.spec, mode, "rgb") for image in self.pick(index)]
        tensor = np.concatenate([x for x, _ in prepared])
        t1 = time.perf_counter()
        fused = self.runtime.infer(tensor)
        t2 = time.perf_counter()
        self.last = [self.task.finish(fused[i], self.spec, context, mode) for i, (_, context) in enumerate(prepared)]
        t3 = time.perf_counter()
        return {"preprocess": t1 - t0, "infer": t2 - t1, "postprocess": t3 - t2}

    def processing_memory_mb(self) -> float:
        """Peak numpy/Python allocation of preprocess + postprocess of one call's images (tracemalloc)."""
        images = self.pick(0)
        fused = np.full((1, *self.spec.input_size), 0.5, np.float32)

        def pre_and_post() -> None:
            for image in images:
                _, context = self.task.prepare(image, self.spec, self.runtime.mode, "rgb")
                self.task.finish(fused, self.spec, context, self.runtime.mode)

        return traced_peak_mb(pre_and_post)[1]


def default_threads() -> int:
    """Cores this process may use (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1

"""Statistics, interleaving and memory probes of the bench harness: logic only, no timing assertions."""

from __future__ import annotations

import numpy as np
import pytest

from u2deploy.bench.harness import PeakMemory, Timings, interleave, summarize, traced_peak_mb


def test_percentiles_match_hand_computed_values():
    stats = summarize([i / 1e3 for i in range(1, 102)])  # 1..101 ms
    assert (stats.n, stats.min, stats.max) == (101, 1.0, 101.0)
    assert stats.p50 == pytest.approx(51.0)
    assert stats.p90 == pytest.approx(91.0)
    assert stats.p99 == pytest.approx(100.0)
    assert stats.mean == pytest.approx(51.0)


def test_percentiles_interpolate_linearly_between_samples():
    stats = summarize([0.010, 0.020, 0.030, 0.040])  # ms: 10, 20, 30, 40
    assert stats.p50 == pytest.approx(25.0)
    assert stats.p90 == pytest.approx(37.0)  # rank 0.9 * 3 = 2.7 -> 30 + 0.7 * 10
    assert stats.std == pytest.approx(np.std([10, 20, 30, 40], ddof=1))


def test_one_sample_and_no_sample():
    assert summarize([0.005]).to_dict() == {"n": 1, "mean": 5.0, "std": 0.0, "min": 5.0, "p50": 5.0, "p90": 5.0,
                                            "p99": 5.0, "max": 5.0}
    with pytest.raises(ValueError):
        summarize([])


def test_interleave_runs_one_call_of_each_row_per_round_and_rotates_the_first():
    order: list[tuple[str, int]] = []
    calls = {name: (lambda i, name=name: order.append((name, i))) for name in "abc"}
    timings = interleave(calls, warmup=1, runs=3)
    assert order[:3] == [("a", 0), ("b", 0), ("c", 0)]  # warm-up round, untimed
    timed = order[3:]
    assert [name for name, _ in timed] == list("abc" "bca" "cab")
    assert [i for _, i in timed] == [0] * 3 + [1] * 3 + [2] * 3  # the round index picks the input
    assert all(len(t.total) == 3 for t in timings.values())


def test_interleave_keeps_stage_times_returned_as_a_mapping():
    timings = interleave({"row": lambda i: {"preprocess": 0.001, "infer": 0.002 * (i + 1)}}, warmup=0, runs=2)
    assert timings["row"].stages == {"preprocess": [0.001, 0.001], "infer": [0.002, 0.004]}
    other = interleave({"row": lambda i: np.zeros(3)}, warmup=0, runs=1)  # not a mapping: total only
    assert other["row"].stages == {} and len(other["row"].total) == 1


def test_interleave_with_a_time_budget_still_runs_the_minimum():
    timings = interleave({"a": lambda i: None}, warmup=0, runs=None, seconds=1e-9, min_runs=4)
    assert len(timings["a"].total) == 4
    with pytest.raises(ValueError):
        interleave({"a": lambda i: None}, runs=None, seconds=None)


def test_progress_callback_counts_rounds():
    seen: list[int] = []
    interleave({"a": lambda i: None, "b": lambda i: None}, warmup=0, runs=3, on_round=seen.append, pause=0.001)
    assert seen == [1, 2, 3]


def test_timings_add():
    t = Timings()
    t.add(0.5, {"infer": 0.4})
    t.add(0.6, None)
    assert t.total == [0.5, 0.6] and t.stages == {"infer": [0.4]}


def test_peak_memory_sees_a_large_temporary_allocation():
    import mmap

    with PeakMemory() as memory:
        # an anonymous mapping, not numpy: once a library has swapped in a caching allocator
        # (OpenVINO's TBB), a freed array stays resident and "retained" would equal the peak
        block = mmap.mmap(-1, 64 * 2**20)
        block.write(b"\x01" * len(block))  # every page touched
        block.close()
    assert memory.method in ("VmHWM", "sampled")
    assert memory.peak_mb > 40
    assert memory.retained_mb < memory.peak_mb


def test_tracemalloc_peak_of_numpy_work():
    result, peak = traced_peak_mb(lambda: float(np.ones(2**20).sum()))  # 8 MiB array
    assert result == 2**20
    assert 7 < peak < 20


def test_rss_agrees_with_the_kernel():
    from u2deploy.bench.harness import _status_mb, rss_mb

    kernel = _status_mb("VmRSS")
    if kernel is None:
        pytest.skip("no /proc/self/status on this OS")
    assert rss_mb() == pytest.approx(kernel, rel=0.1)

"""The benchmark harness behind `u2deploy bench`: which artifact to ship, measured on this machine.

Modules, lightest first (only `blocks` imports torch at the top; the others import their heavy
packages inside the functions that need them):

* `machine`: CPU, cores, instruction sets, load average, library versions.
* `harness`: interleaved timing, percentiles, peak memory, predict split into pre/infer/post.
* `rows`: the row schema shared by the measuring code, the writers and the tests.
* `matrix`: which combinations run, why others are skipped, the cache of exported artifacts.
* `peak`: the machine's FP32 (and, with VNNI/AMX, INT8) peak.
* `peers`: the upstream recipe and rembg, timed against u2deploy's fastest path.
* `run`: the whole `u2deploy bench` run.
* `blocks`, `paper`: the paper's Fig. 4 blocks and model table (`--paper`).
* `report`: JSON, CSV, Markdown (tabulate) and PNG.
* `verdict`: the artifact to ship (fastest row at the quality target), linked under OUT/artifacts/.
* `terminal`: the compact table and the verdict for the terminal (rich, <= 100 columns).

    >>> from u2deploy.bench import BenchOptions, run_bench, write_bench
    >>> write_bench(run_bench(BenchOptions(formats=("onnx",), runs=5)), "results/")
"""

from __future__ import annotations

from .harness import Stats, interleave, summarize
from .report import write_bench, write_paper
from .rows import Row
from .run import BenchOptions, BenchResult, run_bench

__all__ = ["BenchOptions", "BenchResult", "run_bench", "Row", "Stats", "summarize", "interleave", "write_bench",
           "write_paper"]

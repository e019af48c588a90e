"""`u2deploy bench`: export what this machine can run, measure every row in one process, report.

The steps, in order (each row's failure is recorded on the row and the run goes on):

1. **Reference**: the checkpoint (fetched if it is a weights name), its conv FLOPs, the five
   parity photos preprocessed in `reference` mode, and PyTorch FP32's maps for them.
2. **Rows**: every format x precision x batch; the ones this machine cannot run are skipped
   with the reason (`matrix.precheck`). For the others: export or reuse the cached artifact,
   load it (load time, peak memory), run it once, and measure parity against step 1.
3. **Latency**: all loaded rows timed interleaved (`harness.interleave`), end to end and per
   stage, so the ratios between rows are free of the machine's drift.
4. **Throughput** (OpenVINO's THROUGHPUT hint where the row is OpenVINO), the **FP32 peak**
   of the machine, and each row's achieved GFLOP/s as a fraction of it.
5. **Peers**: the upstream recipe and rembg against the fastest row at equal quality.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._deps import require
from ..errors import InputError, U2DeployError, first_line
from .harness import STAGES, PeakMemory, StagedPredict, interleave, summarize
from .matrix import FORMATS, PRECISIONS, artifact_files, classify, ensure_artifact, export_options, plan_rows
from .rows import Row

__all__ = ["BenchOptions", "BenchResult", "Reference", "run_bench", "fastest_row", "Progress", "PAUSE"]

#: seconds between timed calls (untimed): worker threads of the previous row stop spinning first
PAUSE = 0.02


@dataclass
class BenchOptions:
    """What `u2deploy bench` measures; the CLI flags map one to one.

    Attributes:
        model: weights name or checkpoint (.pth, or a U2-Net .onnx such as rembg's).
        formats, precisions, batches: the combinations.
        size: network input size (square).
        warmup: untimed interleaved rounds before timing.
        runs: timed rounds (None with `seconds`).
        seconds: time budget of each timed phase instead of (or as well as) `runs`.
        threads: inference threads for every backend (None: each library's default).
        mode: pre/post-processing of the timed rows (`fast` or `reference`).
        calibration: INT8 `CalibrationOptions` (None: the exporter's default).
        peers: also time the upstream recipe and rembg.
        peak: also measure the FP32 (and INT8) peak.
        quality_iou: the mean mask IoU against PyTorch FP32 that "equal quality" requires.
        cache: where exported artifacts are kept (None: `cache_dir()/artifacts`).
        progress: progress bars and step lines on stderr.
        note: a line for the top of the report (e.g. "provisional: shared machine").
    """

    model: str = "u2net"
    formats: tuple[str, ...] = FORMATS
    precisions: tuple[str, ...] = PRECISIONS
    batches: tuple[int, ...] = (1,)
    size: int = 320
    warmup: int = 2
    runs: int | None = 10
    seconds: float | None = None
    threads: int | None = None
    mode: str = "fast"
    calibration: Any = None
    peers: bool = True
    peak: bool = True
    quality_iou: float = 0.97
    cache: Path | None = None
    progress: bool = True
    note: str = ""

    def validate(self) -> BenchOptions:
        if self.runs is None and self.seconds is None:
            raise InputError("give --runs N or --seconds S")
        if self.runs is not None and self.runs < 1:
            raise InputError(f"--runs {self.runs}: must be at least 1")
        if self.seconds is not None and self.seconds <= 0:
            raise InputError(f"--seconds {self.seconds}: must be positive")
        if self.warmup < 0:
            raise InputError(f"--warmup {self.warmup}: must be 0 or more")
        if any(b < 1 for b in self.batches):
            raise InputError(f"--batch {','.join(map(str, self.batches))}: batch sizes must be at least 1")
        if self.threads is not None and self.threads < 1:
            raise InputError(f"--threads {self.threads}: must be at least 1")
        return self

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict, is_dataclass

        data = {k: v for k, v in self.__dict__.items() if k not in ("calibration", "cache")}
        data["calibration"] = asdict(self.calibration) if is_dataclass(self.calibration) else None
        data["cache"] = str(self.cache) if self.cache else None
        return data


@dataclass
class BenchResult:
    """Everything one run measured, as the writers in `report` consume it."""

    machine: dict[str, Any]
    options: dict[str, Any]
    model: dict[str, Any]
    rows: list[Row]
    peak: dict[str, Any] | None = None
    peers: dict[str, Any] | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    verdict: dict[str, Any] | None = None  # `verdict.Verdict.to_dict()`, set by `verdict.verdict_for`

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "u2deploy bench", "machine": self.machine, "options": self.options, "model": self.model,
                "rows": [row.to_dict() for row in self.rows], "peak": self.peak, "peers": self.peers,
                "seconds": self.seconds, "notes": self.notes, "verdict": self.verdict}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchResult:
        """A recorded `bench.json` back as a result, e.g. to write its reports again."""
        from dataclasses import fields

        names = {f.name for f in fields(Row)}
        rows = [Row(**{k: v for k, v in row.items() if k in names}) for row in data["rows"]]
        return cls(data["machine"], data["options"], data["model"], rows, data.get("peak"), data.get("peers"),
                   data.get("seconds", 0.0), list(data.get("notes", [])), data.get("verdict"))  # fmt: skip


class Progress:
    """tqdm bars and one-line notes on stderr, or nothing."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    def bar(self, total: int | None, description: str) -> Any:
        from tqdm import tqdm

        return tqdm(total=total, desc=description, disable=not self.enabled, file=sys.stderr, leave=True,
                    dynamic_ncols=True)  # fmt: skip

    def note(self, text: str) -> None:
        if self.enabled:
            from tqdm import tqdm

            tqdm.write(text, file=sys.stderr)


# --------------------------------------------------------------------------------------------
# Step 1: the reference


@dataclass
class Reference:
    """The checkpoint, its cost, the photos, and PyTorch FP32's maps on them."""

    source: Path
    sha256: str
    spec: Any  # the checkpoint's ModelSpec (the exporter resizes it per row)
    size: tuple[int, int]
    gflop: float
    params: int
    photos: dict[str, np.ndarray]
    names: list[str]
    inputs: np.ndarray
    maps: dict[str, np.ndarray]

    @classmethod
    def build(cls, model: str, size: int) -> Reference:
        from ..export.verify import reference_inputs, torch_reference
        from ..model import load_checkpoint
        from ..model.info import model_cost
        from ..samples import PARITY_PHOTOS, sample_photos
        from ..weights import resolve_model_path

        source = resolve_model_path(model)
        loaded = load_checkpoint(source)
        cost = model_cost(loaded.model, (size, size))
        names, inputs = reference_inputs(loaded.spec.replace(input_size=(size, size)))
        maps = torch_reference(loaded.model, inputs, "fused")
        return cls(Path(source), loaded.sha256, loaded.spec, (size, size), cost.flops / 1e9, cost.params,
                   sample_photos(PARITY_PHOTOS), names, inputs, maps)  # fmt: skip

    def describe(self) -> dict[str, Any]:
        return {"source": str(self.source), "sha256": self.sha256, "arch": self.spec.arch,
                "input_size": list(self.size), "params": self.params, "gflop_per_image": self.gflop,
                "photos": self.names}  # fmt: skip


# --------------------------------------------------------------------------------------------
# Step 2: prepare each row


@dataclass
class Live:
    """A loaded row: its runtime and the staged predict the timing calls."""

    row: Row
    runtime: Any
    staged: StagedPredict


@contextmanager
def row_errors(row: Row) -> Iterator[None]:
    """Record a failure on the row instead of ending the run; a non-u2deploy error keeps its traceback."""
    try:
        yield
    except U2DeployError as exc:
        row.mark(classify(exc), first_line(exc, 300))
    except Exception as exc:  # a bug in a backend or here: shown in full, but the other rows still run
        traceback.print_exc(file=sys.stderr)
        row.mark("failed", f"{type(exc).__name__}: {first_line(exc, 250)} (traceback on stderr)")


def _artifact(row: Row, ref: Reference, options: BenchOptions, root: Path) -> tuple[Path, bool | None, float | None]:
    if row.fmt == "torch":
        return ref.source, None, None
    export = export_options(row.fmt, row.precision, row.batch, ref.size, options.calibration, options.progress)
    return ensure_artifact(ref.source, ref.spec, export, ref.sha256, root)


def _load(row: Row, path: Path, ref: Reference, options: BenchOptions) -> tuple[Any, StagedPredict]:
    """Open the runtime and run one call, measuring load time and memory."""
    from ..runtimes.runtime import Runtime

    with PeakMemory() as memory:
        start = time.perf_counter()
        runtime = Runtime(path, backend=row.backend, mode=options.mode, threads=options.threads)
        row.load_s = round(time.perf_counter() - start, 3)
        try:
            staged = StagedPredict(runtime, list(ref.photos.values()), row.batch)
            staged(0)
        except BaseException:
            runtime.close()
            raise
    row.peak_mb, row.retained_mb, row.memory_method = memory.peak_mb, memory.retained_mb, memory.method
    row.processing_mb = staged.processing_memory_mb()
    info = runtime.describe()
    row.describe = {key: info.get(key) for key in ("backend", "device", "precision", "input_shape", "versions")}
    return runtime, staged


def row_parity(runtime: Any, ref: Reference, precision: str) -> dict[str, Any]:
    """Parity of the row's network output against PyTorch FP32 on the same reference tensors."""
    from ..compare import parity_report

    name = next(iter(ref.maps))
    report = parity_report(ref.maps, {name: runtime.infer(ref.inputs)}, ref.names, precision)
    data = report.to_dict()
    data["iou_per_image"] = {image.image: image.iou for image in report.images}
    del data["images"]
    return data


def _prepare(row: Row, ref: Reference, options: BenchOptions, root: Path) -> Live | None:
    runtime = None
    with row_errors(row):
        path, row.cached, row.export_s = _artifact(row, ref, options, root)
        row.artifact = str(path)
        row.size_mb = round(sum(f.stat().st_size for f in artifact_files(path)) / 1e6, 2)
        runtime, staged = _load(row, path, ref, options)
        row.parity = row_parity(runtime, ref, row.precision)
        return Live(row, runtime, staged)
    if runtime is not None:
        runtime.close()
    return None


def _what(row: Row, ref: Reference, options: BenchOptions, root: Path) -> str:
    if row.fmt == "torch":
        return f"loading {row.name}"
    export = export_options(row.fmt, row.precision, row.batch, ref.size, options.calibration)
    from .matrix import artifact_path

    return f"{'loading' if artifact_path(root, ref.spec, export, ref.sha256).is_file() else 'exporting'} {row.name}"


def prepare_rows(rows: list[Row], ref: Reference, options: BenchOptions, progress: Progress) -> dict[str, Live]:
    """Artifacts, loading and parity for every row not skipped up front; returns the loaded ones."""
    from ..weights import cache_dir

    root = options.cache or cache_dir() / "artifacts"
    live: dict[str, Live] = {}
    todo = [row for row in rows if row.ok]
    with progress.bar(len(todo), "prepare") as bar:
        for row in todo:
            bar.set_description(_what(row, ref, options, root))
            prepared = _prepare(row, ref, options, root)
            if prepared is not None:
                live[row.name] = prepared
            else:
                progress.note(f"{row.name}: {row.status}: {row.reason}")
            bar.update(1)
    return live


# --------------------------------------------------------------------------------------------
# Steps 3-4: latency, throughput, achieved compute


def time_rows(live: dict[str, Live], options: BenchOptions, progress: Progress) -> None:
    """Interleaved end-to-end timing of every loaded row, with the per-stage split."""
    if not live:
        return
    with progress.bar(options.runs, f"timing {len(live)} rows interleaved") as bar:
        timings = interleave({name: item.staged for name, item in live.items()}, warmup=options.warmup,
                             runs=options.runs, seconds=options.seconds, pause=PAUSE,
                             on_round=lambda _: bar.update(1))  # fmt: skip
    for name, timing in timings.items():
        row = live[name].row
        row.latency = summarize(timing.total).to_dict()
        row.infer = summarize(timing.stages["infer"]).to_dict()
        row.stages = {stage: summarize(timing.stages[stage]).p50 for stage in STAGES}


def openvino_throughput(path: str | Path, batch_input: np.ndarray, threads: int | None, requests: int,
                        **backend_options: Any) -> tuple[float, str]:
    """Images/s of an OpenVINO artifact compiled with the THROUGHPUT hint, fed by an AsyncInferQueue."""
    from ..runtimes.registry import backend_class

    ov = require("openvino", "OpenVINO throughput mode")
    backend = backend_class("openvino")(path, device="CPU", hint="throughput", threads=threads, **backend_options)
    backend.load()
    try:
        compiled = backend.compiled
        jobs = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        queue = ov.AsyncInferQueue(compiled, jobs)
        feeds = {backend.inputs[0].name: batch_input}
        for _ in range(jobs):  # warm every request once
            queue.start_async(feeds)
        queue.wait_all()
        count = max(requests, 2 * jobs)
        start = time.perf_counter()
        for _ in range(count):
            queue.start_async(feeds)
        queue.wait_all()
        elapsed = time.perf_counter() - start
    finally:
        backend.close()
    return count * len(batch_input) / elapsed, f"OpenVINO THROUGHPUT hint, {jobs} async requests, inference only"


def measure_throughput(live: dict[str, Live], ref: Reference, options: BenchOptions, progress: Progress) -> None:
    """Images/s per row: the backend's throughput mode where it has one, else batch / mean inference time."""
    for item in live.values():
        row = item.row
        row.throughput_ips = row.batch * 1e3 / row.infer["mean"]
        row.throughput_mode = "latency mode: batch / mean inference time"
    openvino = [item for item in live.values() if item.row.backend == "openvino"]
    with progress.bar(len(openvino), "OpenVINO throughput mode") as bar:
        for item in openvino:
            row = item.row
            batch_input = np.repeat(ref.inputs[:1], row.batch, axis=0)
            try:
                row.throughput_ips, row.throughput_mode = openvino_throughput(
                    row.artifact, batch_input, options.threads, int(row.latency["n"]))
            except Exception as exc:  # the latency-mode figure stands; the row's other numbers are still good
                row.throughput_mode += f" (THROUGHPUT hint failed: {type(exc).__name__}: {first_line(exc, 200)})"
            bar.update(1)


def achieved_compute(rows: list[Row], gflop: float, peak_gflops: float | None) -> None:
    """GFLOP/s each row reaches in inference (conv FLOPs x batch / inference p50), and its share of the peak."""
    for row in rows:
        if not row.ok or not row.infer:
            continue
        row.gflop = gflop
        row.achieved_gflops = gflop * row.batch / (row.infer["p50"] / 1e3)
        row.peak_fraction = row.achieved_gflops / peak_gflops if peak_gflops else None


# --------------------------------------------------------------------------------------------
# Step 5: peers


def fastest_row(rows: list[Row], quality_iou: float) -> Row | None:
    """The batch-1 row with the lowest end-to-end p50 whose mean mask IoU reaches `quality_iou`."""
    good = [row for row in rows if row.ok and row.batch == 1 and row.latency and row.parity
            and row.parity["summary"]["mean_iou"] >= quality_iou]  # fmt: skip
    return min(good, key=lambda row: row.latency["p50"], default=None)


def run_peers(rows: list[Row], live: dict[str, Live], ref: Reference, options: BenchOptions,
              progress: Progress) -> dict[str, Any]:
    from .peers import DEFINITION, compare_peers, rembg_peer, runtime_peer, safe_peer, upstream_peer

    rule = f"batch 1, mean mask IoU against PyTorch FP32 >= {options.quality_iou} on the parity photos"
    fastest = fastest_row(rows, options.quality_iou)
    if fastest is None:
        return {"definition": DEFINITION, "quality_rule": rule, "skipped": "no row reaches the quality bar"}
    progress.note("peers: starting the upstream recipe and rembg")
    peers = [safe_peer(lambda: upstream_peer(ref.source, options.threads), "upstream recipe", "PyTorch FP32"),
             safe_peer(lambda: rembg_peer(options.threads), "rembg", "rembg remove()"),
             runtime_peer("u2deploy fastest", f"{fastest.name} through Runtime.predict ({options.mode} processing)",
                          live[fastest.name].runtime)]  # fmt: skip
    try:
        with progress.bar(options.runs, "peers interleaved") as bar:
            results = compare_peers(peers, ref.photos, warmup=max(options.warmup, 1), runs=options.runs,
                                    seconds=options.seconds, pause=PAUSE, on_round=lambda _: bar.update(1))
    finally:
        for peer in peers[:2]:
            peer.close()
    return {"definition": DEFINITION, "quality_rule": rule, "fastest": fastest.name, "peers": results}


# --------------------------------------------------------------------------------------------


def run_bench(options: BenchOptions) -> BenchResult:
    """Run the whole benchmark (see the module docstring) and return what it measured."""
    from .machine import load_average, machine_info
    from .peak import measure_peak

    options.validate()
    require("torch", "u2deploy bench (exports and the PyTorch FP32 reference)")
    started, progress, machine = time.perf_counter(), Progress(options.progress), machine_info()
    progress.note(f"reference: PyTorch FP32 on {options.model} at {options.size}x{options.size}")
    ref = Reference.build(options.model, options.size)
    rows = plan_rows(options.formats, options.precisions, options.batches, ref.size, options.calibration)
    live = prepare_rows(rows, ref, options, progress)
    try:
        time_rows(live, options, progress)
        measure_throughput(live, ref, options, progress)
        if options.peak:
            progress.note("peak: timing the machine's FP32 (and INT8) matrix multiply")
        peak = measure_peak(options.threads) if options.peak else None
        achieved_compute(rows, ref.gflop, peak["fp32"]["gflops"] if peak else None)
        peers = run_peers(rows, live, ref, options, progress) if options.peers else None
    finally:
        for item in live.values():
            item.runtime.close()
    machine["load_average_after"] = load_average()
    return BenchResult(machine, options.to_dict(), ref.describe(), rows, peak, peers,
                       round(time.perf_counter() - started, 1), [options.note] if options.note else [])  # fmt: skip

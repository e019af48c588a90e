"""The row schema: one backend x precision x batch combination and everything measured for it.

One dataclass is the contract between the measuring code (`run`), the writers (`report`) and the
tests: JSON keeps the nested record, CSV and Markdown flatten it through `Row.flat()` with the
columns in `COLUMNS`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Row", "COLUMNS", "STATUSES", "row_name"]

STATUSES = ("ok", "skipped", "failed")

#: flat columns, in table order: (key, header)
COLUMNS: tuple[tuple[str, str], ...] = (
    ("name", "row"), ("status", "status"), ("size_mb", "size MB"), ("load_s", "load s"),
    ("p50_ms", "p50 ms"), ("p90_ms", "p90 ms"), ("p99_ms", "p99 ms"),
    ("preprocess_ms", "pre ms"), ("infer_ms", "infer ms"), ("postprocess_ms", "post ms"),
    ("throughput_ips", "img/s"), ("throughput_mode", "img/s mode"), ("peak_mb", "peak MB"),
    ("processing_mb", "pre+post MB"), ("max_abs", "max abs"), ("min_iou", "IoU min"), ("mean_iou", "IoU mean"),
    ("mae", "MAE"), ("map_mae", "map MAE max"), ("min_fbeta", "maxF min"), ("parity_passed", "parity gate"),
    ("achieved_gflops", "GFLOP/s"), ("peak_fraction", "of FP32 peak"), ("runs", "runs"), ("reason", "reason"),
    ("artifact", "artifact"),
)  # fmt: skip


def row_name(fmt: str, precision: str, batch: int) -> str:
    """`onnx fp32`, `openvino int8 b4`: the label of a row in tables and the chart."""
    return f"{fmt} {precision}" + (f" b{batch}" if batch != 1 else "")


@dataclass
class Row:
    """One combination and its measurements; times in ms, sizes in MB (10^6 bytes), memory in MiB.

    Attributes:
        fmt: `torch`, `onnx`, `openvino` or `trt`.
        backend: the runtime backend that ran it.
        precision: `fp32`, `fp16` or `int8`.
        batch: images per inference call.
        status: `ok`, `skipped` (this machine or release cannot do it) or `failed` (it should
            work and did not).
        reason: why it was skipped or failed.
        artifact: the file that was run; `cached` says it was reused, `export_s` what exporting it took.
        size_mb: artifact size on disk (the IR's .bin included).
        load_s: `Runtime(...)` construction: reading, compiling, first allocations.
        latency: end-to-end per call (decoded images in, maps at image size out): `Stats` fields.
        infer: inference alone per call: `Stats` fields.
        stages: p50 of preprocess / infer / postprocess per call.
        throughput_ips: images per second, see `throughput_mode`.
        peak_mb: RSS high-water mark while loading and running the first call, above the RSS before.
        retained_mb: RSS still held after that (weights, arenas, compiled kernels).
        processing_mb: peak numpy allocation of preprocess + postprocess of one call (tracemalloc).
        parity: `ParityReport.to_dict()` against PyTorch FP32 on the parity photos, less per-image rows.
        gflop: convolution GFLOP per image (2 FLOPs per multiply-accumulate).
        achieved_gflops: `gflop * batch / inference p50`.
        peak_fraction: `achieved_gflops` over the measured FP32 peak.
        describe: `Runtime.describe()` essentials (device, library versions).
    """

    fmt: str
    backend: str
    precision: str
    batch: int = 1
    status: str = "ok"
    reason: str = ""
    artifact: str | None = None
    cached: bool | None = None
    export_s: float | None = None
    size_mb: float | None = None
    load_s: float | None = None
    latency: dict[str, float] | None = None
    infer: dict[str, float] | None = None
    stages: dict[str, float] | None = None
    throughput_ips: float | None = None
    throughput_mode: str | None = None
    peak_mb: float | None = None
    retained_mb: float | None = None
    memory_method: str | None = None
    processing_mb: float | None = None
    parity: dict[str, Any] | None = None
    gflop: float | None = None
    achieved_gflops: float | None = None
    peak_fraction: float | None = None
    describe: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return row_name(self.fmt, self.precision, self.batch)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def mark(self, status: str, reason: str) -> Row:
        """Set a non-ok status; returns self."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {status!r}")
        self.status, self.reason = status, reason
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **asdict(self)}

    def flat(self) -> dict[str, Any]:
        """One value per `COLUMNS` key (None where not measured)."""
        latency, stages, parity = self.latency or {}, self.stages or {}, (self.parity or {})
        summary = parity.get("summary", {})
        values = {
            "name": self.name, "status": self.status, "reason": self.reason, "artifact": self.artifact,
            "size_mb": self.size_mb, "load_s": self.load_s, "p50_ms": latency.get("p50"),
            "p90_ms": latency.get("p90"), "p99_ms": latency.get("p99"), "runs": latency.get("n"),
            "preprocess_ms": stages.get("preprocess"), "infer_ms": stages.get("infer"),
            "postprocess_ms": stages.get("postprocess"), "throughput_ips": self.throughput_ips,
            "throughput_mode": self.throughput_mode, "peak_mb": self.peak_mb, "processing_mb": self.processing_mb,
            "max_abs": summary.get("max_abs"), "min_iou": summary.get("min_iou"), "mean_iou": summary.get("mean_iou"),
            "mae": summary.get("mae"), "map_mae": summary.get("map_mae"), "min_fbeta": summary.get("min_fbeta"), "parity_passed": parity.get("passed"),
            "achieved_gflops": self.achieved_gflops, "peak_fraction": self.peak_fraction,
        }  # fmt: skip
        return {key: values[key] for key, _ in COLUMNS}

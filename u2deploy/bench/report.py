"""Writers: JSON (everything), CSV (one flat line per row), Markdown (the tables) and PNG charts.

JSON is the record: machine, load average, versions, options, every row with its full stats and
parity, the peak, the peers, the paper tables. CSV and Markdown are views of it. matplotlib is
imported only to draw the charts; without it the other files are still written and the result
says why the chart is missing.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .._deps import available
from .rows import COLUMNS, Row

__all__ = ["markdown_table", "format_value", "bench_markdown", "write_bench", "write_paper", "paper_markdown",
           "rows_table", "speedups", "TABLE_COLUMNS"]  # fmt: skip

#: the columns of the printed / Markdown main table (the CSV has all of `rows.COLUMNS`)
TABLE_COLUMNS = ("name", "status", "size_mb", "load_s", "p50_ms", "p90_ms", "p99_ms", "preprocess_ms", "infer_ms",
                 "postprocess_ms", "speedup", "throughput_ips", "peak_mb", "max_abs", "min_iou", "mean_iou", "mae",
                 "map_mae", "min_fbeta", "achieved_gflops", "peak_fraction")  # fmt: skip
_HEADERS = {**dict(COLUMNS), "speedup": "speed-up"}
#: columns printed with a fixed number of decimals (sizes the paper gives to 0.1 MB, GFLOPs to 0.01)
_FIXED = {"size_mb": 1, "file": 1, "paper_file": 1, "gflop": 2}


def format_value(key: str, value: Any) -> str:
    """A cell: '' for None, 'pass'/'FAIL' for the gate, and per-column precision for numbers."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "pass" if value else "FAIL"
    if not isinstance(value, (int, float)) or isinstance(value, int) and key in ("runs", "n"):
        return str(value)
    if math.isnan(value):
        return "nan"
    if key == "max_abs":
        return f"{value:.1e}"
    if key in _FIXED:
        return f"{value:.{_FIXED[key]}f}"
    if key in ("min_iou", "mean_iou", "mae", "map_mae", "min_fbeta"):
        return f"{value:.4f}"
    if key == "peak_fraction":
        return f"{value:.0%}"
    if key in ("speedup",):
        return f"{value:.2f}x"
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def markdown_table(records: Sequence[Mapping[str, Any]], columns: Sequence[str],
                   headers: Mapping[str, str] | None = None) -> str:
    """A GitHub-flavoured Markdown table (also readable as plain text) of `records`' `columns` (tabulate)."""
    from tabulate import tabulate

    headers = headers or {}
    body = [[format_value(c, record.get(c)) for c in columns] for record in records]
    return tabulate(body, headers=[headers.get(c, c) for c in columns], tablefmt="github", disable_numparse=True)


def speedups(rows: Sequence[Row]) -> dict[str, float]:
    """End-to-end p50 speed-up of each ok row over the baseline: torch fp32 (batch 1), else the first ok row.

    Per image, so batched rows compare fairly; from the same interleaved run, so the ratio is
    free of the drift between processes.
    """
    timed = [row for row in rows if row.ok and row.latency]
    if not timed:
        return {}
    base = next((row for row in timed if row.fmt == "torch" and row.precision == "fp32" and row.batch == 1), timed[0])
    per_image = {row.name: row.latency["p50"] / row.batch for row in timed}
    return {name: per_image[base.name] / value for name, value in per_image.items()}


def rows_table(rows: Sequence[Row], columns: Sequence[str] = TABLE_COLUMNS) -> str:
    ratios = speedups(rows)
    records = [{**row.flat(), "speedup": ratios.get(row.name)} for row in rows]
    return markdown_table(records, columns, _HEADERS)


# --------------------------------------------------------------------------------------------
# Main benchmark


def _machine_line(machine: Mapping[str, Any]) -> str:
    load = machine.get("load_average")
    after = machine.get("load_average_after")
    flags = ", ".join(machine.get("cpu_flags") or []) or "none reported"
    text = f"{machine.get('cpu')}, {machine.get('cores')} cores ({flags})"
    if load:
        text += f"; load average {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f} (1/5/15 min) at the start"
    if after:
        text += f", {after[0]:.2f} at the end"
    return text


def _versions_line(machine: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in (machine.get("packages") or {}).items())


def _reasons(rows: Sequence[Row]) -> list[str]:
    return [f"- **{row.name}**: {row.status}: {row.reason}" for row in rows if not row.ok or row.reason]


def _peak_lines(peak: Mapping[str, Any] | None) -> list[str]:
    if not peak:
        return []
    fp32, int8 = peak["fp32"], peak["int8"]
    torch_rate = f"{fp32['torch_gflops']:.0f}" if fp32.get("torch_gflops") else "n/a"
    lines = ["## Physical limit", "",
             f"FP32 peak **{fp32['gflops']:.0f} GFLOP/s** ({fp32['method']}; torch {torch_rate}, numpy "
             f"{fp32['numpy_gflops']:.0f}). Each row's GFLOP/s is the model's convolution FLOPs per image x batch / "
             "inference p50; the last column is that over the FP32 peak (INT8 rows can exceed 100%: they do "
             "less work per FLOP counted)."]  # fmt: skip
    if int8.get("measured"):
        lines.append(f"INT8 peak {int8['gops']:.0f} GOP/s ({int8['method']}).")
    else:
        lines.append(f"INT8: {int8['reason']}.")
    return lines + [""]


def _peer_lines(peers: Mapping[str, Any] | None) -> list[str]:
    if not peers:
        return []
    lines = ["## Peers", "", f"Definition: {peers['definition']}. Equal quality: {peers['quality_rule']}.", ""]
    if "skipped" in peers:
        return lines + [f"Skipped: {peers['skipped']}.", ""]
    records = []
    for peer in peers["peers"]:
        latency = peer.get("latency") or {}
        records.append({"peer": peer["name"], "what": peer["description"], "status": peer["status"],
                        "p50_ms": latency.get("p50"), "mean_ms": latency.get("mean"),
                        "ratio": peer.get("ratio_vs_baseline"), "min_iou": peer.get("min_iou"),
                        "mean_iou": peer.get("mean_iou"), "note": peer.get("reason", "")})  # fmt: skip
    headers = {"p50_ms": "p50 ms", "mean_ms": "mean ms", "ratio": f"x time of {peers['fastest']}",
               "min_iou": "mask IoU min vs upstream", "mean_iou": "mean"}  # fmt: skip
    lines.append(markdown_table(records, ["peer", "what", "status", "p50_ms", "mean_ms", "ratio", "min_iou",
                                          "mean_iou", "note"], headers))  # fmt: skip
    return lines + [""]


def _verdict_lines(verdict: Mapping[str, Any] | None) -> list[str]:
    if not verdict:
        return []
    from .verdict import Verdict

    return ["## Verdict", "", "```text", *Verdict(**verdict).lines(), "```", ""]


def bench_markdown(result: Any, chart: str | None = "bench.png") -> str:
    """The Markdown report of a `BenchResult`."""
    model, options, machine = result.model, result.options, result.machine
    timing = f"{options['runs']} runs" if options.get("runs") else f"{options['seconds']} s"
    lines = [f"# u2deploy bench: {model['arch']} at {model['input_size'][0]}x{model['input_size'][1]}", "",
             *[f"> {note}\n" for note in result.notes],
             f"- Machine: {_machine_line(machine)}", f"- Versions: {_versions_line(machine)}",
             f"- Model: {model['source']} (sha256 {model['sha256'][:12]}), {model['params']:,} params, "
             f"{model['gflop_per_image']:.2f} GFLOP per image (conv only, 2 FLOPs/MAC)",
             f"- Timing: {options['warmup']} warm-up + {timing} per row, all rows interleaved in one process; "
             f"threads {options.get('threads') or 'library default'}; {options['mode']} pre/post-processing; "
             f"whole run {result.seconds:.0f} s",
             "- Latency: end to end per call (decoded photo in, map at the photo's size out), cycling over the "
             f"parity photos ({', '.join(model['photos'])}); pre/infer/post are the p50 of each stage; speed-up is "
             "per image against torch fp32 in the same run",
             "- Peak MB: RSS high-water mark while loading and running the first call, above the RSS before "
             "(VmHWM); parity: network output against PyTorch FP32 on the same tensors (compare.py)", ""]  # fmt: skip
    lines += _verdict_lines(getattr(result, "verdict", None))
    lines += ["## Rows", "", rows_table(result.rows), ""]
    lines += _reasons(result.rows) + [""]
    if chart:
        lines += [f"![latency vs parity]({chart})", ""]
    lines += _peak_lines(result.peak) + _peer_lines(result.peers)
    return "\n".join(lines).rstrip() + "\n"


def _write_json(data: Any, path: Path) -> Path:
    path.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")
    return path


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _write_csv(rows: Sequence[Row], path: Path) -> Path:
    ratios = speedups(rows)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[key for key, _ in COLUMNS] + ["speedup", "gflop"])
        writer.writeheader()
        for row in rows:
            writer.writerow({**row.flat(), "speedup": ratios.get(row.name), "gflop": row.gflop})
    return path


def _chart(draw: Callable[[Any], None], path: Path) -> Path | str:
    """Draw with matplotlib's Agg backend into `path`; without matplotlib, the reason instead."""
    if not available("matplotlib"):
        return "matplotlib is not installed (pip install 'u2deploy[bench]'); no chart"
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=(10, 5.5), dpi=110)
    try:
        draw(figure)
        figure.tight_layout()
        figure.savefig(path)
    finally:
        plt.close(figure)
    return path


def _draw_bench(result: Any) -> Callable[[Any], None]:
    def draw(figure: Any) -> None:
        axes = figure.add_subplot(1, 1, 1)
        quality = result.options.get("quality_iou", 0.97)
        for row in (r for r in result.rows if r.ok and r.latency and r.parity):
            summary = row.parity["summary"]
            x, mean, low = row.latency["p50"] / row.batch, summary["mean_iou"], summary["min_iou"]
            axes.errorbar([x], [mean], yerr=[[mean - low], [0]], fmt="o", capsize=3, label=row.name)
        axes.axhline(quality, linestyle="--", linewidth=0.8, color="grey", label=f"IoU {quality}")
        axes.set_xlim(left=0)
        axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: points stay visible
        axes.set_xlabel("end-to-end latency per image, p50 (ms)")
        axes.set_ylabel("mask IoU vs PyTorch FP32 (dot: mean, bar: worst photo)")
        machine = result.machine
        load = machine.get("load_average") or ["?"]
        axes.set_title(f"{result.model['arch']} {result.model['input_size'][0]}px on {machine.get('cpu')}, "
                       f"{machine.get('cores')} cores, load {load[0]}", fontsize=9)  # fmt: skip
        axes.grid(alpha=0.3)

    return draw


def write_bench(result: Any, out: str | Path) -> dict[str, Path | str]:
    """bench.json, bench.csv, bench.md and bench.png in folder `out`; returns what went where."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path | str] = {"json": _write_json(result.to_dict(), folder / "bench.json"),
                                      "csv": _write_csv(result.rows, folder / "bench.csv")}  # fmt: skip
    written["png"] = _chart(_draw_bench(result), folder / "bench.png")
    chart = "bench.png" if isinstance(written["png"], Path) else None
    markdown = (folder / "bench.md")
    markdown.write_text(bench_markdown(result, chart))
    written["md"] = markdown
    return written


# --------------------------------------------------------------------------------------------
# --paper


def paper_markdown(result: Any, chart: str | None = "paper.png") -> str:
    """The Markdown report of a `PaperResult`: the five blocks, then the model table."""
    data = result.to_dict()
    backends = data["backends"]
    lines = [f"# U2-Net paper cost comparison (Fig. 4) on {data['machine'].get('cpu')}", "",
             *[f"> {note}\n" for note in data.get("notes", [])],
             f"- Machine: {_machine_line(data['machine'])}", f"- Versions: {_versions_line(data['machine'])}",
             f"- {data['timing']}", "", "## Blocks: 1x3x320x320 -> 1x64x320x320", "",
             "GFLOPs count convolutions only, 2 FLOPs per multiply-accumulate (FlopCounterMode, as REFERENCE.md); "
             "params include BatchNorm. Latency p50 in ms per backend, all blocks and backends interleaved.", ""]  # fmt: skip
    records, columns = [], ["block", "config", "params", "gflop", *[f"{b}_ms" for b in backends]]
    for block in data["blocks"]:
        records.append({"block": block["name"], "config": block["config"], "params": f"{block['params']:,}",
                        "gflop": block["gflop"], **{f"{b}_ms": block["latency_ms"].get(b) for b in backends}})
    lines += [markdown_table(records, columns, {"gflop": "GFLOPs", **{f"{b}_ms": f"{b} ms" for b in backends}}), ""]
    if chart:
        lines += [f"![blocks]({chart})", ""]
    lines += ["## Models at 320x320", "", data["model_note"], ""]
    records = []
    for model in data["models"]:
        records.append({"model": model["name"], "params": f"{model['params']:,}", "file": model["file_mb"],
                        "paper_file": model["paper_file_mb"], "gflop": model["gflop"],
                        **{f"{b}_fps": model["fps"].get(b) for b in backends}, "paper_fps": model["paper_fps"]})
    columns = ["model", "params", "file", "paper_file", "gflop", *[f"{b}_fps" for b in backends], "paper_fps"]
    headers = {"file": "file MB", "paper_file": "paper MB", "gflop": "GFLOPs",
               **{f"{b}_fps": f"{b} FPS (this CPU)" for b in backends},
               "paper_fps": "paper FPS (GTX 1080 Ti, different hardware)"}  # fmt: skip
    lines += [markdown_table(records, columns, headers), ""]
    skipped = data.get("skipped") or {}
    lines += [f"- {name}: skipped: {reason}" for name, reason in skipped.items()]
    return "\n".join(lines).rstrip() + "\n"


def _draw_paper(result: Any) -> Callable[[Any], None]:
    data = result.to_dict()

    def draw(figure: Any) -> None:
        names = [block["name"] for block in data["blocks"]]
        left, right = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
        left.bar(names, [block["gflop"] for block in data["blocks"]], color="tab:blue")
        left.set_ylabel("GFLOPs (conv, 2 FLOPs/MAC)")
        left.set_title("cost, 320x320x3 -> 320x320x64", fontsize=9)
        width = 0.8 / max(len(data["backends"]), 1)
        for k, backend in enumerate(data["backends"]):
            values = [block["latency_ms"].get(backend) or 0 for block in data["blocks"]]
            right.bar([i + k * width for i in range(len(names))], values, width, label=backend)
        right.set_xticks([i + width * (len(data["backends"]) - 1) / 2 for i in range(len(names))], names)
        right.set_ylabel("latency p50 (ms)")
        right.set_title(f"measured on {data['machine'].get('cpu')}", fontsize=9)
        right.legend(fontsize=8)

    return draw


def write_paper(result: Any, out: str | Path) -> dict[str, Path | str]:
    """paper.json, paper.md and paper.png in folder `out`."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path | str] = {"json": _write_json(result.to_dict(), folder / "paper.json")}
    written["png"] = _chart(_draw_paper(result), folder / "paper.png")
    markdown = folder / "paper.md"
    markdown.write_text(paper_markdown(result, "paper.png" if isinstance(written["png"], Path) else None))
    written["md"] = markdown
    return written

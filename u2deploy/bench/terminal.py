"""The terminal report of `u2deploy bench`: one compact table (<= 100 columns) and the verdict.

The full 21-column table stays in `bench.md`/`bench.csv`; the terminal gets what a decision needs
(row, p50 ms, speed-up, IoU mean/worst, size, verdict), drawn by `rich` so the columns fit the
width instead of wrapping line by line.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

from .report import format_value, speedups
from .rows import Row

__all__ = ["terminal_report", "WIDTH", "row_verdict"]

#: the report never gets wider than this, whatever the terminal
WIDTH = 100


def row_verdict(row: Row, quality_iou: float, best: str | None) -> str:
    """One word or two for the last column."""
    if not row.ok:
        return row.status
    if not row.parity or not row.latency:
        return "not timed"
    if row.name == best:
        return "SHIP"
    if row.batch != 1:
        return f"batch {row.batch}"
    return "passes" if row.parity["summary"]["mean_iou"] >= quality_iou else "below target"


def _cells(row: Row, ratio: float | None, quality_iou: float, best: str | None) -> list[str]:
    summary = (row.parity or {}).get("summary", {})
    iou = ""
    if summary:
        iou = f"{format_value('mean_iou', summary['mean_iou'])} / {format_value('min_iou', summary['min_iou'])}"
    p50 = row.latency["p50"] / row.batch if row.latency else None
    return [row.name, format_value("p50_ms", p50), format_value("speedup", ratio), iou,
            format_value("size_mb", row.size_mb), row_verdict(row, quality_iou, best)]  # fmt: skip


def _reasons(rows: Sequence[Row]) -> list[str]:
    """One line per skipped or failed row, cut to the width (the full reason is in bench.md)."""
    lines = []
    for row in rows:
        if not row.ok:
            text = f"{row.name}: {row.status}: {row.reason}"
            lines.append(text if len(text) <= WIDTH else text[: WIDTH - 3] + "...")
    return lines


def terminal_report(result: Any, width: int | None = None, color: bool = False) -> str:
    """The compact table, the skip reasons and the verdict, as text at most `WIDTH` columns wide."""
    from rich.console import Console
    from rich.table import Table

    verdict: Mapping[str, Any] = getattr(result, "verdict", None) or {}
    quality = result.options.get("quality_iou", 0.97)
    model = result.model
    table = Table(title=f"{model['arch']} {model['input_size'][0]}x{model['input_size'][1]}: p50 end to end per "
                        "image; IoU vs PyTorch FP32", title_justify="left")  # fmt: skip
    for header, justify in (("row", "left"), ("ms", "right"), ("speed-up", "right"), ("IoU mean / worst", "right"),
                            ("size MB", "right"), ("verdict", "left")):  # fmt: skip
        table.add_column(header, justify=justify)
    ratios = speedups(result.rows)
    for row in result.rows:
        table.add_row(*_cells(row, ratios.get(row.name), quality, verdict.get("row")))
    buffer = io.StringIO()
    console = Console(file=buffer, width=min(width or WIDTH, WIDTH), force_terminal=color, no_color=not color,
                      highlight=False, soft_wrap=False)  # fmt: skip
    console.print(table)
    text = buffer.getvalue().rstrip()
    extra = _reasons(result.rows)
    if verdict:
        from .verdict import Verdict

        extra += [""] + Verdict(**verdict).lines()
    return "\n".join([text, *extra]) + "\n"

"""The run's log: one row per logging interval or validation, as CSV and as JSON Lines.

Both files are appended to and flushed after every row, so a crashed or interrupted run keeps
everything logged until then. On resume, rows past the checkpoint's step are dropped first: the
resumed run computes those steps again, and keeping both would log them twice.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from .._io import atomic_write_text
from .loss import TERM_NAMES
from .metrics import METRICS

__all__ = ["RunLog", "COLUMNS", "read_log"]

#: `kind` is `train` (means over the interval) or `val` (the validation set at that step).
COLUMNS: tuple[str, ...] = ("kind", "step", "epoch", "elapsed_s", "lr", "loss", *TERM_NAMES, "img_per_s",
                            "sec_per_step", *METRICS)  # fmt: skip


class RunLog:
    """Writes `log.csv` and `log.jsonl` in the run folder; a no-op on ranks other than 0."""

    def __init__(self, run_dir: str | Path, enabled: bool = True, resume_step: int | None = None) -> None:
        self.enabled = enabled
        self.csv_path = Path(run_dir) / "log.csv"
        self.json_path = Path(run_dir) / "log.jsonl"
        self._csv = self._json = None
        if not enabled:
            return
        if resume_step is not None:
            self._truncate(resume_step)
        new = not self.csv_path.exists()
        self._csv = open(self.csv_path, "a", newline="", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self._json = open(self.json_path, "a", encoding="utf-8")  # noqa: SIM115
        self._writer = csv.DictWriter(self._csv, fieldnames=COLUMNS, extrasaction="ignore")
        if new:
            self._writer.writeheader()

    def _truncate(self, step: int) -> None:
        """Keep only rows up to `step` in both files (rewritten atomically)."""
        if self.csv_path.exists():
            with open(self.csv_path, newline="", encoding="utf-8") as handle:
                rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= step]
            lines = [",".join(COLUMNS)] + [_csv_line(r) for r in rows]
            atomic_write_text(self.csv_path, "\r\n".join(lines) + "\r\n")
        if self.json_path.exists():
            kept = [line for line in self.json_path.read_text(encoding="utf-8").splitlines()
                    if line.strip() and json.loads(line)["step"] <= step]  # fmt: skip
            atomic_write_text(self.json_path, "".join(line + "\n" for line in kept))

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        clean = {k: _plain(v) for k, v in row.items()}
        self._writer.writerow(clean)
        self._csv.flush()
        self._json.write(json.dumps(clean) + "\n")
        self._json.flush()

    def close(self) -> None:
        for handle in (self._csv, self._json):
            if handle is not None:
                handle.close()
        self._csv = self._json = None


def _csv_line(row: dict[str, str]) -> str:
    import io

    buffer = io.StringIO()
    csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="").writerow(row)
    return buffer.getvalue()


def _plain(value: Any) -> Any:
    """JSON-safe scalars: NaN and infinity become None (empty in the CSV)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a run's `log.jsonl` (handy in notebooks and tests)."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


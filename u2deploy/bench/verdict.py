"""The decision `u2deploy bench` ends with: which artifact to ship on this machine, and how to run it.

The rule: the batch-1 row with the lowest end-to-end p50 whose mean mask IoU against PyTorch FP32
reaches the quality target (`--quality-iou`, 0.97 by default). The verdict names its file (placed
under the results folder with a readable name, see `place_artifacts`), the commands that run it,
and what the other rows trade (faster at lower IoU, or slower at higher IoU).

Every row is a file that carries the settings its gate verified (the bf16 row is the bf16 IR, whose
settings say bf16), so the commands are plain `Runtime(path)` and `u2deploy predict path`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .rows import Row

__all__ = ["Verdict", "decide", "place_artifacts", "verdict_for", "PEERS_HINT"]

#: how to add the peers (rembg) when they are missing: with `all` in one call, because rembg>=2.0.86 pins
#: scikit-image>=0.26 while pysodmetrics (in `all`) pins <0.26; together pip picks a rembg that fits both
PEERS_HINT = "pip install 'u2deploy[all,peers]' (one call: pip picks a rembg that fits)"

@dataclass
class Verdict:
    """What to ship. Attributes are plain data so `bench.json` records them as they were printed.

    Attributes:
        target: the quality rule, in words.
        row: the chosen row's name (None when no row reaches the target).
        path: its artifact, placed under the results folder (or the weights name for torch rows).
        p50_ms, speedup, mean_iou, min_iou: the chosen row's numbers.
        python, cli: commands that run it.
        tradeoffs: one line per other row worth knowing about.
        notes: what is missing (e.g. how to add the peers).
    """

    target: str
    row: str | None = None
    path: str | None = None
    p50_ms: float | None = None
    speedup: float | None = None
    mean_iou: float | None = None
    min_iou: float | None = None
    python: str | None = None
    cli: str | None = None
    tradeoffs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        """The few lines printed after the table."""
        if self.row is None:
            return [f"No row reaches the target ({self.target}); lower --quality-iou or check the failed rows.",
                    *self.notes]  # fmt: skip
        lines = [f"Target: {self.target}",
                 f"Ship: {self.row} ({self.speedup:.1f}x PyTorch FP32, mean IoU {self.mean_iou:.3f}, "
                 f"worst {self.min_iou:.3f})",
                 f"  file:   {self.path}", f"  python: {self.python}", f"  cli:    {self.cli}"]  # fmt: skip
        if self.tradeoffs:
            lines.append("Trade-offs:")
            lines += [f"  {line}" for line in self.tradeoffs]
        return lines + self.notes


def _iou(row: Row) -> tuple[float, float]:
    summary = row.parity["summary"]
    return summary["mean_iou"], summary["min_iou"]


def _candidates(rows: Sequence[Row]) -> list[Row]:
    """Batch-1 rows that ran, were timed and were compared, fastest first."""
    timed = [row for row in rows if row.ok and row.batch == 1 and row.latency and row.parity]
    return sorted(timed, key=lambda row: row.latency["p50"])


def _commands(path: str) -> tuple[str, str]:
    python = f'Runtime("{path}").predict("photo.jpg")'
    return python, f"u2deploy predict {path} photos/ -o out/"


def _tradeoff(row: Row, best: Row) -> str:
    ratio = best.latency["p50"] / row.latency["p50"]
    mean, worst = _iou(row)
    speed = f"{ratio:.1f}x faster" if ratio >= 1 else f"{1 / ratio:.1f}x slower"
    size = "" if row.size_mb is None else f", {row.size_mb:.0f} MB" if row.size_mb >= 10 else f", {row.size_mb:.1f} MB"
    return f"{row.name}: {speed} at mean IoU {mean:.3f} (worst {worst:.3f}){size}"


def decide(rows: Sequence[Row], quality_iou: float, placed: Mapping[str, str] | None = None,
           speedups: Mapping[str, float] | None = None, model: str = "u2net", peers_missing: bool = False,
           photos: int = 5) -> Verdict:  # fmt: skip
    """The verdict for `rows`: the fastest batch-1 row with mean mask IoU >= `quality_iou`.

    Args:
        rows: the measured rows.
        quality_iou: the target mean mask IoU against PyTorch FP32.
        placed: row name -> the artifact's readable path under the results folder.
        speedups: row name -> speed-up over PyTorch FP32 (`report.speedups`).
        model: the weights name or checkpoint the torch rows ran (their "file").
        peers_missing: add the line that says how to install rembg.
        photos: how many parity photos the IoU is measured on.
    """
    placed, speedups = placed or {}, speedups or {}
    target = f"mean mask IoU >= {quality_iou} vs PyTorch FP32 on {photos} photos, batch 1"
    verdict = Verdict(target=target)
    if peers_missing:
        verdict.notes.append(f"Peers: rembg is not installed; add it with {PEERS_HINT}")
    ordered = _candidates(rows)
    passing = [row for row in ordered if _iou(row)[0] >= quality_iou]
    if not passing:
        return verdict
    best = passing[0]
    path = model if best.fmt == "torch" else placed.get(best.name) or best.artifact or ""
    verdict.row, verdict.path = best.name, str(path)
    verdict.p50_ms, verdict.speedup = best.latency["p50"], speedups.get(best.name, 1.0)
    verdict.mean_iou, verdict.min_iou = _iou(best)
    verdict.python, verdict.cli = _commands(str(path))
    faster = [row for row in ordered if row.latency["p50"] < best.latency["p50"]]
    slower = passing[1:3]
    verdict.tradeoffs = [_tradeoff(row, best) for row in faster + slower]
    return verdict


# --------------------------------------------------------------------------------------------
# Artifacts under the results folder


def _link(source: Path, target: Path) -> None:
    """Hard-link `source` to `target` (same inode: no copy, survives the cache being cleared); copy across devices."""
    if target.exists() and os.path.samefile(source, target):
        return
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:  # another file system, or links not allowed: a copy, written beside and renamed
        shutil.copy2(source, tmp)
    os.replace(tmp, target)


def _files(artifact: Path) -> list[Path]:
    from ..runtimes.base import sidecar_path
    from .matrix import artifact_files

    return [*artifact_files(artifact), *[p for p in [sidecar_path(artifact)] if p.is_file()]]


def place_artifacts(rows: Sequence[Row], out: str | Path) -> dict[str, str]:
    """Link every exported artifact a row ran (with its .bin and manifest) into `out/artifacts/`.

    The names are the exporter's readable ones (`u2net_320_int8.xml`); rows that share a file
    (OpenVINO fp32 and bf16) share the link. Returns row name -> placed path.
    """
    folder = Path(out) / "artifacts"
    placed: dict[str, str] = {}
    for row in rows:
        if not row.ok or row.fmt == "torch" or not row.artifact or not Path(row.artifact).is_file():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        for source in _files(Path(row.artifact)):
            _link(source, folder / source.name)
        placed[row.name] = str(folder / Path(row.artifact).name)
    return placed


def verdict_for(result: Any, out: str | Path) -> Verdict:
    """Place the artifacts of `result` under `out/artifacts/` and decide; the verdict is also stored on `result`."""
    from .._deps import available
    from .report import speedups

    placed = place_artifacts(result.rows, out)
    verdict = decide(result.rows, result.options.get("quality_iou", 0.97), placed, speedups(result.rows),
                     model=result.options.get("model", "u2net"), peers_missing=not available("rembg"),
                     photos=len(result.model.get("photos") or []) or 5)  # fmt: skip
    result.verdict = verdict.to_dict()
    return verdict

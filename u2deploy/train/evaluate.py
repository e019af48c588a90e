"""Evaluate any `Runtime` artifact on an image/mask dataset, and write the report.

The model is whatever `Runtime` opens (a `.pth`, `.onnx`, `.xml`, `.engine` or a weights name),
with its own pre/post-processing, so an FP16 or INT8 artifact is judged on the task metric and
not only on parity with PyTorch. Maps are predicted at each image's own size (the standard SOD
protocol: network at 320, bilinear back to the image), turned into 8-bit maps as a saved PNG would
be, and scored with `SODMetrics` against the 8-bit ground truth.

Report files: ``summary.json``, ``summary.md``, ``per_image.csv`` (MAE and relaxed boundary F per
image, worst first, to find failures), ``pr_curve.png`` and ``fbeta_curve.png``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._io import atomic_path, atomic_write_text
from ..processing import load_image, to_mask_u8
from .data import load_pairs, mask_to_u8
from .metrics import METRICS, SODMetrics

__all__ = ["EvalResult", "evaluate_dataset", "write_report"]


@dataclass
class EvalResult:
    """Dataset-level metrics (keys of `metrics.METRICS`), curves and per-image scores."""

    model: str
    backend: str
    dataset: str
    count: int
    metrics: dict[str, float]
    curves: dict[str, list[float]] = field(repr=False)
    per_image: list[dict[str, Any]] = field(repr=False)
    seconds: float = 0.0
    runtime: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("per_image")
        return data


def evaluate_dataset(runtime: Any, data: str | os.PathLike | Sequence[str | os.PathLike], *, rho: float = 3,
                     limit: int | None = None, batch: int = 1,
                     progress: Callable[[int], None] | None = None) -> EvalResult:
    """Predict every image of `data` with `runtime` and score the maps.

    Args:
        runtime: an open `Runtime`.
        data: a dataset root, or an images folder and a masks folder (see `train.data`).
        rho: relaxed boundary F-measure tolerance in pixels.
        limit: evaluate only the first `limit` pairs (sorted by stem).
        batch: images per `predict` call, for artifacts that batch.
        progress: called with the number of images done after each call (a tqdm bar's `update`).
    """
    pairs = load_pairs(data)[:limit] if limit else load_pairs(data)
    metrics, per_image = SODMetrics(rho=rho), []
    start = time.perf_counter()
    for first in range(0, len(pairs), batch):
        chunk = pairs[first:first + batch]
        maps = runtime.predict([load_image(p.image) for p in chunk])
        for pair, saliency in zip(chunk, maps, strict=True):
            scores = metrics.update(to_mask_u8(saliency), mask_to_u8(load_image(pair.mask)))
            per_image.append({"image": pair.image.name, **scores})
        if progress:
            progress(len(chunk))
    dataset = " + ".join(str(p) for p in ([data] if isinstance(data, (str, os.PathLike)) else data))
    return EvalResult(model=str(getattr(runtime, "path", runtime)), backend=getattr(runtime, "backend", "?"),
                      dataset=dataset, count=len(pairs), metrics=metrics.results(), curves=metrics.curves(),
                      per_image=per_image, seconds=time.perf_counter() - start,
                      runtime=_describe(runtime))  # fmt: skip


def _describe(runtime: Any) -> dict[str, Any]:
    try:
        return json.loads(json.dumps(runtime.describe(), default=str))
    except Exception:  # describe() is informative only; never fail an evaluation over it
        return {}


def markdown_table(result: EvalResult) -> str:
    """The metrics as a GitHub Markdown table (tabulate)."""
    from tabulate import tabulate

    body = [[label, f"{result.metrics[key]:.4f}"] for key, (label, _) in METRICS.items()]
    return tabulate(body, headers=["metric", "value"], tablefmt="github", disable_numparse=True)


def write_report(result: EvalResult, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write the summary (JSON, Markdown), per-image CSV and the two curve plots into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "summary.json", "markdown": out / "summary.md", "per_image": out / "per_image.csv",
             "pr_curve": out / "pr_curve.png", "fbeta_curve": out / "fbeta_curve.png"}  # fmt: skip
    atomic_write_text(paths["json"], json.dumps(result.to_dict(), indent=2) + "\n")
    atomic_write_text(paths["markdown"], _markdown(result))
    atomic_write_text(paths["per_image"], _per_image_csv(result.per_image))
    _plot_pr(result, paths["pr_curve"])
    _plot_fbeta(result, paths["fbeta_curve"])
    return paths


def _markdown(result: EvalResult) -> str:
    return (f"# Evaluation of `{Path(result.model).name}`\n\n"
            f"- model: `{result.model}` (backend {result.backend})\n- dataset: `{result.dataset}` "
            f"({result.count} images)\n- time: {result.seconds:.1f} s\n\n{markdown_table(result)}\n\n"
            "F-beta uses beta^2 = 0.3; max/mean F are over thresholds 0..255 of the mean curve; "
            "relaxed boundary F uses rho = 3 px (BASNet).\n")  # fmt: skip


def _per_image_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["image", "mae", "relax_fb"])
    writer.writeheader()
    writer.writerows(sorted(rows, key=lambda r: -r["mae"]))
    return buffer.getvalue()


def _figure(title: str, xlabel: str, ylabel: str) -> tuple[Any, Any]:
    """A matplotlib figure on the Agg canvas, without pyplot (no global backend state)."""
    from .._deps import require

    require("matplotlib", "the PR and F-beta curve plots")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel, xlim=(0, 1) if xlabel == "recall" else (0, 255), ylim=(0, 1.01))
    axes.grid(alpha=0.3)
    return figure, axes


def _save_figure(figure: Any, path: Path) -> None:
    figure.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, format="png")


def _plot_pr(result: EvalResult, path: Path) -> None:
    figure, axes = _figure("Precision-recall", "recall", "precision")
    axes.plot(result.curves["recall"], result.curves["precision"], label=Path(result.model).name)
    axes.legend(loc="lower left")
    _save_figure(figure, path)


def _plot_fbeta(result: EvalResult, path: Path) -> None:
    figure, axes = _figure("F-beta over thresholds", "threshold", "F-beta (beta^2 = 0.3)")
    fbeta = result.curves["fbeta"]
    best = max(range(len(fbeta)), key=fbeta.__getitem__)
    axes.plot(result.curves["threshold"], fbeta, label=Path(result.model).name)
    axes.scatter([best], [fbeta[best]], color="red", zorder=3, label=f"max F {fbeta[best]:.3f} at {best}")
    axes.legend(loc="lower center")
    _save_figure(figure, path)

"""Which layers INT8 hurts: per block (or conv), the mask-quality drop alone-INT8 and alone-float.

Like Polygraphy's precision bisection, but judged on masks. Every variant is the calibrated Q/DQ
graph with some convs taken back to float (`mixed.float_convs`: same scales, no recalibration),
run on ONNX Runtime with graph optimisation off, which computes each Q/DQ pair literally, as an
exact INT8 engine does. That is exact and cheap enough on a CPU (one session per variant, about a
second per photo at 320x320 for U2-Net), so no torch fake-quant copy is needed here. Each variant
is compared with the fp32 graph's maps on held-out photos never calibrated on (`held_out_photos`):
mask IoU at 0.5, map MAE and boundary F (Perazzi et al.'s boundary measure, 2-pixel tolerance),
after min-max normalisation as the export gate does.

* `alone_float[g]`: everything INT8 except group g -> how much quality g's INT8 costs in context;
* `alone_int8[g]`: everything float except group g -> g's error on its own.

Groups are U2-Net's RSU blocks and side heads (`block`, 17 groups; the fuse conv stays float as
in every export) and, inside the worst blocks, single convs (`refine`). Results are cached on disk
under `weights.cache_dir()/calibration/sensitivity/`, keyed on both graphs and the photos.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from .._deps import require
from .._io import atomic_write_text
from ..compare import mask_iou, min_max
from .cache import graph_sha256
from .mixed import conv_groups, float_convs, quantized_nodes

__all__ = ["HELD_OUT_EXTRA", "held_out_photos", "boundary_f", "Score", "Emulator", "SensitivityReport",
           "measure_sensitivity", "cached_score", "write_report", "markdown"]

#: Real photos other packages ship, added to `samples.PARITY_PHOTOS` as held-out images (package, name).
HELD_OUT_EXTRA = (("sklearn", "china"), ("sklearn", "flower"), ("matplotlib", "grace_hopper"))


def _extra_photo(package: str, name: str) -> np.ndarray | None:
    """One photo shipped by scikit-learn or matplotlib, or None when that package is not installed."""
    from .._deps import available

    if not available(package):
        return None
    if package == "sklearn":
        from sklearn.datasets import load_sample_image

        return np.asarray(load_sample_image(f"{name}.jpg"))
    from matplotlib.cbook import get_sample_data
    from PIL import Image

    with get_sample_data(f"{name}.jpg") as handle:
        return np.asarray(Image.open(handle).convert("RGB"))


def held_out_photos(extra: bool = True) -> dict[str, np.ndarray]:
    """The parity photos, plus (with `extra`) the scikit-learn/matplotlib photos that are installed."""
    from ..samples import PARITY_PHOTOS, sample_photos

    photos = sample_photos(PARITY_PHOTOS)
    for package, name in HELD_OUT_EXTRA if extra else ():
        image = _extra_photo(package, name)
        if image is not None:
            photos[name] = image
    return photos


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels of a mask with a 4-neighbour outside it."""
    padded = np.pad(mask, 1, mode="edge")
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(radius):
        padded = np.pad(out, 1)
        out = (padded[1:-1, 1:-1] | padded[:-2, 1:-1] | padded[2:, 1:-1] | padded[1:-1, :-2] | padded[1:-1, 2:])
    return out


def boundary_f(reference: np.ndarray, candidate: np.ndarray, radius: int = 2, threshold: float = 0.5) -> float:
    """Boundary F of two maps binarised at `threshold` (DAVIS's F, numpy only: no scipy needed)."""
    ref, cand = _boundary(reference >= threshold), _boundary(candidate >= threshold)
    if not ref.any() and not cand.any():
        return 1.0
    precision = np.count_nonzero(cand & _dilate(ref, radius)) / max(np.count_nonzero(cand), 1)
    recall = np.count_nonzero(ref & _dilate(cand, radius)) / max(np.count_nonzero(ref), 1)
    return 0.0 if precision + recall == 0 else float(2 * precision * recall / (precision + recall))


@dataclass(frozen=True)
class Score:
    """Mask quality of one graph against the fp32 maps, per photo and summarised."""

    iou: dict[str, float]
    map_mae: dict[str, float]
    boundary_f: dict[str, float]

    @property
    def mean_iou(self) -> float:
        return float(np.mean(list(self.iou.values())))

    @property
    def worst(self) -> tuple[str, float]:
        name = min(self.iou, key=self.iou.get)
        return name, self.iou[name]

    def summary(self) -> dict[str, Any]:
        name, value = self.worst
        return {"mean_iou": round(self.mean_iou, 4), "worst_iou": round(value, 4), "worst_image": name,
                "mean_map_mae": round(float(np.mean(list(self.map_mae.values()))), 5),
                "mean_boundary_f": round(float(np.mean(list(self.boundary_f.values()))), 4)}

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary(), "iou": self.iou, "map_mae": self.map_mae, "boundary_f": self.boundary_f}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Score:
        return cls(data["iou"], data["map_mae"], data["boundary_f"])

    def subset(self, names: list[str]) -> Score:
        return Score(*({name: values[name] for name in names} for values in (self.iou, self.map_mae, self.boundary_f)))


class Emulator:
    """Runs ONNX graphs in exact INT8 emulation (ONNX Runtime, optimisation off) on the held-out photos.

    Args:
        fp32_model: the fp32 graph; its maps are the reference.
        photos: name -> image; None means `held_out_photos()`.
        threads: ONNX Runtime intra-op threads.
        spec: input size and statistics; None reads them from the fp32 graph's u2deploy metadata.
    """

    def __init__(self, fp32_model: Any, photos: dict[str, np.ndarray] | None = None, threads: int = 0,
                 spec: Any = None) -> None:
        from ..processing import preprocess_batch
        from ..spec import METADATA_KEY, ModelSpec

        embedded = {p.key: p.value for p in fp32_model.metadata_props}.get(METADATA_KEY)
        if spec is None and embedded is None:
            from ..errors import InputError

            raise InputError("the fp32 ONNX carries no u2deploy metadata; export it with `u2deploy export`")
        self.spec = spec if spec is not None else ModelSpec.from_json(embedded)
        photos = photos if photos is not None else held_out_photos()
        self.names = list(photos)
        self.batch, _ = preprocess_batch(list(photos.values()), self.spec, mode="reference")
        self.threads = threads
        self.reference = self.maps(fp32_model)

    def maps(self, model: Any) -> np.ndarray:
        """The first output for every photo, one image at a time (the graphs have a static batch of 1)."""
        ort = require("onnxruntime", "INT8 sensitivity (exact INT8 emulation)")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.intra_op_num_threads = self.threads
        options.log_severity_level = 3
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return np.concatenate([session.run(None, {name: self.batch[i:i + 1]})[0] for i in range(len(self.batch))])

    def score(self, model: Any) -> Score:
        """Quality of `model`'s maps against the fp32 ones."""
        candidate = self.maps(model)
        iou, mae, bf = {}, {}, {}
        for name, ref, cand in zip(self.names, self.reference, candidate, strict=True):
            ref, cand = min_max(ref.reshape(ref.shape[-2:])), min_max(cand.reshape(cand.shape[-2:]))
            iou[name] = round(mask_iou(ref, cand), 5)
            mae[name] = round(float(np.mean(np.abs(ref - cand))), 6)
            bf[name] = round(boundary_f(ref, cand), 5)
        return Score(iou, mae, bf)

    def subset(self, names: list[str]) -> Emulator:
        """The same runner on some of the photos, sharing their inputs and fp32 maps (no new reference run)."""
        index = [self.names.index(name) for name in names]
        part = object.__new__(Emulator)
        part.spec, part.threads, part.names = self.spec, self.threads, list(names)
        part.batch, part.reference = self.batch[index], self.reference[index]
        return part

    def digest(self) -> str:
        """Hash of the photos as preprocessed (part of the sensitivity cache key)."""
        return hashlib.sha256(self.batch.tobytes() + "|".join(self.names).encode()).hexdigest()


@dataclass
class SensitivityReport:
    """Scores of the full-INT8 graph and of every variant, with the MACs of each group.

    Attributes:
        baseline: the Q/DQ graph as calibrated (every quantized conv INT8).
        groups: group -> its convs.
        macs: group -> multiply-accumulates per image.
        alone_float: group -> score with only that group float.
        alone_int8: group -> score with only that group INT8.
        photos: the photo names the variants were measured on.
        full_baseline: `baseline` on every photo, when the variants were measured on the worst few.
    """

    baseline: Score
    groups: dict[str, list[str]]
    macs: dict[str, int]
    alone_float: dict[str, Score] = field(default_factory=dict)
    alone_int8: dict[str, Score] = field(default_factory=dict)
    photos: list[str] = field(default_factory=list)
    full_baseline: Score | None = None
    cache_path: Path | None = None

    def ranking(self) -> list[str]:
        """Groups, most harmful first: the largest mean-IoU gain when that group alone is float."""
        base = self.baseline.mean_iou
        return sorted(self.alone_float, key=lambda g: (-(self.alone_float[g].mean_iou - base),
                                                       -(self.alone_float[g].worst[1])))

    def rows(self) -> list[dict[str, Any]]:
        """One row per group, ranked, with the drops against float (alone INT8) and the gains (alone float)."""
        total = sum(m for g, m in self.macs.items() if ":" not in g) or 1  # refined convs are inside their block
        rows = []
        for rank, group in enumerate(self.ranking(), start=1):
            gain, alone = self.alone_float[group].summary(), self.alone_int8.get(group)
            drop = alone.summary() if alone is not None else {}
            rows.append({"rank": rank, "group": group, "convs": len(self.groups[group]),
                         "macs_percent": round(100 * self.macs.get(group, 0) / total, 2),
                         "float_mean_iou": gain["mean_iou"], "float_worst_iou": gain["worst_iou"],
                         "float_gain_iou": round(gain["mean_iou"] - self.baseline.mean_iou, 4),
                         "int8_alone_iou_drop": round(1 - drop["mean_iou"], 4) if drop else None,
                         "int8_alone_worst_iou": drop.get("worst_iou"),
                         "int8_alone_map_mae": drop.get("mean_map_mae"),
                         "int8_alone_boundary_f": drop.get("mean_boundary_f")})  # fmt: skip
        return rows

    def to_dict(self) -> dict[str, Any]:
        full = self.full_baseline.to_dict() if self.full_baseline is not None else None
        return {"baseline": self.baseline.to_dict(), "baseline_all_photos": full, "photos": self.photos,
                "groups": self.groups,
                "macs": self.macs, "ranking": self.rows(),
                "alone_float": {g: s.to_dict() for g, s in self.alone_float.items()},
                "alone_int8": {g: s.to_dict() for g, s in self.alone_int8.items()}}  # fmt: skip


def conv_macs(model: Any) -> dict[str, int]:
    """Multiply-accumulates per image of every Conv (output elements x kernel volume / groups)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(inferred.graph.value_info) + list(inferred.graph.output)}  # fmt: skip
    inits = {t.name: list(t.dims) for t in model.graph.initializer}
    macs = {}
    for node in model.graph.node:
        weight = inits.get(node.input[1]) if node.op_type == "Conv" else None
        out = shapes.get(node.output[0]) if weight else None
        if out:
            macs[node.name] = int(np.prod(out[1:]) * np.prod(weight[1:]))
    return macs


def cached_score(path: Path | None, key: str, compute: Callable[[], Score]) -> Score:
    """A variant's score from the JSON cache file, else computed and stored."""
    cache = json.loads(path.read_text()) if path is not None and path.is_file() else {}
    if key in cache:
        return Score.from_dict(cache[key])
    score = compute()
    if path is not None:
        cache = json.loads(path.read_text()) if path.is_file() else {}
        cache[key] = score.to_dict()
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(cache, indent=1) + "\n")
    return score


def cache_file(fp32_model: Any, qdq_model: Any, emulator: Emulator, cache: bool) -> Path | None:
    if not cache:
        return None
    from .cache import default_cache_root

    key = hashlib.sha256(f"{graph_sha256(fp32_model)}|{graph_sha256(qdq_model)}|{emulator.digest()}".encode())
    return default_cache_root() / "sensitivity" / f"{key.hexdigest()[:32]}.json"


def measure_sensitivity(fp32_model: Any, qdq_model: Any, *, emulator: Emulator | None = None, refine: int = 1,
                        both: bool = True, cache: bool = True, log: Callable[[str], None] | None = None,
                        rank_photos: int | None = None) -> SensitivityReport:
    """Score every block alone-float (and, with `both`, alone-INT8); then the convs of the `refine` worst blocks.

    Args:
        fp32_model: the fp32 graph the Q/DQ one was calibrated from.
        qdq_model: the calibrated Q/DQ graph.
        emulator: photos and runner; None builds one on `held_out_photos()`.
        refine: how many of the worst blocks are also measured conv by conv.
        both: also measure alone-INT8 (doubles the cost).
        cache: keep each variant's score on disk.
        log: receives one progress line per variant.
        rank_photos: measure the variants on only this many photos, those the full-INT8 graph
            scores worst on (cost grows with photos x variants; the worst photos decide the ranking).
    """
    emulator = emulator or Emulator(fp32_model)
    path = full_path = cache_file(fp32_model, qdq_model, emulator, cache)
    int8 = quantized_nodes(qdq_model)
    blocks = conv_groups(int8, "block")
    macs = conv_macs(fp32_model)
    baseline = full = cached_score(path, "baseline", partial(emulator.score, qdq_model))
    if rank_photos is not None and rank_photos < len(emulator.names):
        worst = sorted(emulator.names, key=baseline.iou.get)[:rank_photos]
        emulator, baseline = emulator.subset(worst), baseline.subset(worst)
        path = path.with_name(path.stem + "-" + "-".join(worst) + ".json") if path is not None else None
    report = SensitivityReport(baseline, dict(blocks), {}, photos=emulator.names, full_baseline=full, cache_path=full_path)
    _measure(report, blocks, int8, fp32_model, qdq_model, emulator, path, both, log)
    for block in report.ranking()[:refine]:
        layers = {f"{block}:{name}": convs for name, convs in conv_groups(blocks[block], "layer").items()}
        if len(layers) > 1:
            _measure(report, layers, int8, fp32_model, qdq_model, emulator, path, both, log)
    report.macs = {group: sum(macs.get(c, 0) for c in convs) for group, convs in report.groups.items()}
    return report


def _score_floated(emulator: Emulator, qdq_model: Any, fp32_model: Any, names: list[str]) -> Score:
    return emulator.score(float_convs(qdq_model, fp32_model, names))


def _measure(report: SensitivityReport, groups: dict[str, list[str]], int8: list[str], fp32_model: Any,
             qdq_model: Any, emulator: Emulator, path: Path | None, both: bool,
             log: Callable[[str], None] | None) -> None:
    """Fill `report` with the alone-float (and alone-INT8) score of each group."""
    for index, (group, convs) in enumerate(groups.items(), start=1):
        report.groups[group] = convs
        others = [c for c in int8 if c not in set(convs)]
        report.alone_float[group] = cached_score(path, f"float:{group}",
                                            partial(_score_floated, emulator, qdq_model, fp32_model, convs))
        if both:
            report.alone_int8[group] = cached_score(path, f"int8:{group}",
                                               partial(_score_floated, emulator, qdq_model, fp32_model, others))
        if log is not None:
            score = report.alone_float[group].summary()
            log(f"      [{index}/{len(groups)}] {group}: alone float mean IoU {score['mean_iou']:.4f} "
                f"(all INT8 {report.baseline.mean_iou:.4f})")


def write_report(report: SensitivityReport, folder: Path) -> list[Path]:
    """sensitivity.json/.csv/.md and sensitivity.png (matplotlib, when installed) in `folder`."""
    import csv
    import io

    folder.mkdir(parents=True, exist_ok=True)
    rows = report.rows()
    written = [folder / "sensitivity.json", folder / "sensitivity.csv", folder / "sensitivity.md"]
    atomic_write_text(written[0], json.dumps(report.to_dict(), indent=1) + "\n")
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(written[1], text.getvalue())
    atomic_write_text(written[2], markdown(report))
    plot = _plot(report, folder / "sensitivity.png")
    return written + ([plot] if plot else [])


def markdown(report: SensitivityReport) -> str:
    """The ranked table as Markdown."""
    full = (report.full_baseline or report.baseline).summary()
    lines = [f"All INT8 on {len((report.full_baseline or report.baseline).iou)} held-out photos: mean IoU "
             f"{full['mean_iou']:.4f}, worst {full['worst_iou']:.4f} ({full['worst_image']}). Variants measured on "
             f"{len(report.photos)} photos ({', '.join(report.photos)}), where all INT8 has mean IoU "
             f"{report.baseline.mean_iou:.4f}.", "",
             "| rank | group | convs | MACs % | alone float: mean IoU | worst IoU | gain | alone INT8: IoU drop "
             "| worst IoU | map MAE | boundary F |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in report.rows():
        cells = [row[k] for k in ("rank", "group", "convs", "macs_percent", "float_mean_iou", "float_worst_iou",
                                  "float_gain_iou", "int8_alone_iou_drop", "int8_alone_worst_iou",
                                  "int8_alone_map_mae", "int8_alone_boundary_f")]
        lines.append("| " + " | ".join("" if c is None else str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _plot(report: SensitivityReport, path: Path) -> Path | None:
    """A horizontal bar chart of the mean-IoU gain per group (alone float), most harmful on top."""
    from .._deps import available

    if not available("matplotlib"):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report.rows()[::-1]
    figure, axis = plt.subplots(figsize=(7, 0.25 * len(rows) + 1.2))
    axis.barh([r["group"] for r in rows], [r["float_gain_iou"] for r in rows], color="tab:orange")
    axis.set_xlabel("mean IoU gain when only this group stays float")
    axis.set_title(f"INT8 sensitivity (all INT8: mean IoU {report.baseline.mean_iou:.4f})")
    figure.tight_layout()
    temporary = path.with_suffix(".tmp.png")
    figure.savefig(temporary, dpi=100)
    plt.close(figure)
    temporary.replace(path)
    return path


def print_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def load_models(fp32: str | Path, qdq: str | Path) -> tuple[Any, Any]:
    """The two ONNX graphs."""
    onnx = require("onnx", "INT8 sensitivity")
    return onnx.load(str(fp32)), onnx.load(str(qdq))

"""Salient-object metrics: a thin wrapper over PySODMetrics plus the relaxed boundary F-measure.

PySODMetrics (import name `py_sod_metrics`) gives max/mean/adaptive F-beta (beta^2 = 0.3),
MAE, weighted F-beta, S-measure and E-measure with the MATLAB toolbox conventions: the prediction
is divided by 255 and min-max normalised, the ground truth is binarised with ``gt > 128``. It
has no relaxed boundary F-measure, which the U2-Net paper reports, so that is implemented here
after BASNet (Qin et al., CVPR 2019, section 4.3):

* binarise the prediction at 0.5 (``pred_u8 >= 128``) and the ground truth as PySODMetrics does
  (``gt_u8 > 128``);
* the boundary of a binary mask is ``mask XOR erode(mask, 3x3)``, with zero padding, so a mask
  that touches the image border has a boundary there (as BASNet's ``convolve2d(mode='same')``);
* relaxed precision is the fraction of predicted boundary pixels within `rho` pixels (Euclidean
  distance, inclusive) of a ground-truth boundary pixel; relaxed recall is the fraction of
  ground-truth boundary pixels within `rho` of a predicted one; rho = 3 as in the paper;
* F = (1 + beta^2) P R / (beta^2 P + R), per image, averaged over images.
  Conventions for empty boundaries: both empty -> P = R = F = 1 (nothing to find, nothing found);
  only one empty -> its side's ratio is 0/0 and is taken as 0, so F = 0.

The numeric work is numpy and OpenCV; PySODMetrics is imported when a `SODMetrics` is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._deps import require

__all__ = ["BoundaryScore", "boundary", "relaxed_boundary_fmeasure", "SODMetrics", "METRICS", "BETA2"]

BETA2 = 0.3

#: result key -> (label in reports, higher is better)
METRICS: dict[str, tuple[str, bool]] = {
    "max_f": ("max F-beta", True),
    "mean_f": ("mean F-beta", True),
    "adaptive_f": ("adaptive F-beta", True),
    "mae": ("MAE", False),
    "weighted_f": ("weighted F-beta", True),
    "s_measure": ("S-measure", True),
    "mean_e": ("mean E-measure", True),
    "max_e": ("max E-measure", True),
    "relax_fb": ("relaxed boundary F-beta", True),
}


@dataclass(frozen=True)
class BoundaryScore:
    f: float
    precision: float
    recall: float


def boundary(mask: np.ndarray) -> np.ndarray:
    """One-pixel-wide boundary of a binary mask: ``mask & ~erode(mask)``, zero padding at the border."""
    import cv2

    binary = np.asarray(mask, dtype=bool)
    eroded = cv2.erode(binary.astype(np.uint8), np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT,
                       borderValue=0)  # fmt: skip
    return binary & ~eroded.astype(bool)


def _distance_to(points: np.ndarray) -> np.ndarray:
    """Euclidean distance of every pixel to the nearest True pixel of `points` (which is non-empty)."""
    import cv2

    return cv2.distanceTransform((~points).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def _ratio_within(source: np.ndarray, target: np.ndarray, rho: float) -> float:
    """Fraction of `source` pixels within `rho` of a `target` pixel (0 if either is empty)."""
    count = int(source.sum())
    if count == 0 or not target.any():
        return 0.0
    # distanceTransform is float32; the small epsilon keeps exact integer distances (3.0) inside.
    return float((_distance_to(target)[source] <= rho + 1e-4).sum()) / count


def relaxed_boundary_fmeasure(pred_u8: np.ndarray, gt_u8: np.ndarray, rho: float = 3,
                              beta2: float = BETA2) -> BoundaryScore:
    """Relaxed boundary F-measure of one prediction (see the module docstring for the definition).

    Args:
        pred_u8: HxW uint8 saliency map (0..255).
        gt_u8: HxW uint8 ground truth (0..255), same size.
        rho: tolerance in pixels.
        beta2: beta squared; 0.3 as everywhere in SOD.
    """
    if pred_u8.shape != gt_u8.shape:
        raise ValueError(f"prediction {pred_u8.shape} and ground truth {gt_u8.shape} differ in size")
    pred_b = boundary(np.asarray(pred_u8) >= 128)
    gt_b = boundary(np.asarray(gt_u8) > 128)
    if not pred_b.any() and not gt_b.any():
        return BoundaryScore(1.0, 1.0, 1.0)
    precision = _ratio_within(pred_b, gt_b, rho)
    recall = _ratio_within(gt_b, pred_b, rho)
    denominator = beta2 * precision + recall
    f = (1 + beta2) * precision * recall / denominator if denominator > 0 else 0.0
    return BoundaryScore(f, precision, recall)


class SODMetrics:
    """Accumulate every metric over a dataset, one (prediction, ground truth) pair at a time.

    Example:
        >>> metrics = SODMetrics()
        >>> for pred, gt in pairs:               # uint8 HxW arrays of the same size
        ...     metrics.update(pred, gt)
        >>> metrics.results()["max_f"]

    Args:
        rho: tolerance of the relaxed boundary F-measure, in pixels.
        beta2: beta squared of every F-measure.
    """

    def __init__(self, rho: float = 3, beta2: float = BETA2) -> None:
        sod = require("py_sod_metrics", "evaluation metrics")
        self.rho, self.beta2 = rho, beta2
        handlers = {
            "fm": sod.FmeasureHandler(with_dynamic=True, with_adaptive=True, beta=beta2),
            "pre": sod.PrecisionHandler(with_dynamic=True, with_adaptive=False),
            "rec": sod.RecallHandler(with_dynamic=True, with_adaptive=False),
        }
        self._fm = sod.FmeasureV2(metric_handlers=handlers)
        self._mae, self._wfm = sod.MAE(), sod.WeightedFmeasure(beta=beta2)
        self._sm, self._em = sod.Smeasure(), sod.Emeasure()
        self._boundary: list[float] = []
        self.count = 0

    def update(self, pred_u8: np.ndarray, gt_u8: np.ndarray) -> dict[str, float]:
        """Add one image; returns its own MAE and relaxed boundary F (for per-image reports)."""
        pred_u8, gt_u8 = np.asarray(pred_u8), np.asarray(gt_u8)
        if pred_u8.dtype != np.uint8 or gt_u8.dtype != np.uint8:
            raise TypeError(f"SODMetrics.update takes uint8 maps, got {pred_u8.dtype} and {gt_u8.dtype}")
        if pred_u8.shape != gt_u8.shape:
            raise ValueError(f"prediction {pred_u8.shape} and ground truth {gt_u8.shape} differ in size")
        for metric in (self._fm, self._mae, self._wfm, self._sm, self._em):
            metric.step(pred=pred_u8, gt=gt_u8)
        score = relaxed_boundary_fmeasure(pred_u8, gt_u8, self.rho, self.beta2)
        self._boundary.append(score.f)
        self.count += 1
        return {"mae": float(self._mae.maes[-1]), "relax_fb": score.f}

    def results(self) -> dict[str, float]:
        """Dataset-level metrics, keyed as in `METRICS`."""
        if not self.count:
            raise ValueError("no images were added")
        fm = self._fm.get_results()["fm"]
        em = self._em.get_results()["em"]
        return {
            "max_f": float(np.max(fm["dynamic"])),
            "mean_f": float(np.mean(fm["dynamic"])),
            "adaptive_f": float(fm["adaptive"]),
            "mae": float(self._mae.get_results()["mae"]),
            "weighted_f": float(self._wfm.get_results()["wfm"]),
            "s_measure": float(self._sm.get_results()["sm"]),
            "mean_e": float(np.mean(em["curve"])),
            "max_e": float(np.max(em["curve"])),
            "relax_fb": float(np.mean(self._boundary)),
        }

    def curves(self) -> dict[str, Any]:
        """Mean precision, recall and F-beta per threshold 0..255 (PySODMetrics stores 255..0)."""
        results = self._fm.get_results()
        return {
            "threshold": list(range(256)),
            "precision": np.flip(results["pre"]["dynamic"]).tolist(),
            "recall": np.flip(results["rec"]["dynamic"]).tolist(),
            "fbeta": np.flip(results["fm"]["dynamic"]).tolist(),
        }

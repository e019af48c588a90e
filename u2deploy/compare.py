"""Parity between an artifact and the PyTorch reference, and the one tolerance table per precision.

Every gate in u2deploy (the export parity check, the INT8 gate, `bench`) measures the same
numbers, computed here in numpy only, and judges them against `TOLERANCES`:

* raw error on the network output (the sigmoid map): max and mean absolute difference;
* what a user sees: both maps are min-max normalised (as `processing.postprocess` does) and
  compared directly (`map_mae`: mean |artifact - torch|, the INT8 gate's MAE); then the PyTorch
  map binarised at 0.5 stands in for ground truth, and the artifact's map is scored against it
  with mask IoU at 0.5 and the SOD metrics MAE and max F-beta (beta^2 = 0.3, thresholds 0..255
  as PySODMetrics computes them).

Neither SOD metric is perfect for the reference itself (a soft map has pixels between 0 and 1,
and the 256 thresholds do not fall exactly at 0.5), so the report keeps the reference's own MAE
and max F-beta, and the gate judges the artifact's change: `mae_increase` and `fbeta_drop`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .errors import InputError, ParityError
from .processing import min_max  # the same normalisation the deployed pipeline applies

__all__ = [
    "Tolerance",
    "TOLERANCES",
    "ImageParity",
    "ParityReport",
    "tolerance_for",
    "compare_maps",
    "parity_report",
    "mask_iou",
    "mae",
    "max_fbeta",
    "BETA2",
]

#: beta^2 of the F-measure, as in the U2-Net paper and PySODMetrics.
BETA2 = 0.3


@dataclass(frozen=True)
class Tolerance:
    """Limits for one precision; `None` means the metric is reported but not judged.

    Attributes:
        max_abs: worst |artifact - torch| over every pixel of every image (sigmoid map).
        mean_abs: worst per-image mean |artifact - torch|.
        min_iou: worst per-image mask IoU at 0.5.
        mean_iou: mean mask IoU over the images.
        fbeta_drop: worst per-image fall of max F-beta below the torch map's own.
        mae_increase: worst per-image rise of MAE above the torch map's own.
        map_mae: worst per-image mean |artifact - torch| after both maps are min-max normalised.
    """

    max_abs: float | None = None
    mean_abs: float | None = None
    min_iou: float | None = None
    mean_iou: float | None = None
    fbeta_drop: float | None = None
    mae_increase: float | None = None
    map_mae: float | None = None

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)


#: Default gates per precision. Measured on the pretrained U2-Net and the five parity photos
#: (docs/export.md): fp32 max abs 1.4e-5 (ONNX Runtime) and 2.9e-5 (OpenVINO), IoU 1.0; fp16 max
#: abs 1.4e-2, mean abs 3.2e-4, worst IoU 0.995 (rocket, ONNX Runtime). The fp32 limits leave
#: room for GPU kernels (TF32, other conv algorithms), the fp16 ones for real fp16 activations.
#: INT8 is judged on what a user sees, as the INT8 issue defines it: mean mask IoU >= 0.95 over the
#: photos and map MAE <= 0.02 on every photo; F-beta and the worst IoU are reported, not judged
#: (a 1.5%-area subject like rocket's moves a lot with one quantization step; docs/int8.md).
TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(max_abs=1e-3, mean_abs=1e-4, min_iou=0.999, fbeta_drop=1e-3, mae_increase=1e-3),
    "fp16": Tolerance(max_abs=5e-2, mean_abs=2e-3, min_iou=0.99, fbeta_drop=5e-3, mae_increase=5e-3),
    "int8": Tolerance(mean_iou=0.95, map_mae=0.02),
    # bf16 keeps f32's range but 8 mantissa bits, and OpenVINO stores every activation in it: on the
    # pretrained U2-Net the maps stay close (map MAE <= 0.004) but near-0.5 masks move (rocket IoU
    # 0.93, mean 0.98, measured on an AMX Xeon), so it is judged like a lossy precision, not like fp16.
    "bf16": Tolerance(mean_iou=0.97, map_mae=0.01),
}


def tolerance_for(precision: str) -> Tolerance:
    if precision not in TOLERANCES:
        raise InputError(f"no parity tolerance for precision '{precision}'; available: {', '.join(TOLERANCES)}")
    return TOLERANCES[precision]


# --------------------------------------------------------------------------------------------
# Metrics on one pair of maps


def _binary(saliency: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    return np.asarray(saliency) >= threshold


def mask_iou(reference: np.ndarray, candidate: np.ndarray, threshold: float = 0.5) -> float:
    """IoU of the two maps binarised at `threshold`; two empty masks agree perfectly (1.0)."""
    ref, cand = _binary(reference, threshold), _binary(candidate, threshold)
    union = np.count_nonzero(ref | cand)
    return 1.0 if union == 0 else float(np.count_nonzero(ref & cand) / union)


def mae(saliency: np.ndarray, truth: np.ndarray) -> float:
    """Mean absolute error of a [0, 1] map against a binary mask (the SOD MAE)."""
    return float(np.mean(np.abs(np.asarray(saliency, np.float64) - np.asarray(truth, np.float64))))


def max_fbeta(saliency: np.ndarray, truth: np.ndarray, beta2: float = BETA2) -> float:
    """Max F-beta over the 256 thresholds `saliency*255 >= t`, computed as PySODMetrics does.

    Hand-written (15 lines, tested equal to PySODMetrics in tests/test_compare.py) because this
    module is core: every export's parity gate imports it, while pysodmetrics is the `train`
    extra and pins scikit-image<0.26 (rembg 2.0.86 needs >=0.26), so core cannot depend on it.

    Args:
        saliency: map in [0, 1].
        truth: boolean mask.
        beta2: beta squared (0.3 weighs precision over recall, the SOD convention).
    """
    levels = (np.asarray(saliency, np.float64) * 255).astype(np.uint8)
    truth = np.asarray(truth, bool)
    bins = np.arange(257)
    # counts of pixels at or above each threshold, from 255 down to 0
    true_pos = np.cumsum(np.histogram(levels[truth], bins=bins)[0][::-1])
    predicted = true_pos + np.cumsum(np.histogram(levels[~truth], bins=bins)[0][::-1])
    precision = true_pos / np.maximum(predicted, 1)
    recall = true_pos / max(np.count_nonzero(truth), 1)
    numerator = (1 + beta2) * precision * recall
    denominator = np.where(numerator == 0, 1.0, beta2 * precision + recall)
    return float(np.max(numerator / denominator))


@dataclass(frozen=True)
class ImageParity:
    """All metrics for one image and one output."""

    image: str
    output: str
    max_abs: float
    mean_abs: float
    iou: float
    mae: float
    mae_reference: float
    max_fbeta: float
    max_fbeta_reference: float
    map_mae: float

    @property
    def mae_increase(self) -> float:
        return self.mae - self.mae_reference

    @property
    def fbeta_drop(self) -> float:
        return self.max_fbeta_reference - self.max_fbeta


def compare_maps(reference: np.ndarray, candidate: np.ndarray, image: str = "", output: str = "mask") -> ImageParity:
    """Metrics of `candidate` against `reference`: two raw maps of the same HxW (any leading 1s)."""
    ref = np.asarray(reference, np.float64)
    cand = np.asarray(candidate, np.float64)
    if ref.shape != cand.shape:
        raise InputError(f"cannot compare maps of shapes {ref.shape} and {cand.shape}")
    ref, cand = ref.reshape(ref.shape[-2:]), cand.reshape(cand.shape[-2:])
    diff = np.abs(ref - cand)
    ref_norm, cand_norm = min_max(ref), min_max(cand)
    truth = _binary(ref_norm)
    return ImageParity(
        image=image,
        output=output,
        max_abs=float(diff.max()),
        mean_abs=float(diff.mean()),
        iou=mask_iou(ref_norm, cand_norm),
        mae=mae(cand_norm, truth),
        mae_reference=mae(ref_norm, truth),
        max_fbeta=max_fbeta(cand_norm, truth),
        max_fbeta_reference=max_fbeta(ref_norm, truth),
        map_mae=float(np.mean(np.abs(cand_norm - ref_norm))),
    )


# --------------------------------------------------------------------------------------------
# A report over several images, judged against a tolerance


@dataclass
class ParityReport:
    """Per-image metrics, the tolerance they were judged against, and what failed."""

    precision: str
    tolerance: Tolerance
    images: list[ImageParity]
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> dict[str, float]:
        """The numbers the gate judges (worst case, or mean where the tolerance says mean)."""
        rows = self.images
        return {
            "max_abs": max(r.max_abs for r in rows),
            "mean_abs": max(r.mean_abs for r in rows),
            "min_iou": min(r.iou for r in rows),
            "mean_iou": float(np.mean([r.iou for r in rows])),
            "min_fbeta": min(r.max_fbeta for r in rows),
            "fbeta_drop": max(r.fbeta_drop for r in rows),
            "mae": float(np.mean([r.mae for r in rows])),
            "mae_increase": max(r.mae_increase for r in rows),
            "map_mae": max(r.map_mae for r in rows),
            "mean_map_mae": float(np.mean([r.map_mae for r in rows])),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "passed": self.passed,
            "summary": self.summary(),
            "tolerance": self.tolerance.to_dict(),
            "failures": list(self.failures),
            "images": [{**asdict(r), "mae_increase": r.mae_increase, "fbeta_drop": r.fbeta_drop} for r in self.images],
        }

    def describe(self) -> str:
        """One line: the judged numbers, and for INT8 the worst image."""
        s = self.summary()
        line = (f"max abs {s['max_abs']:.2e}, mean abs {s['mean_abs']:.2e}, IoU min {s['min_iou']:.4f} "
                f"mean {s['mean_iou']:.4f}, max F-beta min {s['min_fbeta']:.4f} ({-s['fbeta_drop']:+.1e} vs torch), "
                f"MAE {s['mae']:.4f} ({s['mae_increase']:+.1e} vs torch), map MAE max {s['map_mae']:.4f}")
        worst = min(self.images, key=lambda r: r.iou)
        return line + f"; worst image '{worst.image}' (IoU {worst.iou:.4f}, map MAE {worst.map_mae:.4f})"

    def describe_lines(self) -> list[str]:
        """The same numbers as `describe`, one kind per line, each MAE saying what it compares."""
        s = self.summary()
        worst = min(self.images, key=lambda r: r.iou)
        return [f"sigmoid map: max abs {s['max_abs']:.2e}, mean abs {s['mean_abs']:.2e}",
                f"mask IoU at 0.5: min {s['min_iou']:.4f}, mean {s['mean_iou']:.4f} (worst: {worst.image})",
                f"max F-beta vs the binarised torch map: min {s['min_fbeta']:.4f} ({-s['fbeta_drop']:+.1e} vs torch's "
                f"own)", f"MAE vs the binarised torch map: {s['mae']:.4f} ({s['mae_increase']:+.1e} vs torch's own)",
                f"map MAE (min-max maps, |artifact - torch|): max {s['map_mae']:.4f}",
                "gate: " + ("passed" if self.passed else "FAILED: " + "; ".join(self.failures))]  # fmt: skip

    def raise_if_failed(self, artifact: str, hint: str = "") -> None:
        """`ParityError` naming each failed metric with its worst image, plus `hint` (what to do)."""
        if self.failures:
            tail = f" ({hint})" if hint else ""
            raise ParityError(f"{artifact}: parity gate failed for {self.precision}: {'; '.join(self.failures)}{tail}")


# metric -> (attribute on ImageParity, True when bigger is worse, label)
_CHECKS: dict[str, tuple[str, bool, str]] = {
    "max_abs": ("max_abs", True, "max abs error"),
    "mean_abs": ("mean_abs", True, "mean abs error"),
    "min_iou": ("iou", False, "mask IoU at 0.5"),
    "fbeta_drop": ("fbeta_drop", True, "max F-beta drop"),
    "mae_increase": ("mae_increase", True, "MAE increase"),
    "map_mae": ("map_mae", True, "map MAE (after min-max)"),
}


def _failures(rows: Sequence[ImageParity], tolerance: Tolerance) -> list[str]:
    """One message per violated limit, naming the worst image and output."""
    failures = []
    for key, (attr, higher_is_worse, label) in _CHECKS.items():
        limit = getattr(tolerance, key)
        if limit is None:
            continue
        pick = max if higher_is_worse else min
        worst = pick(rows, key=lambda r: getattr(r, attr))
        value = getattr(worst, attr)
        if (value > limit) if higher_is_worse else (value < limit):
            relation = "above" if higher_is_worse else "below"
            failures.append(f"{label} {value:.4g} on '{worst.image}' ({worst.output}) is {relation} "
                            f"the limit {limit:g}")
    if tolerance.mean_iou is not None:
        mean = float(np.mean([r.iou for r in rows]))
        if mean < tolerance.mean_iou:
            worst = min(rows, key=lambda r: r.iou)
            failures.append(f"mean mask IoU {mean:.4g} over {len(rows)} maps is below the limit {tolerance.mean_iou:g} "
                            f"(worst '{worst.image}' ({worst.output}) {worst.iou:.4g})")
    return failures


def parity_report(
    reference: Mapping[str, np.ndarray],
    candidate: Mapping[str, np.ndarray],
    image_names: Sequence[str],
    precision: str = "fp32",
    tolerance: Tolerance | None = None,
) -> ParityReport:
    """Compare every output of `candidate` with `reference`, image by image, and judge the result.

    Args:
        reference: output name -> Nx1xHxW maps from PyTorch FP32.
        candidate: the same outputs from the artifact, on the same input tensors.
        image_names: the N image names, for messages.
        precision: picks the default tolerance.
        tolerance: overrides the default for `precision`.
    """
    tolerance = tolerance or tolerance_for(precision)
    missing = [name for name in reference if name not in candidate]
    if missing:
        raise InputError(f"artifact outputs {sorted(candidate)} lack {missing}")
    rows = [compare_maps(reference[out][i], candidate[out][i], image, out)
            for out in reference for i, image in enumerate(image_names)]  # fmt: skip
    return ParityReport(precision, tolerance, rows, _failures(rows, tolerance))

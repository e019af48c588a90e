"""NNCF post-training quantization as both INT8 quantizers use it: range methods, signed activations, quiet runs.

NNCF (`nncf.quantize`) is the engine behind the Q/DQ ONNX and the OpenVINO IR because it measured
best on U2-Net (shared/reference/BASELINES.md, docs/int8.md): its bias correction recovers much of
the error that plain Q/DQ calibrators leave. Two things it does not offer through its public API
are added here, inside a context manager that restores NNCF on exit; the quantizers check the
result afterwards (`qdq.check_tensorrt_form`, `check_kept_float`):

* signed activations (TensorRT's only INT8 form): NNCF picks uint8 after every ReLU, and its
  hardware table rejects `signedness_to_force=True` ("incompatible with HW capabilities"), so the
  finished quantizer setup is edited instead;
* range rules on a histogram of |x|: `entropy` (TensorRT's KL divergence), `percentile`, and for
  signed activations `mse` on the grid TensorRT uses (128 levels from 0; NNCF's own L2 search
  assumes 256 levels between min and max, right for OpenVINO's uint8 activations only).
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from .._deps import require
from ..errors import ExportError, UnsupportedOptionError
from ..export.options import BIAS_CORRECTIONS

__all__ = ["RANGE_ESTIMATORS", "PERCENTILE", "entropy_threshold", "percentile_threshold", "mse_threshold",
           "nncf_quantize"]

#: --calib-method -> NNCF range estimator for activations (weights are always per-channel min/max).
RANGE_ESTIMATORS = {
    "minmax": "MINMAX",  # the largest value seen: no clipping, coarse steps
    "percentile": "HISTOGRAM",  # a histogram of |x|; the threshold below which PERCENTILE % of values lie
    "entropy": "HISTOGRAM",  # a histogram of |x|; the threshold with the least KL divergence (TensorRT's)
    "mse": "HISTOGRAM",  # a histogram; the range with the least squared quantization error
}
_LEVELS = 128  # magnitudes a signed int8 activation can take on either side of zero
PERCENTILE = 99.999  # onnxruntime's default (TensorRT's pytorch-quantization uses 99.99)


def _smooth(distribution: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    """Give empty bins `eps` of mass, taken evenly from the others, so KL divergence stays finite."""
    zero = distribution == 0
    nonzero = int((~zero).sum())
    if nonzero == 0 or zero.sum() == 0:
        return distribution
    taken = eps * zero.sum() / nonzero
    return np.where(zero, eps, distribution - taken)


def entropy_threshold(histogram: np.ndarray, levels: int = _LEVELS, step: int = 8) -> int:
    """TensorRT's entropy calibration on a histogram of |x| starting at 0.

    For each candidate end bin i, clip everything above it into bin i-1 (P), merge hist[:i] into
    `levels` quantization bins and spread each back over its non-empty source bins (Q), and keep
    the i with the smallest KL(P || Q). Returns i; the threshold is i bin widths.
    """
    hist = np.asarray(histogram, np.float64).copy()
    # The zeros after a ReLU pile up in bin 0 and would pull the threshold down; TensorRT's
    # pytorch-quantization (HistogramCalibrator, entropy) levels that bin to its neighbour the same way.
    hist[0] = hist[1]
    best_kl, best = np.inf, len(hist)
    for end in range(levels, len(hist) + 1, step):
        reference = hist[:end].copy()
        reference[-1] += hist[end:].sum()
        nonzero = hist[:end] > 0
        starts = (np.arange(levels) * end) // levels
        sums = np.add.reduceat(hist[:end], starts)
        counts = np.add.reduceat(nonzero.astype(np.float64), starts)
        lengths = np.diff(np.append(starts, end))
        expanded = np.repeat(sums / np.maximum(counts, 1), lengths) * nonzero
        if reference.sum() == 0 or expanded.sum() == 0:
            continue
        p = _smooth(reference / reference.sum())
        q = _smooth(expanded / expanded.sum())
        mask = p > 0
        divergence = float(np.sum(p[mask] * np.log(p[mask] / np.maximum(q[mask], 1e-12))))
        if divergence < best_kl:
            best_kl, best = divergence, end
    return best


def percentile_threshold(histogram: np.ndarray, percentile: float = PERCENTILE) -> int:
    """The end bin below which `percentile` % of a histogram of |x| lies (TensorRT's and ORT's percentile)."""
    cumulative = np.cumsum(np.asarray(histogram, np.float64))
    if cumulative[-1] == 0:
        return len(cumulative)
    return int(np.searchsorted(cumulative, cumulative[-1] * percentile / 100.0) + 1)


def mse_threshold(histogram: np.ndarray, levels: int = _LEVELS, step: int = 4) -> int:
    """The end bin whose symmetric grid (`levels` steps from 0, values beyond it clipped) gives the
    least squared error over a histogram of |x|: NNCF's L2 search, but for the grid TensorRT uses."""
    hist = np.asarray(histogram, np.float64)
    centres = np.arange(len(hist)) + 0.5
    best_error, best = np.inf, len(hist)
    for end in range(max(step, len(hist) // 64), len(hist) + 1, step):
        spacing = end / (levels - 1)
        rounded = np.minimum(np.round(centres / spacing), levels - 1) * spacing
        error = float(np.dot(hist, (centres - rounded) ** 2))
        if error < best_error:
            best_error, best = error, end
    return best


#: --calib-method -> threshold rule on a histogram of |x| (see `_search_for` for which applies when)
_SEARCHES = {"entropy": entropy_threshold, "percentile": percentile_threshold, "mse": mse_threshold}


def _search_for(method: str, signed: bool) -> Any:
    """The |x| threshold rule for `method`, or None where NNCF's own estimator is used as it is."""
    if method == "minmax" or (method == "mse" and not signed):
        return None
    if method == "percentile" or signed:
        return _SEARCHES[method]
    return lambda histogram: _SEARCHES[method](histogram, levels=2 * _LEVELS)  # uint8: 256 levels from 0


def _threshold_aggregator(base: type, search: Any) -> type:
    """A subclass of NNCF's HistogramAggregator that sets the range by `search` on |x| (symmetric, as TensorRT)."""

    class ThresholdAggregator(base):  # type: ignore[misc, valid-type]
        def _non_linear_param_search(self) -> tuple[float, float]:
            histogram = np.asarray(getattr(self.histogram, "data", self.histogram), np.float64)
            low, high = float(self.min_val), float(self.max_val)
            top = max(abs(low), abs(high))
            if top == 0:
                return low, high
            width = (high - low) / len(histogram)
            centres = np.abs(low + (np.arange(len(histogram)) + 0.5) * width)
            index = np.minimum((centres / top * len(histogram)).astype(np.int64), len(histogram) - 1)
            magnitudes = np.bincount(index, weights=histogram, minlength=len(histogram))
            threshold = top * search(magnitudes) / len(histogram)
            return (-threshold if low < 0 else 0.0), threshold

    return ThresholdAggregator


@contextlib.contextmanager
def _patched(target: Any, name: str, value: Any) -> Iterator[None]:
    original = getattr(target, name)
    setattr(target, name, value)
    try:
        yield
    finally:
        setattr(target, name, original)


def _signed_setup(original: Any) -> Any:
    """Wrap MinMaxQuantization._get_quantizer_setup: every activation quantizer becomes signed."""

    def setup(self: Any, *args: Any, **kwargs: Any) -> Any:
        final = original(self, *args, **kwargs)
        for point in final.quantization_points.values():
            if point.is_activation_quantization_point():
                point.qconfig.signedness_to_force = True
        return final

    return setup


@contextlib.contextmanager
def _nncf_overrides(method: str, signed: bool) -> Iterator[None]:
    """NNCF with signed activations and/or u2deploy's range rule, restored afterwards."""
    try:
        from nncf.quantization.algorithms.min_max import algorithm
    except ImportError as exc:  # pragma: no cover - depends on the installed NNCF
        raise ExportError(f"this NNCF has no min_max algorithm module ({exc}); install nncf>=3.4,<4") from None
    needed = ("MinMaxQuantization", "HistogramAggregator")
    if not all(hasattr(algorithm, name) for name in needed) or not hasattr(algorithm.MinMaxQuantization,
                                                                           "_get_quantizer_setup"):
        raise ExportError(f"NNCF {_version()} changed the internals u2deploy adjusts for signed INT8 activations; "
                          "install nncf>=3.4,<4 (tested with 3.4)")
    with contextlib.ExitStack() as stack:
        if signed:
            quantization = algorithm.MinMaxQuantization
            stack.enter_context(_patched(quantization, "_get_quantizer_setup",
                                         _signed_setup(quantization._get_quantizer_setup)))
        search = _search_for(method, signed)
        if search is not None:
            stack.enter_context(_patched(algorithm, "HistogramAggregator",
                                         _threshold_aggregator(algorithm.HistogramAggregator, search)))
        yield


def _version() -> str:
    import importlib.metadata

    return importlib.metadata.version("nncf")


@contextlib.contextmanager
def _quiet(progress: bool) -> Iterator[None]:
    """NNCF's INFO lines off; its progress bars (rich, on stdout) moved to stderr, or dropped under --quiet."""
    logger = logging.getLogger("nncf")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(sys.stderr if progress else io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def nncf_quantize(model: Any, batches: Iterable[np.ndarray], transform: Any, *, method: str, subset_size: int,
                  ignored_names: Sequence[str] = (), ignored_types: Sequence[str] = ("Sigmoid",), signed: bool,
                  progress: bool = True, bias_correction: str = "full",
                  overflow_fix: str = "first_layer_only") -> Any:
    """`nncf.quantize` with u2deploy's settings.

    Args:
        model: an `onnx.ModelProto` or `openvino.Model`.
        batches: the calibration batches (a `CalibrationSource`).
        transform: batch -> the model's input (a dict for ONNX, the array for OpenVINO).
        method: a key of `RANGE_ESTIMATORS`.
        subset_size: how many batches NNCF reads (all of them).
        ignored_names, ignored_types: nodes kept in float.
        signed: force int8 activations (TensorRT form); else NNCF's choice (uint8 after ReLU).
        progress: NNCF's progress bars.
        bias_correction: `full` (NNCF's BiasCorrection: each layer's output shift measured with the
            layers before it already quantized; 2-3x slower) or `fast` (each layer on its own).
        overflow_fix: NNCF's `OverflowFix` (`enable`, `first_layer_only`, `disable`): weights on half the
            int8 range, so that u8 x s8 products cannot saturate on CPUs without VNNI.
    """
    nncf = require("nncf", "INT8 calibration")
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    if method not in RANGE_ESTIMATORS:
        raise UnsupportedOptionError(f"--calib-method {method}: use {', '.join(RANGE_ESTIMATORS)}")
    if bias_correction not in BIAS_CORRECTIONS:
        raise UnsupportedOptionError(f"bias_correction '{bias_correction}': use {', '.join(BIAS_CORRECTIONS)}")
    estimator = getattr(RangeEstimatorParametersSet, RANGE_ESTIMATORS[method])
    advanced = AdvancedQuantizationParameters(activations_range_estimator_params=estimator,
                                              overflow_fix=OverflowFix(overflow_fix))
    scope = nncf.IgnoredScope(names=list(ignored_names), types=list(ignored_types), validate=False)
    with _quiet(progress), _nncf_overrides(method, signed):
        return nncf.quantize(model, nncf.Dataset(batches, transform), preset=nncf.QuantizationPreset.PERFORMANCE,
                             subset_size=subset_size, ignored_scope=scope, advanced_parameters=advanced,
                             fast_bias_correction=bias_correction == "fast")

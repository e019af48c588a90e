"""Edge refinement of saliency maps: one function every output path calls (predict, stream, serve).

    from u2deploy.refine import RefineOptions, refine, refine_cutout

    alpha = refine(saliency, image, "matting")                 # float32 HxW alpha in [0, 1]
    rgba = refine_cutout(image, saliency, RefineOptions("matting", erode=5))

Modes (``--refine``):

* ``none``: the map as the network gives it.
* ``guided``: an edge-aware guided filter (He et al., 2010) of the map, guided by the image's
  grey levels: edges snap to the image's edges; cheap enough for video. Written here on
  ``cv2.boxFilter`` because OpenCV's own ``ximgproc.guidedFilter`` is only in opencv-contrib,
  which the PyPI ``opencv-python-headless`` build lacks.
* ``matting``: rembg's recipe: a trimap from the map (foreground >= 240, background <= 10, both
  eroded by 10 px), closed-form alpha matting (Levin et al., 2008, via ``pymatting``) of the
  unknown band, then foreground colour estimation (Germer et al., 2020) so a cut-out carries no
  halo of the old background. The cost is bounded: the solve runs on the bounding box of the
  unknown band only, downscaled so its longer side is at most ``max_side`` (the alpha is
  upsampled back; known pixels keep their full-resolution trimap values).

``post="smooth"`` is rembg's ``-ppm`` mask post-processing (a small morphological opening, a
Gaussian blur, then a hard threshold at the middle); it runs before refinement, as in rembg.

Everything here is numpy + OpenCV; pymatting is imported only for ``matting``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InputError
from .processing import ImageInput, to_mask_u8, to_rgb_u8

__all__ = ["REFINE_MODES", "POST_MODES", "RefineOptions", "Refined", "refine", "refine_full", "refine_cutout",
           "guided_filter", "smooth_mask", "trimap_from_map"]

REFINE_MODES = ("none", "guided", "matting")
POST_MODES = ("none", "smooth")


@dataclass(frozen=True)
class RefineOptions:
    """How a map becomes an alpha matte. Every value is checked when the options are built.

    Attributes:
        mode: ``none``, ``guided`` or ``matting``.
        post: ``none`` or ``smooth`` (rembg's ``-ppm``), applied to the map first.
        fg_threshold: matting: map values (0..255) at or above this are sure foreground.
        bg_threshold: matting: map values at or below this are sure background.
        erode: matting: pixels by which the sure regions shrink (a wider unknown band).
        max_side: matting: the solve runs at most at this size (longer side, pixels).
        foreground: matting: estimate the object's colours (decontamination) for cut-outs.
        radius: guided: window radius in pixels.
        eps: guided: regularisation (larger = smoother, fewer image edges followed).
    """

    mode: str = "none"
    post: str = "none"
    fg_threshold: int = 240
    bg_threshold: int = 10
    erode: int = 10
    max_side: int = 1024
    foreground: bool = True
    radius: int = 4
    eps: float = 1e-4

    def __post_init__(self) -> None:
        _check_choice("--refine", self.mode, REFINE_MODES)
        _check_choice("--post", self.post, POST_MODES)
        _check_int("--fg-threshold", self.fg_threshold, 1, 255)
        _check_int("--bg-threshold", self.bg_threshold, 0, 254)
        if self.bg_threshold >= self.fg_threshold:
            raise InputError(f"--bg-threshold {self.bg_threshold} must be below --fg-threshold {self.fg_threshold} "
                             "(defaults 10 and 240)")
        _check_int("--erode", self.erode, 0, 255)
        _check_int("--matting-size", self.max_side, 64, 8192)
        _check_int("--guided-radius", self.radius, 1, 255)
        if not 0 < self.eps <= 1:
            raise InputError(f"--guided-eps {self.eps}: must be in (0, 1], e.g. 1e-4")

    def replace(self, **changes: Any) -> RefineOptions:
        return dataclasses.replace(self, **changes)

    @property
    def active(self) -> bool:
        return self.mode != "none" or self.post != "none"


def _check_choice(flag: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InputError(f"{flag} {value!r}: unknown; use one of {', '.join(choices)}")


def _check_int(flag: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise InputError(f"{flag} {value!r}: must be a whole number from {low} to {high}")


@dataclass
class Refined:
    """The result of `refine_full`.

    Attributes:
        alpha: float32 HxW in [0, 1].
        foreground: matting with ``foreground=True``: RGB uint8 colours of the object, free of
            the old background (use them with `alpha` for a cut-out); else None.
        seconds: wall time of the refinement (post-processing included).
        unknown_fraction: matting: share of the pixels the solve had to estimate.
    """

    alpha: np.ndarray
    foreground: np.ndarray | None
    seconds: float
    unknown_fraction: float = 0.0


def _options(options: RefineOptions | str | None, overrides: dict[str, Any]) -> RefineOptions:
    if isinstance(options, RefineOptions):
        return options.replace(**overrides) if overrides else options
    return RefineOptions(mode=options or "none", **overrides)


def refine(saliency: np.ndarray, image: ImageInput, mode: RefineOptions | str = "none", **opts: Any) -> np.ndarray:
    """The map refined into an alpha matte (float32 HxW in [0, 1], the image's size).

    Args:
        saliency: float map in [0, 1] at the image's size (`Runtime.predict`'s output).
        image: the image the map was computed from (path, bytes, PIL image or RGB array).
        mode: ``none``, ``guided``, ``matting`` or a `RefineOptions`.
        **opts: `RefineOptions` fields (``fg_threshold=230``, ``post="smooth"``...).
    """
    return refine_full(saliency, image, _options(mode, opts), foreground=False).alpha


def refine_full(saliency: np.ndarray, image: ImageInput, options: RefineOptions | str | None = None, *,
                foreground: bool | None = None, channel_order: str = "rgb") -> Refined:
    """Refine and also return the decontaminated foreground and the time taken.

    Args:
        foreground: override `RefineOptions.foreground` (False skips the colour estimate).
        channel_order: ``bgr`` for OpenCV frames (`Refined.foreground` is RGB either way).
    """
    options = _options(options, {})
    start = time.perf_counter()
    rgb = to_rgb_u8(image, channel_order)
    saliency = np.asarray(saliency, np.float32)
    if saliency.shape != rgb.shape[:2]:
        raise InputError(f"map size {saliency.shape} does not match image size {rgb.shape[:2]}")
    if options.post == "smooth":
        saliency = smooth_mask(saliency)
    if options.mode == "guided":
        alpha = guided_filter(rgb, saliency, options.radius, options.eps)
        return Refined(alpha, None, time.perf_counter() - start)
    if options.mode == "matting":
        want_fg = options.foreground if foreground is None else foreground
        alpha, colours, unknown = _matting(rgb, saliency, options, want_fg)
        return Refined(alpha, colours, time.perf_counter() - start, unknown)
    return Refined(np.clip(saliency, 0.0, 1.0), None, time.perf_counter() - start)


def refine_cutout(image: ImageInput, saliency: np.ndarray, options: RefineOptions | str | None = None,
                  channel_order: str = "rgb") -> np.ndarray:
    """RGBA uint8 cut-out (RGBA whatever `channel_order`, as `processing.cutout`): refined alpha, clean colour."""
    refined = refine_full(saliency, image, options, channel_order=channel_order)
    colours = refined.foreground if refined.foreground is not None else to_rgb_u8(image, channel_order)
    return np.dstack([colours, to_mask_u8(refined.alpha)])


# --------------------------------------------------------------------------------------------
# rembg-style post-processing


def smooth_mask(saliency: np.ndarray) -> np.ndarray:
    """rembg's ``-ppm``: open with a 3x3 ellipse, Gaussian blur (5x5, sigma 2), threshold at 127."""
    import cv2

    mask = to_mask_u8(saliency)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
    mask = cv2.GaussianBlur(mask, (5, 5), sigmaX=2, sigmaY=2)
    return (mask >= 127).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Guided filter


def guided_filter(image: np.ndarray, saliency: np.ndarray, radius: int = 4, eps: float = 1e-4,
                  subsample: int | None = None) -> np.ndarray:
    """Grey-guided filter of `saliency` by `image` (He et al.), in its fast subsampled form.

    The linear coefficients are smooth, so they are computed at 1/`subsample` of the size and
    upsampled (He & Sun, "Fast Guided Filter", 2015); the output keeps the full-resolution edges.

    Args:
        image: HxWx3 uint8 (any channel order) or HxW grey guide.
        saliency: float map in [0, 1], same height and width.
        subsample: None picks 4 for frames of 640 px and more, else 1 (exact).
    """
    import cv2

    grey = image if image.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(image[:, :, :3]), cv2.COLOR_RGB2GRAY)
    # uint8 guides are used in 0..255 and eps scaled to match: one float conversion fewer at full size
    unit = np.float32(255.0 if grey.dtype == np.uint8 else 1.0)
    src = np.asarray(saliency, np.float32)
    height, width = src.shape
    factor = subsample or (4 if min(height, width) >= 480 else 1)
    if factor > 1:
        small = (max(1, width // factor), max(1, height // factor))
        g = cv2.resize(grey, small, interpolation=cv2.INTER_AREA).astype(np.float32)
        p = cv2.resize(src, small, interpolation=cv2.INTER_AREA)
    else:
        g, p = grey.astype(np.float32), src
    size = (2 * max(1, radius // factor) + 1,) * 2

    def box(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, cv2.CV_32F, size, borderType=cv2.BORDER_REFLECT)

    mean_g, mean_p = box(g), box(p)
    var_g = box(g * g) - mean_g * mean_g
    cov_gp = box(g * p) - mean_g * mean_p
    a = cov_gp / (var_g + np.float32(eps) * unit * unit)
    mean_a, mean_b = box(a), box(mean_p - a * mean_g)
    if factor > 1:
        mean_a = cv2.resize(mean_a, (width, height), interpolation=cv2.INTER_LINEAR)
        mean_b = cv2.resize(mean_b, (width, height), interpolation=cv2.INTER_LINEAR)
    out = np.multiply(mean_a, grey, dtype=np.float32)
    out += mean_b
    return np.clip(out, 0.0, 1.0, out=out)


# --------------------------------------------------------------------------------------------
# Matting


def trimap_from_map(saliency: np.ndarray, fg_threshold: int = 240, bg_threshold: int = 10,
                    erode: int = 10) -> np.ndarray:
    """float64 trimap: 1 sure foreground, 0 sure background, 0.5 unknown (rembg's construction)."""
    import cv2

    mask = to_mask_u8(saliency)
    fg = (mask >= fg_threshold).astype(np.uint8)
    bg = (mask <= bg_threshold).astype(np.uint8)
    if erode > 0:
        kernel = np.ones((erode, erode), np.uint8)
        fg = cv2.erode(fg, kernel, borderType=cv2.BORDER_REFLECT)
        bg = cv2.erode(bg, kernel, borderType=cv2.BORDER_REFLECT)
    trimap = np.full(mask.shape, 0.5, np.float64)
    trimap[fg.astype(bool)] = 1.0
    trimap[bg.astype(bool)] = 0.0
    return trimap


def _band_box(unknown: np.ndarray, margin: int) -> tuple[slice, slice]:
    """The bounding box of the unknown band, grown by `margin` so the solve sees known pixels around it."""
    rows, cols = np.nonzero(unknown.any(axis=1))[0], np.nonzero(unknown.any(axis=0))[0]
    top, bottom = max(0, rows[0] - margin), min(unknown.shape[0], rows[-1] + 1 + margin)
    left, right = max(0, cols[0] - margin), min(unknown.shape[1], cols[-1] + 1 + margin)
    return slice(top, bottom), slice(left, right)


def _matting(rgb: np.ndarray, saliency: np.ndarray, options: RefineOptions,
             want_fg: bool) -> tuple[np.ndarray, np.ndarray | None, float]:
    trimap = trimap_from_map(saliency, options.fg_threshold, options.bg_threshold, options.erode)
    unknown = trimap == 0.5
    fraction = float(unknown.mean())
    if not unknown.any():  # a hard map: nothing to estimate
        return trimap.astype(np.float32), rgb.copy() if want_fg else None, 0.0
    if not ((trimap == 0).any() and (trimap == 1).any()):
        # the solve needs both sure regions; a map that never reaches them is kept as it is
        return np.clip(saliency, 0.0, 1.0), rgb.copy() if want_fg else None, fraction
    rows, cols = _band_box(unknown, margin=8)
    crop_rgb, crop_trimap = rgb[rows, cols], trimap[rows, cols]
    alpha_crop = _solve_alpha(crop_rgb, crop_trimap, options.max_side)
    alpha = trimap.copy()
    alpha[rows, cols] = alpha_crop
    colours = None
    if want_fg:
        colours = rgb.copy()
        colours[rows, cols] = _foreground(crop_rgb, alpha_crop)
    return alpha.astype(np.float32), colours, fraction


def _solve_alpha(rgb: np.ndarray, trimap: np.ndarray, max_side: int) -> np.ndarray:
    """Closed-form alpha of the unknown pixels; at most `max_side` for the solve, upsampled back."""
    import cv2

    pymatting = _pymatting()
    height, width = trimap.shape
    scale = min(1.0, max_side / max(height, width))
    image = rgb.astype(np.float64) / 255.0
    small_image, small_trimap = image, trimap
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small_image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        # nearest keeps the three trimap levels exact; the band stays where the full-size one is
        small_trimap = cv2.resize(trimap, size, interpolation=cv2.INTER_NEAREST)
    if not ((small_trimap == 0.5).any() and (small_trimap == 0).any() and (small_trimap == 1).any()):
        return trimap  # the downscale merged the band (or a sure region) away: keep the trimap
    alpha = pymatting.estimate_alpha_cf(small_image, small_trimap)
    if scale < 1.0:
        alpha = cv2.resize(alpha, (width, height), interpolation=cv2.INTER_LINEAR)
    unknown = trimap == 0.5
    out = trimap.copy()
    out[unknown] = np.clip(alpha[unknown], 0.0, 1.0)  # known pixels keep their full-resolution value
    return out


def _foreground(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Object colours with the old background removed (multi-level estimation), uint8."""
    pymatting = _pymatting()
    colours = pymatting.estimate_foreground_ml(rgb.astype(np.float64) / 255.0, alpha)
    return np.clip(np.rint(colours * 255.0), 0, 255).astype(np.uint8)


def _pymatting() -> Any:
    from ._deps import require

    return require("pymatting", "--refine matting")

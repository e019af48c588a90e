"""What a stream writes for each frame: the mask, a matte, a cut-out or a new background.

Frames in the pipeline are OpenCV's BGR uint8; every effect takes a BGR frame and its float
saliency map in [0, 1] (same height and width) and returns a BGR, BGRA or single-channel uint8
image. The arithmetic is `processing.to_mask_u8`, `processing.cutout` and `processing.composite`
(called with ``channel_order="bgr"``; they return RGB[A], which is swapped back here), so a
stream and ``u2deploy predict`` produce the same pixels. Only what video needs is new here: the
blurred and cached backgrounds, the checkerboard, and flattening alpha for sinks that cannot store
it.

Effect names (``--effect``):

* ``mask``: the saliency map as 8-bit grey (white = object).
* ``matte``: the frame multiplied by the soft mask, i.e. the premultiplied colour of the cut-out,
  which is the same as compositing it over black. Pair it with ``mask`` to rebuild RGBA.
* ``cutout[:checker|green|R,G,B]``: RGBA (straight alpha = the mask). Image sequences in PNG,
  WebP or TIFF keep the alpha; video, display and network sinks cannot, so there the cut-out is
  shown over a grey checkerboard (the default, what editors show for transparency) or over the
  given colour (``green`` is chroma-key green 0,177,64, for keying in a video editor).
* ``blur[:SIGMA]``: background blur; SIGMA is the Gaussian sigma in pixels of the frame
  (default: the longer side / 40).
* ``replace:IMAGE``: the object over another image, resized to the frame.
* ``color:R,G,B``: the object over a solid colour.
"""

from __future__ import annotations

import difflib
import functools
from pathlib import Path
from typing import ClassVar

import numpy as np

from .. import processing
from ..errors import InputError

__all__ = [
    "Effect",
    "MaskEffect",
    "MatteEffect",
    "CutoutEffect",
    "BlurEffect",
    "ReplaceEffect",
    "ColorEffect",
    "EFFECTS",
    "parse_effect",
    "checkerboard",
    "flatten_alpha",
    "adapt_for_sink",
    "CHROMA_GREEN",
]

#: RGB chroma-key green.
CHROMA_GREEN = (0, 177, 64)


def _bgr(rgb: np.ndarray) -> np.ndarray:
    """RGB[A] from `processing` -> BGR[A] for OpenCV."""
    order = [2, 1, 0, 3][: rgb.shape[2]]
    return np.ascontiguousarray(rgb[:, :, order])


def _parse_rgb(text: str, what: str) -> tuple[int, int, int]:
    parts = text.split(",")
    if len(parts) != 3 or not all(p.strip().isdigit() for p in parts) or any(int(p) > 255 for p in parts):
        raise InputError(f"{what}: expected R,G,B with values 0..255, e.g. 0,177,64")
    return int(parts[0]), int(parts[1]), int(parts[2])


@functools.lru_cache(maxsize=8)
def checkerboard(height: int, width: int, square: int = 16) -> np.ndarray:
    """Grey BGR checkerboard, the usual picture of 'transparent' (cached per size, read-only)."""
    rows = (np.arange(height) // square)[:, None]
    cols = (np.arange(width) // square)[None, :]
    board = np.where((rows + cols) % 2 == 0, 153, 102).astype(np.uint8)
    board = np.repeat(board[:, :, None], 3, axis=2)
    board.setflags(write=False)
    return board


def flatten_alpha(bgra: np.ndarray, background: str | tuple[int, int, int] = "checker") -> np.ndarray:
    """BGRA -> BGR over a checkerboard (``"checker"``) or an RGB colour, for sinks without alpha."""
    alpha = bgra[:, :, 3].astype(np.float32) * np.float32(1 / 255)
    if isinstance(background, str):
        back = checkerboard(bgra.shape[0], bgra.shape[1])
        return _bgr(processing.composite(bgra[:, :, :3], alpha, back, channel_order="bgr"))
    return _bgr(processing.composite(bgra[:, :, :3], alpha, background, channel_order="bgr"))


def adapt_for_sink(image: np.ndarray, effect: Effect, *, alpha: bool, grey: bool) -> np.ndarray:
    """Fit an effect's output to what a sink can store: flatten BGRA, expand grey to BGR."""
    if image.ndim == 3 and image.shape[2] == 4 and not alpha:
        return effect.flatten(image)
    if image.ndim == 2 and not grey:
        return np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2))
    return image


class Effect:
    """Base class: turn a BGR frame and its saliency map into the image a sink writes.

    Subclass it and override `apply` for a custom look; `from_argument` builds the effect from
    the text after ``name:`` on the command line.
    """

    name: ClassVar[str] = "effect"

    @classmethod
    def from_argument(cls, argument: str | None) -> Effect:
        if argument:
            raise InputError(f"effect '{cls.name}' takes no argument (got '{cls.name}:{argument}')")
        return cls()

    def apply(self, frame: np.ndarray, saliency: np.ndarray) -> np.ndarray:
        """Args: frame: HxWx3 BGR uint8. saliency: HxW float32 in [0, 1]. Returns uint8."""
        raise NotImplementedError

    def flatten(self, image: np.ndarray) -> np.ndarray:
        """BGRA output -> BGR for sinks that cannot store alpha."""
        return flatten_alpha(image)

    def __call__(self, frame: np.ndarray, saliency: np.ndarray) -> np.ndarray:
        return self.apply(frame, saliency)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class MaskEffect(Effect):
    name: ClassVar[str] = "mask"

    def apply(self, frame: np.ndarray, saliency: np.ndarray) -> np.ndarray:
        return processing.to_mask_u8(saliency)


class MatteEffect(Effect):
    """Premultiplied colour: frame x soft mask (= the cut-out over black)."""

    name: ClassVar[str] = "matte"

    def apply(self, frame: np.ndarray, saliency: np.ndarray) -> np.ndarray:
        return _bgr(processing.composite(frame, saliency, (0, 0, 0), channel_order="bgr"))


class CutoutEffect(Effect):
    """BGRA with the mask as straight alpha; flattened over `background` where alpha is lost."""

    name: ClassVar[str] = "cutout"

    def __init__(self, background: str | tuple[int, int, int] = "checker") -> None:
        self.background = background

    @classmethod
    def from_argument(cls, argument: str | None) -> Effect:
        if not argument or argument == "checker":
            return cls("checker")
        if argument == "green":
            return cls(CHROMA_GREEN)
        return cls(_parse_rgb(argument, f"cutout:{argument}"))

    def apply(self, frame: np.ndarray, saliency: np.ndarray) -> np.ndarray:
        return _bgr(processing.cutout(frame, saliency, channel_order="bgr"))

    def flatten(self, image: np.ndarray) -> np.ndarray:
        return flatten_alpha(image, self.background)

    def __repr__(self) -> str:
        return f"CutoutEffect({self.background!r})"


class BlurEffect(Effect):
    """Background blur. The blur runs at a quarter of the size: the same look at a fraction of the cost."""

    name: ClassVar[str] = "blur"

    def __init__(self, sigma: float | None = None) -> None:
        if sigma is not None and sigma <= 0:
            raise InputError(f"blur sigma must be positive, got {sigma}")
        self.sigma = sigma

    @classmethod
    def from_argument(cls, argument: str | None) -> Effect:
        if not argument:
            return cls()
        try:
            return cls(float(argument))
        except ValueError:
            raise InputError(f"blur:{argument}: expected blur:SIGMA in pixels, e.g. blur:25") from None

    def background(self, frame: np.ndarray) -> np.ndarray:
        import cv2

        height, width = frame.shape[:2]
        sigma = self.sigma or max(height, width) / 40
        factor = 4 if min(height, width) >= 64 else 1
        small = cv2.resize(frame, (max(1, width // factor), max(1, height // factor)), interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (0, 0), sigma / factor)
        return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)

    def apply(self, frame: np.ndarray, saliency: np.ndarray) -> np.ndarray:
        return _bgr(processing.composite(frame, saliency, self.background(frame), channel_order="bgr"))

    def __repr__(self) -> str:
        return f"BlurEffect({self.sigma!r})"


class ReplaceEffect(Effect):
    """The object over another image, resized once per frame size (not once per frame)."""

    name: ClassVar[str] = "replace"

    def __init__(self, background: str | Path | np.ndarray) -> None:
        image = processing.load_image(background)  # RGB(A), any dtype
        self._rgb = processing.to_rgb_u8(image)
        self.source = background if not isinstance(background, np.ndarray) else "<array>"
        self._cache: tuple[tuple[int, int], np.ndarray] | None = None

    @classmethod
    def from_argument(cls, argument: str | None) -> Effect:
        if not argument:
            raise InputError("effect 'replace' needs an image: replace:PATH, e.g. replace:beach.jpg")
        return cls(argument)

    def _background_bgr(self, height: int, width: int) -> np.ndarray:
        if self._cache is None or self._cache[0] != (height, width):
            import cv2

            resized = cv2.resize(self._rgb, (width, height), interpolation=cv2.INTER_AREA)
            self._cache = ((height, width), _bgr(resized))
        return self._cache[1]

    def apply(self, frame: np.ndarray, saliency: np.ndarray) -> np.ndarray:
        back = self._background_bgr(*frame.shape[:2])
        return _bgr(processing.composite(frame, saliency, back, channel_order="bgr"))

    def __repr__(self) -> str:
        return f"ReplaceEffect({str(self.source)!r})"


class ColorEffect(Effect):
    name: ClassVar[str] = "color"

    def __init__(self, rgb: tuple[int, int, int]) -> None:
        self.rgb = tuple(int(v) for v in rgb)

    @classmethod
    def from_argument(cls, argument: str | None) -> Effect:
        if not argument:
            raise InputError("effect 'color' needs a colour: color:R,G,B, e.g. color:0,177,64")
        return cls(_parse_rgb(argument, f"color:{argument}"))

    def apply(self, frame: np.ndarray, saliency: np.ndarray) -> np.ndarray:
        return _bgr(processing.composite(frame, saliency, self.rgb, channel_order="bgr"))

    def __repr__(self) -> str:
        return f"ColorEffect({self.rgb!r})"


#: ``--effect`` name -> class
EFFECTS: dict[str, type[Effect]] = {
    cls.name: cls for cls in (MaskEffect, MatteEffect, CutoutEffect, BlurEffect, ReplaceEffect, ColorEffect)
}


def parse_effect(text: str | Effect) -> Effect:
    """``"mask"``, ``"blur:25"``, ``"replace:beach.jpg"``, ``"color:0,177,64"`` ... -> an `Effect`."""
    if isinstance(text, Effect):
        return text
    name, _, argument = str(text).partition(":")
    name = name.strip().lower()
    if name == "colour":
        name = "color"
    if name not in EFFECTS:
        close = difflib.get_close_matches(name, list(EFFECTS), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise InputError(f"unknown effect '{text}'{hint}; valid: mask, matte, cutout[:checker|green|R,G,B], "
                         "blur[:SIGMA], replace:IMAGE, color:R,G,B")
    return EFFECTS[name].from_argument(argument.strip() or None)

"""Image/mask datasets and the upstream training augmentation (REFERENCE.md sections 4 and 6).

Folder layouts `resolve_folders` accepts, in this order:

* two folders, images then masks: ``("photos/", "alphas/")`` (``--data photos/ alphas/``);
* a root holding one of the sub-folder pairs in `LAYOUTS` (``images``/``masks``, ``im``/``gt``,
  upstream's ``im_aug``/``gt_aug``, ...) or DUTS's ``<NAME>-Image``/``<NAME>-Mask``
  (``DUTS-TR/DUTS-TR-Image`` + ``DUTS-TR/DUTS-TR-Mask``).

An image and a mask pair when their stems (file name minus its last extension) are equal; any of
`IMAGE_EXTENSIONS` is accepted on either side. Files without an image extension and hidden files
are ignored and counted in the report. Everything else that does not fit, an image without a mask,
a mask without an image, two files with one stem, a header that cannot be read, an image and mask
of different sizes, is collected and raised as one `InputError` that lists them: nothing is
dropped silently.

Augmentation, as in `u2net_train.py`: ``RescaleT(320)`` squashes to 320x320 (no aspect
preservation; bilinear with zero padding for the image, nearest with the range kept for the
mask), ``RandomCrop(288)`` flips both upside down (axis 0) with p = 0.5 and then crops at offsets
0..31, ``ToTensorLab`` divides the image by its maximum, applies the ImageNet statistics and
divides the label by its own maximum when that is >= 1e-6. Each sample's randomness comes from
``(seed, epoch, index)`` alone, so a sample is augmented the same way whatever the number of
loader workers or processes, and a resumed run sees exactly the crops it would have seen.

numpy only: no torch import, so a `SODDataset` feeds a torch DataLoader without owning torch.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..processing import (
    IMAGE_EXTENSIONS,
    as_float,
    load_image,
    normalise_channels,
    resize_bilinear_reference,
    scale_by_peak,
)
from ..spec import ModelSpec

__all__ = ["LAYOUTS", "FLIPS", "RESIZES", "Pair", "DatasetReport", "resolve_folders", "scan_dataset", "load_pairs",
           "read_image", "read_mask", "mask_to_u8", "resize_nearest", "TrainTransform", "EvalTransform",
           "SODDataset"]  # fmt: skip

#: (images, masks) sub-folder names tried under a dataset root, in order.
LAYOUTS: tuple[tuple[str, str], ...] = (("images", "masks"), ("im", "gt"), ("im_aug", "gt_aug"), ("image", "mask"),
                                        ("imgs", "gts"), ("img", "gt"), ("Images", "Masks"))  # fmt: skip
FLIPS = ("vertical", "horizontal", "none")
RESIZES = ("reference", "fast")
_SHOWN_PROBLEMS = 10


# --------------------------------------------------------------------------------------------
# Finding and pairing files


@dataclass(frozen=True)
class Pair:
    """One training sample: an image and its mask, sharing a stem."""

    image: Path
    mask: Path

    @property
    def stem(self) -> str:
        return self.image.stem


@dataclass
class DatasetReport:
    """What a scan found: the pairs, the problems that stop training, and the files ignored."""

    images_dir: Path
    masks_dir: Path
    pairs: list[Pair] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.images_dir} + {self.masks_dir}"

    def summary(self) -> str:
        text = f"{self.name}: {len(self.pairs)} pair(s), {len(self.problems)} problem(s)"
        if self.ignored:
            text += f", {len(self.ignored)} non-image file(s) ignored (e.g. {self.ignored[0].name})"
        return text

    def raise_for_problems(self) -> None:
        """One `InputError` naming the first problems and how to list all of them."""
        if not self.problems:
            return
        root = f"{Path(self.images_dir).parent}{os.sep}"  # paths relative to the dataset: the line stays short
        shown = "; ".join(problem.replace(root, "") for problem in self.problems[:_SHOWN_PROBLEMS])
        more = len(self.problems) - _SHOWN_PROBLEMS
        tail = f"; ... and {more} more" if more > 0 else ""
        raise InputError(f"dataset {root} has {len(self.problems)} problem(s): {shown}{tail}; fix: "
                         f"`u2deploy data check {self.images_dir} {self.masks_dir}` lists them all")


def resolve_folders(data: str | os.PathLike | Sequence[str | os.PathLike]) -> tuple[Path, Path]:
    """A root folder, or (images folder, masks folder) -> (images folder, masks folder)."""
    items = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    if len(items) == 2:
        images, masks = (Path(p) for p in items)
        for label, folder in (("images", images), ("masks", masks)):
            if not folder.is_dir():
                raise InputError(f"{folder}: {label} folder does not exist")
        if images.resolve() == masks.resolve():
            raise InputError(f"{images}: images and masks must be in different folders")
        return images, masks
    if len(items) != 1:
        raise InputError(f"a dataset is one root folder or an images folder and a masks folder, got {len(items)} paths")
    return _find_layout(Path(items[0]))


def _find_layout(root: Path) -> tuple[Path, Path]:
    if not root.is_dir():
        raise InputError(f"{root}: dataset folder does not exist")
    for images, masks in LAYOUTS:
        if (root / images).is_dir() and (root / masks).is_dir():
            return root / images, root / masks
    for images in sorted(root.glob("*-Image")):  # DUTS: DUTS-TR-Image + DUTS-TR-Mask
        masks = root / (images.name[: -len("-Image")] + "-Mask")
        if images.is_dir() and masks.is_dir():
            return images, masks
    accepted = ", ".join(f"{i}/+{m}/" for i, m in LAYOUTS)
    raise InputError(f"{root}: no images and masks sub-folders found; expected one of {accepted} or "
                     "NAME-Image/+NAME-Mask/ (DUTS), or pass the images folder and the masks folder")


def _list_images(folder: Path, ignored: list[Path]) -> dict[str, list[Path]]:
    by_stem: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            by_stem[path.stem].append(path)
        else:
            ignored.append(path)
    return by_stem


def _pair_by_stem(report: DatasetReport) -> None:
    images = _list_images(report.images_dir, report.ignored)
    masks = _list_images(report.masks_dir, report.ignored)
    for kind, group in (("images", images), ("masks", masks)):
        for stem, paths in group.items():
            if len(paths) > 1:
                report.problems.append(f"{kind} {', '.join(p.name for p in paths)} share the stem '{stem}'")
    for stem in sorted(images.keys() - masks.keys()):
        report.problems.append(f"no mask for image {images[stem][0]}")
    for stem in sorted(masks.keys() - images.keys()):
        report.problems.append(f"no image for mask {masks[stem][0]}")
    for stem in sorted(images.keys() & masks.keys()):
        if len(images[stem]) == 1 and len(masks[stem]) == 1:
            report.pairs.append(Pair(images[stem][0], masks[stem][0]))
    if not images and not masks:
        report.problems.append("both folders hold no images")


def _header_size(path: Path) -> tuple[int, int]:
    """(height, width) as `load_image` will return it (EXIF rotation applied), from the header only."""
    from PIL import Image

    with Image.open(path) as image:
        width, height = image.size
        orientation = image.getexif().get(0x0112, 1)
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


def _check_pair(pair: Pair, decode: bool) -> str | None:
    sizes = []
    for path in (pair.image, pair.mask):
        try:
            sizes.append(load_image(path).shape[:2] if decode else _header_size(path))
        except InputError as exc:
            return f"unreadable {exc}"
        except Exception as exc:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ValueError ...
            return f"unreadable {path} ({type(exc).__name__}: {exc})"
    if sizes[0] != sizes[1]:
        (ih, iw), (mh, mw) = sizes
        return f"size mismatch: image {pair.image.name} is {iw}x{ih}, mask {pair.mask.name} is {mw}x{mh}"
    return None


def scan_dataset(data: str | os.PathLike | Sequence[str | os.PathLike], decode: bool = False) -> DatasetReport:
    """Pair the files of a dataset and check each pair's headers (or full decode) without raising.

    Args:
        data: a root folder, or an images folder and a masks folder.
        decode: decode every file instead of reading headers (slower; finds truncated files).
    """
    images_dir, masks_dir = resolve_folders(data)
    report = DatasetReport(images_dir, masks_dir)
    _pair_by_stem(report)
    good = []
    for pair in report.pairs:
        problem = _check_pair(pair, decode)
        if problem:
            report.problems.append(problem)
        else:
            good.append(pair)
    report.pairs = good
    return report


def load_pairs(data: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Pair]:
    """The dataset's pairs, or one `InputError` listing every problem found."""
    report = scan_dataset(data)
    report.raise_for_problems()
    return report.pairs


# --------------------------------------------------------------------------------------------
# Reading


def read_image(path: str | os.PathLike) -> np.ndarray:
    """HxWxC float64 in [0, 1], integers scaled by their dtype maximum (skimage `img_as_float`)."""
    image = as_float(load_image(path))
    return image[:, :, None] if image.ndim == 2 else image


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """HxW float64 in the file's own range (0..255 for 8-bit); channel 0 of a colour mask, as upstream."""
    mask = load_image(path)
    if mask.ndim == 3:
        mask = mask[:, :, 0]
    return mask.astype(np.float64)


def mask_to_u8(mask: np.ndarray) -> np.ndarray:
    """A mask as loaded by `load_image` (channel 0 if colour) -> uint8 0..255 for the metrics."""
    if mask.ndim == 3:
        mask = mask[:, :, 0]
    if mask.dtype == np.uint8:
        return mask
    if np.issubdtype(mask.dtype, np.integer):
        return np.round(mask.astype(np.float64) * (255.0 / np.iinfo(mask.dtype).max)).astype(np.uint8)
    return np.clip(np.round(mask.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Transforms


def resize_nearest(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``skimage.transform.resize(order=0, preserve_range=True)``: source index floor((i + 0.5) * in / out)."""
    height, width = array.shape[:2]
    rows = np.minimum(((np.arange(size[0]) + 0.5) * (height / size[0])).astype(np.int64), height - 1)
    cols = np.minimum(((np.arange(size[1]) + 0.5) * (width / size[1])).astype(np.int64), width - 1)
    return array[rows[:, None], cols[None, :]]


def _rescale(image: np.ndarray, mask: np.ndarray, size: tuple[int, int], resize: str) -> tuple[np.ndarray, np.ndarray]:
    """RescaleT: squash both to `size`; bilinear for the image, nearest (range kept) for the mask."""
    if resize == "reference":
        image = resize_bilinear_reference(image, size)
    else:
        import cv2

        image = cv2.resize(image.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        image = image[:, :, None] if image.ndim == 2 else image
    return image, resize_nearest(mask, size)


def _to_network(image: np.ndarray, mask: np.ndarray, spec: ModelSpec) -> tuple[np.ndarray, np.ndarray]:
    """ToTensorLab(flag=0): 3xHxW float32 input and 1xHxW float32 label in [0, 1]."""
    chw = normalise_channels(scale_by_peak(image, spec), spec)
    peak = float(mask.max())
    label = mask / peak if peak >= 1e-6 else mask
    return chw, np.ascontiguousarray(label[None], dtype=np.float32)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InputError(f"unknown {name} '{value}'; available: {', '.join(choices)}")


@dataclass(frozen=True)
class TrainTransform:
    """RescaleT(spec.input_size) -> RandomCrop(crop) with a flip -> ToTensorLab.

    Attributes:
        spec: gives the rescale size (upstream 320), the mean/std and the scale mode.
        crop: crop (height, width), upstream (288, 288); None trains on the whole rescaled image.
        flip: `vertical` (upstream: axis 0, upside down), `horizontal` (the paper's offline
            augmentation) or `none`; applied with p = 0.5 before the crop.
        resize: `reference` (scikit-image 0.14 exact) or `fast` (OpenCV, for large photos).
    """

    spec: ModelSpec
    crop: tuple[int, int] | None = (288, 288)
    flip: str = "vertical"
    resize: str = "reference"

    def __post_init__(self) -> None:
        _check_choice("flip", self.flip, FLIPS)
        _check_choice("resize mode", self.resize, RESIZES)
        if self.crop is not None and (self.crop[0] > self.spec.input_size[0] or self.crop[1] > self.spec.input_size[1]):
            raise InputError(f"crop {self.crop[0]}x{self.crop[1]} is larger than the rescale size "
                             f"{self.spec.input_size[0]}x{self.spec.input_size[1]}")

    @property
    def output_size(self) -> tuple[int, int]:
        return tuple(self.crop) if self.crop is not None else tuple(self.spec.input_size)

    def __call__(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        image, mask = _rescale(image, mask, self.spec.input_size, self.resize)
        # Upstream draws the flip first (python `random`), then top and left (numpy), in that order.
        if rng.random() >= 0.5 and self.flip != "none":
            axis = 0 if self.flip == "vertical" else 1
            image, mask = np.flip(image, axis), np.flip(mask, axis)
        if self.crop is not None:
            image, mask = _random_crop(image, mask, self.crop, rng)
        return _to_network(image, mask, self.spec)


def _random_crop(image: np.ndarray, mask: np.ndarray, crop: tuple[int, int],
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`np.random.randint(0, h - new_h)`: the upper bound is exclusive, so 320 -> 288 gives 0..31."""
    height, width = image.shape[:2]
    top = int(rng.integers(0, height - crop[0])) if height > crop[0] else 0
    left = int(rng.integers(0, width - crop[1])) if width > crop[1] else 0
    return image[top:top + crop[0], left:left + crop[1]], mask[top:top + crop[0], left:left + crop[1]]


@dataclass(frozen=True)
class EvalTransform:
    """Deterministic validation transform: RescaleT(spec.input_size) -> ToTensorLab, no crop or flip."""

    spec: ModelSpec
    resize: str = "reference"

    def __post_init__(self) -> None:
        _check_choice("resize mode", self.resize, RESIZES)

    @property
    def output_size(self) -> tuple[int, int]:
        return tuple(self.spec.input_size)

    def __call__(self, image: np.ndarray, mask: np.ndarray, rng: Any = None) -> tuple[np.ndarray, np.ndarray]:
        image, mask = _rescale(image, mask, self.spec.input_size, self.resize)
        return _to_network(image, mask, self.spec)


# --------------------------------------------------------------------------------------------
# Dataset


class SODDataset:
    """Map-style dataset of (image, label) pairs for a torch DataLoader.

    Items are dicts: ``image`` 3xHxW float32, ``label`` 1xHxW float32, ``index``. The random
    augmentation of item i in epoch e is drawn from ``default_rng([seed, e, i])``; call
    `set_epoch` before building each epoch's loader iterator (workers receive a copy of the
    dataset when the iterator starts, so persistent workers must not be used).
    """

    def __init__(self, pairs: Sequence[Pair], transform: TrainTransform | EvalTransform, seed: int = 0) -> None:
        if not pairs:
            raise InputError("dataset is empty: no image/mask pairs")
        self.pairs = list(pairs)
        self.transform = transform
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.pairs)

    def sample_rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, int(index)])

    def __getitem__(self, index: int) -> dict[str, Any]:
        pair = self.pairs[index]
        image, label = self.transform(read_image(pair.image), read_mask(pair.mask), self.sample_rng(index))
        return {"image": image, "label": label, "index": int(index)}

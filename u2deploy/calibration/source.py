"""Calibration images: chosen from a folder or glob, checked, described, hashed and served as batches.

Every INT8 quantizer (`qdq.py` for the Q/DQ ONNX, `openvino.py` for NNCF's IR, `trt_legacy.py` for
TensorRT <= 10) takes the same `CalibrationSource`: an iterable of float32 NCHW batches made by
`processing.preprocess` with the artifact's spec, so calibration sees exactly the tensors the
deployed pipeline feeds. The images are chosen once (`select_images`: list, seed, count) and
checked before any model is loaded: an empty folder, a glob that matches nothing, too few images,
an unreadable file or one of the held-out parity photos is one clear error. `describe()` is what
the manifest records and `digest` is what the calibration cache is keyed on; both change when an
image's content, the selection or the preprocessing changes.
"""

from __future__ import annotations

import glob
import hashlib
import json
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .._deps import available
from .._io import sha256_file
from ..errors import InputError
from ..processing import IMAGE_EXTENSIONS, load_image, preprocess
from ..spec import ModelSpec

__all__ = ["MIN_IMAGES", "CalibrationImages", "CalibrationSource", "select_images", "shortfall_note", "pixel_sha256",
           "sample_calibration_names", "write_sample_images"]

#: Fewer images than this cannot give activation ranges worth shipping (64+ representative ones are better).
MIN_IMAGES = 8
#: How the images are prepared: the upstream-exact pipeline the parity gate uses (no OpenCV needed).
PREPROCESSING_MODE = "reference"
#: Preprocessed sets up to this size stay in memory between passes (1.2 MB per image at 320x320).
KEEP_BYTES = 256 * 2**20
_GLOB_CHARS = ("*", "?", "[")


@dataclass(frozen=True)
class CalibrationImages:
    """The chosen image files, in order, with the sha256 of each file's bytes.

    Attributes:
        origin: the `--calib` value they were chosen from.
        files: the chosen files.
        sha256: one hash per file.
        found: how many images `origin` holds in all.
        seed: the seed of the choice.
    """

    origin: str
    files: tuple[Path, ...]
    sha256: tuple[str, ...]
    found: int
    seed: int

    @property
    def list_sha256(self) -> str:
        """Hash of the ordered file contents: the same images give the same hash wherever they live."""
        return hashlib.sha256("\n".join(self.sha256).encode()).hexdigest()


def pixel_sha256(image: np.ndarray) -> str:
    """Hash of decoded pixels (shape, dtype, values): a PNG copy of a photo hashes like the photo."""
    array = np.ascontiguousarray(image)
    header = f"{array.shape}|{array.dtype.str}|".encode()
    return hashlib.sha256(header + array.tobytes()).hexdigest()


@lru_cache(maxsize=1)
def _parity_hashes() -> dict[str, str]:
    """Pixel hash -> name of each held-out photo of the parity gate."""
    from ..samples import PARITY_PHOTOS, sample_photo

    return {pixel_sha256(sample_photo(name)): name for name in PARITY_PHOTOS}


def _list_images(origin: str) -> list[Path]:
    """Image files of a folder (recursively) or a glob, sorted; one clear error when there are none."""
    path = Path(origin).expanduser()
    if any(char in origin for char in _GLOB_CHARS):
        matches = [Path(p) for p in glob.glob(str(path), recursive=True)]
        files = [p for p in matches if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
        if not files:
            what = f"{len(matches)} paths but no image files" if matches else "nothing"
            raise InputError(f"--calib {origin}: the pattern matches {what}; use a folder of images or a glob such "
                             f"as 'photos/*.jpg' ({', '.join(IMAGE_EXTENSIONS)})")
        return sorted(files)
    if path.is_file():
        raise InputError(f"--calib {origin}: is a file; pass a folder of images or a glob such as 'photos/*.jpg'")
    if not path.is_dir():
        raise InputError(f"--calib {origin}: no such folder; pass a folder of images or a glob such as 'photos/*.jpg'")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise InputError(f"--calib {origin}: the folder holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return files


def _choose(files: list[Path], origin: str, count: int, seed: int) -> list[Path]:
    """`count` files drawn with `seed`, in listing order; fewer (but at least `MIN_IMAGES`) means all of them."""
    if count < MIN_IMAGES:
        raise InputError(f"--calib-count {count}: INT8 calibration needs at least {MIN_IMAGES} images "
                         "(64 or more representative ones are better)")
    if len(files) < MIN_IMAGES:
        # suggest what can work: more images, never a count the folder cannot meet
        raise InputError(f"--calib: {len(files)} images found; INT8 calibration needs at least {MIN_IMAGES}: "
                         f"add {MIN_IMAGES - len(files)} or more to {origin} (64+ photos like the deployment's are better)")
    if len(files) <= count:
        return files
    picked = np.random.default_rng(seed).choice(len(files), size=count, replace=False)
    return [files[i] for i in sorted(picked)]


def shortfall_note(images: CalibrationImages, count: int) -> str | None:
    """The one line saying that fewer images than `--calib-count` are used, or None when there are enough."""
    if len(images.files) >= count:
        return None
    return (f"--calib {images.origin}: {len(images.files)} images found, fewer than --calib-count {count}; "
            f"calibrating on all {len(images.files)} (64+ photos like the deployment's are better)")


def _check_image(path: Path, held_out: Mapping[str, str]) -> None:
    """Decode one image (unreadable -> one line) and refuse a held-out parity photo."""
    try:
        pixels = load_image(path)
    except InputError as exc:
        raise InputError(f"calibration image {exc}; remove it from --calib or fix it") from None
    name = held_out.get(pixel_sha256(pixels))
    if name is not None:
        raise InputError(f"calibration image {path} is the held-out parity photo '{name}': the INT8 gate is judged "
                         "on those photos, so they must not be calibrated on; remove it from --calib")


def select_images(origin: str | Path, count: int, seed: int = 0, notify: Callable[[str], None] | None = None
                  ) -> CalibrationImages:
    """List, choose and check the calibration images (before any model is loaded).

    Args:
        origin: a folder (searched recursively) or a glob such as `photos/**/*.jpg`.
        count: how many images to use; a folder with fewer (but at least `MIN_IMAGES`) is used whole.
        seed: picks which ones when it holds more.
        notify: receives the one-line note when fewer than `count` images are used.
    """
    origin = str(origin)
    files = _list_images(origin)
    chosen = _choose(files, origin, count, seed)
    # Without scikit-image the parity photos are not at hand; the gate then cannot run either.
    held_out = _parity_hashes() if available("skimage") else {}
    for path in chosen:
        _check_image(path, held_out)
    images = CalibrationImages(origin, tuple(chosen), tuple(sha256_file(p) for p in chosen), len(files), seed)
    note = shortfall_note(images, count)
    if note is not None and notify is not None:
        notify(note)
    return images


class CalibrationSource:
    """Preprocessed calibration batches for one model spec: iterate it, or `len()` it.

    Args:
        images: the chosen images (`select_images`).
        spec: the artifact's spec (input size, statistics, scale mode).
        batch_size: images per batch, the artifact's static batch (1 for a dynamic one). The last
            batch is filled up with the first images, so every batch has the same shape.
        progress: a progress bar on stderr while the batches are read.
    """

    def __init__(self, images: CalibrationImages, spec: ModelSpec, batch_size: int = 1, progress: bool = True) -> None:
        if batch_size < 1:
            raise InputError(f"calibration batch size {batch_size}: must be at least 1")
        self.images, self.spec, self.batch_size, self.progress = images, spec, batch_size, progress
        self._kept: list[np.ndarray] | None = None

    @classmethod
    def from_options(cls, calibration: Any, spec: ModelSpec, batch_size: int = 1,
                     progress: bool = True) -> CalibrationSource:
        """From an `export.CalibrationOptions` (source, count, seed)."""
        if calibration is None or not calibration.source:
            raise InputError("INT8 needs calibration images: pass --calib DIR|GLOB (64 or more photos like the ones "
                             "the model will see)")
        images = select_images(calibration.source, calibration.count, calibration.seed)
        return cls(images, spec, batch_size, progress)

    def __len__(self) -> int:
        """Number of batches."""
        return -(-len(self.images.files) // self.batch_size)

    def __iter__(self) -> Iterator[np.ndarray]:
        """The batches; quantizers read them several times (statistics, bias correction), so a set
        that fits in `KEEP_BYTES` is preprocessed once and kept."""
        if self._kept is not None:
            yield from self._kept
            return
        files = list(self.images.files)
        order = [files[i % len(files)] for i in range(len(self) * self.batch_size)]  # the last batch filled up
        height, width = self.spec.input_size
        keep = len(order) * 3 * height * width * 4 <= KEEP_BYTES
        kept = []
        for start in self._progress(range(0, len(order), self.batch_size)):
            paths = order[start:start + self.batch_size]
            batch = np.concatenate([preprocess(path, self.spec, mode=PREPROCESSING_MODE)[0] for path in paths])
            if keep:
                kept.append(batch)
            yield batch
        if keep:
            self._kept = kept

    def _progress(self, steps: range) -> Any:
        if not self.progress:
            return steps
        from tqdm import tqdm

        return tqdm(steps, desc="calibration images", unit="batch", file=sys.stderr, leave=False)

    def preprocessing(self) -> dict[str, Any]:
        """Everything that shapes the tensors besides the images themselves."""
        spec = self.spec
        return {"mode": PREPROCESSING_MODE, "input_size": list(spec.input_size), "scale": spec.scale,
                "mean": list(spec.mean), "std": list(spec.std), "channel_order": "RGB", "batch": self.batch_size}

    @property
    def digest(self) -> str:
        """sha256 of the image contents in order plus the preprocessing: the calibration-set hash."""
        record = {"files": self.images.list_sha256, "preprocessing": self.preprocessing()}
        return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()

    def describe(self) -> dict[str, Any]:
        """The manifest's record of the set."""
        images = self.images
        return {"source": images.origin, "count": len(images.files), "found": images.found, "seed": images.seed,
                "files": [p.name for p in images.files], "files_sha256": images.list_sha256,
                "preprocessing": self.preprocessing(), "sha256": self.digest}


def sample_calibration_names() -> tuple[str, ...]:
    """`samples.CALIBRATION_PHOTOS`: bundled photos disjoint from the parity photos (12 photos)."""
    from ..samples import CALIBRATION_PHOTOS

    return CALIBRATION_PHOTOS


def write_sample_images(folder: str | Path, names: tuple[str, ...] | None = None) -> Path:
    """Write bundled scikit-image photos (default `sample_calibration_names()`) as PNGs, for demos and benchmarks.

    They are a stand-in (mostly grey textures, microscopy and astronomy): a deployment calibrates
    on its own photos, which gives better ranges.
    """
    from PIL import Image

    from ..samples import sample_photo

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in names or sample_calibration_names():
        target = folder / f"{name}.png"
        if not target.is_file():
            Image.fromarray(sample_photo(name)).save(target)
    return folder


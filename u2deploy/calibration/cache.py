"""The calibration cache: a quantized model is reused when nothing that decides it has changed.

Calibrating U2-Net takes about a minute per run, so each quantizer stores its result under
`weights.cache_dir()/calibration/<key>/`, where the key hashes everything the result depends on:
the fp32 graph (weights, shapes, opset), the calibration-set hash (image contents in order and
the preprocessing), the method, what is kept in float, the quantizer and its version, and the
versions of the libraries that compute it. Change any of them and the key changes; an entry whose
files no longer match their recorded sha256 is ignored and rebuilt. Entries are written into a
temporary folder and renamed into place, so a crash never leaves a half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._io import atomic_write_text, sha256_file

if TYPE_CHECKING:
    from ..export.options import CalibrationOptions
    from ..spec import ModelSpec
    from .source import CalibrationSource

__all__ = ["CalibrationCache", "cache_key", "default_cache_root", "graph_sha256", "cache_parts", "cached_or_calibrated",
           "calibration_plan", "calibration_record", "say"]

_RECORD = "entry.json"


def default_cache_root() -> Path:
    """`weights.cache_dir()/calibration` (`$U2DEPLOY_HOME/calibration` when that is set)."""
    from ..weights import cache_dir

    return cache_dir() / "calibration"


def cache_key(parts: dict[str, Any]) -> str:
    """sha256 of the parts as canonical JSON."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class CalibrationCache:
    """Quantized models by key; `root` None means `default_cache_root()`."""

    root: Path | None = None

    def __post_init__(self) -> None:
        self.root = Path(self.root) if self.root is not None else default_cache_root()

    def _entry(self, key: str) -> Path:
        return self.root / key[:32]

    def lookup(self, key: str) -> list[Path] | None:
        """The entry's files (model first) when they exist and match their recorded hashes, else None."""
        entry = self._entry(key)
        try:
            record = json.loads((entry / _RECORD).read_text())
        except (OSError, ValueError):
            return None
        if record.get("key") != key:
            return None
        files = [entry / name for name in record.get("files", {})]
        if not files or any(not f.is_file() or sha256_file(f) != record["files"][f.name] for f in files):
            return None
        return files

    def store(self, key: str, files: list[Path], parts: dict[str, Any]) -> list[Path]:
        """Copy `files` (model first) into the entry for `key`; returns the cached copies."""
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".entry.", dir=self.root))
        try:
            for path in files:
                shutil.copyfile(path, staging / path.name)
            record = {"key": key, "parts": parts, "files": {p.name: sha256_file(staging / p.name) for p in files}}
            atomic_write_text(staging / _RECORD, json.dumps(record, indent=2, default=str) + "\n")
            entry = self._entry(key)
            if entry.exists():  # a stale or corrupt entry with the same key
                shutil.rmtree(entry, ignore_errors=True)
            os.replace(staging, entry)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            stored = self.lookup(key)  # another process stored the same entry first
            if stored is None:
                raise
            return stored
        return [self._entry(key) / p.name for p in files]


def graph_sha256(model: Any) -> str:
    """Hash of the graph (weights, shapes, nodes) and opsets, without the metadata: the model's identity."""
    digest = hashlib.sha256(model.graph.SerializeToString(deterministic=True))
    for opset in model.opset_import:
        digest.update(f"{opset.domain}:{opset.version}".encode())
    return digest.hexdigest()


def cache_parts(quantizer: dict[str, Any], model: Any, source: CalibrationSource, calibration: CalibrationOptions,
                bias_correction: str, libraries: tuple[str, ...]) -> dict[str, Any]:
    """Everything a calibrated model depends on (the cache key is their hash).

    Args:
        quantizer: the quantizer's name and version.
        model: the fp32 ONNX model.
        source: the calibration images as preprocessed.
        calibration: method and what stays float.
        bias_correction: the one the quantizer runs (`export.options.bias_correction_for`).
        libraries: distributions whose versions change the result.
    """
    from ..export.manifest import library_versions

    versions = library_versions()
    return {"quantizer": quantizer, "model_sha256": graph_sha256(model), "calibration_sha256": source.digest,
            "method": calibration.method, "keep_float": calibration.keep_float,
            "bias_correction": bias_correction,
            "libraries": {name: versions.get(name) for name in libraries}}  # fmt: skip


def calibration_plan(quantizer: dict[str, Any], fmt: str, fp32_model: Any, spec: ModelSpec, options: Any,
                     libraries: tuple[str, ...]) -> tuple[CalibrationSource, dict[str, Any]]:
    """(calibration images, cache parts) for quantizing `fp32_model` to `fmt` under the `ExportOptions`."""
    from ..export.options import bias_correction_for, calibration_batch
    from .source import CalibrationSource

    calibration = options.calibration
    # NNCF draws its own progress bars over the batches, so the source draws none
    source = CalibrationSource.from_options(calibration, spec, calibration_batch(options), progress=False)
    parts = cache_parts(quantizer, fp32_model, source, calibration, bias_correction_for(fmt, calibration), libraries)
    return source, parts


def calibration_record(parts: dict[str, Any], source: CalibrationSource, kept: list[str], cached: bool,
                       graph: dict[str, int], verified_with: str) -> dict[str, Any]:
    """The manifest's `calibration` entry: the images, how they were used, what stayed float, how it was checked."""
    return {**source.describe(), "method": parts["method"], "bias_correction": parts["bias_correction"],
            "quantizer": parts["quantizer"], "keep_float": kept, "cached": cached, "graph": graph,
            "verified_with": verified_with}  # fmt: skip


def say(enabled: bool, line: str) -> None:
    """A progress line on stderr."""
    if enabled:
        print(line, file=sys.stderr, flush=True)


def cached_or_calibrated(parts: dict[str, Any], use_cache: bool, load: Callable[[Path], Any],
                         calibrate: Callable[[], Any], save: Callable[[Any, Path], list[Path]],
                         progress: bool) -> tuple[Any, bool]:
    """(model, from the cache?): the cached result for `parts`, else `calibrate()` stored by `save(model, folder)`.

    A cache that cannot be written costs the next run time, not this export: it is a warning line.
    """
    cache = CalibrationCache() if use_cache else None
    key = cache_key(parts)
    hit = cache.lookup(key) if cache is not None else None
    if hit is not None:
        say(progress, f"      calibration cache hit: {hit[0].parent}")
        return load(hit[0]), True
    say(progress, f"      calibrating ({parts['method']}, {parts['bias_correction']} bias correction); a few minutes "
                  "for u2net on a 2-core CPU, then cached")
    model = calibrate()
    if cache is not None:
        try:
            with tempfile.TemporaryDirectory() as folder:
                cache.store(key, save(model, Path(folder)), parts)
        except OSError as exc:
            say(True, f"      warning: calibration cache not written ({exc})")
    return model, False

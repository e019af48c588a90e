"""What every artifact says about itself: embedded metadata and the sidecar manifest.

Two records, written from the same facts:

* `artifact_metadata` -> string key/values stored *inside* the model (ONNX `metadata_props`,
  OpenVINO `rt_info`): the `ModelSpec` as JSON under `u2deploy` (what the backends read) plus
  the same contract spelled out for people and other tools (`netron`, `benchmark_app`).
* `build_manifest` -> the sidecar `<artifact>.json`: what it is, how it was made (command,
  options, versions, source weights), file checksums (the `.bin` of an IR included) and the
  parity report. The model file itself is never prefixed or wrapped.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .. import __version__
from .._io import atomic_write_text, file_checksums
from ..spec import METADATA_KEY, ModelSpec
from .options import ExportOptions

__all__ = ["MANIFEST_FORMAT", "ArtifactFiles", "artifact_metadata", "build_manifest", "write_manifest",
           "library_versions"]

MANIFEST_FORMAT = "u2deploy-artifact"
#: distributions whose versions decide how an artifact was made (reported when installed)
_LIBRARIES = ("torch", "onnx", "onnxslim", "onnxruntime", "openvino", "nncf", "tensorrt", "numpy",
              "opencv-python-headless")


class ArtifactFiles(list):
    """What an exporter may return instead of a plain list: its files (model first) plus manifest sections
    only it knows, e.g. `{"tensorrt": {...}}` (TensorRT version, GPU, profiles, layer precisions)."""

    def __init__(self, files: list[Path], sections: dict[str, Any] | None = None) -> None:
        super().__init__(files)
        self.sections = dict(sections or {})


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that matter, read without importing them."""
    versions = {"u2deploy": __version__, "python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def artifact_metadata(spec: ModelSpec, source_sha256: str) -> dict[str, str]:
    """Key/values embedded in the model; `spec.extra["precision"]` must already be set."""
    height, width = spec.input_size
    preprocessing = {"layout": "NCHW", "dtype": "float32", "channel_order": "RGB", "resize": "bilinear",
                     "scale": spec.scale, "mean": list(spec.mean), "std": list(spec.std)}  # fmt: skip
    outputs = {"names": list(spec.output_names), "shape": "Nx1xHxW", "activation": "sigmoid",
               "invert": spec.invert_output, "postprocessing": "min-max normalise, then resize to the image"}
    return {
        METADATA_KEY: spec.to_json(),
        "arch": spec.arch,
        "task": spec.task,
        "input_name": spec.input_name,
        "input_size": f"{height}x{width}",
        "preprocessing": json.dumps(preprocessing, sort_keys=True),
        "outputs": json.dumps(outputs, sort_keys=True),
        "precision": str(spec.extra.get("precision", "fp32")),
        # the backend settings the parity gate ran with, which Runtime applies (also inside the spec)
        "runtime_settings": json.dumps(spec.extra.get("runtime") or {}, sort_keys=True),
        "source_sha256": source_sha256,
        "u2deploy_version": __version__,
    }


def _options_record(options: ExportOptions) -> dict[str, Any]:
    record = {
        "fmt": options.fmt,
        "precision": options.precision,
        "batch": options.batch,
        "dynamic": list(options.dynamic),
        "profile": list(options.profile) if options.profile else None,
        "outputs": options.outputs,
        "opset": options.opset,
        "verify": options.verify,
        "task": options.task,
    }
    for group in ("calibration", "tensorrt"):
        value = getattr(options, group)
        record[group] = asdict(value) if value is not None else None
    return record


def build_manifest(
    artifact: Path,
    files: list[Path],
    spec: ModelSpec,
    options: ExportOptions,
    source: dict[str, Any],
    io: dict[str, Any],
    parity: dict[str, Any] | None,
    seconds: dict[str, float] | None = None,
    sections: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The sidecar's content.

    Args:
        artifact: the model file (its final name is what the manifest records).
        files: every file of the artifact, the model file first, to checksum.
        spec: the artifact's spec.
        options: the export request.
        source: where the weights came from (path, sha256, arch, provenance).
        io: input/output tensors as the verifying backend saw them.
        parity: the parity report, or None when verification was skipped.
        seconds: how long each export step took.
        sections: format-specific sections from the exporter (`ArtifactFiles.sections`).
    """
    manifest = {
        "format": MANIFEST_FORMAT,
        "format_version": 1,
        "artifact": {"file": artifact.name, "format": options.fmt, "precision": options.precision,
                     "opset": options.opset, "batch": "dynamic" if options.dynamic_batch else (options.batch or 1),
                     "dynamic_hw": options.dynamic_hw, "outputs": options.outputs},  # fmt: skip
        "files": file_checksums(files),
        "spec": spec.to_dict(),
        "io": io,
        "source": source,
        "created": {"command": options.command, "options": _options_record(options),
                    "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "seconds": seconds or {},
                    "host": {"platform": platform.platform(), "machine": platform.machine(),
                             "python": sys.version.split()[0]}},  # fmt: skip
        "versions": library_versions(),
        "parity": parity if parity is not None else {"skipped": True, "reason": "--no-verify"},
        "runtime": spec.extra.get("runtime") or {},
    }
    manifest.update({key: value for key, value in (sections or {}).items() if key not in manifest})
    return manifest


def write_manifest(path: Path, manifest: dict[str, Any]) -> Path:
    return atomic_write_text(path, json.dumps(manifest, indent=2, sort_keys=False) + "\n")

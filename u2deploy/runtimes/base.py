"""The backend contract: load, describe, infer named arrays, close.

A backend knows one inference library and nothing about images: it takes and returns named
NCHW arrays. `BaseBackend.infer` validates the feeds against what the model declares and then
calls `_infer`, so shape errors read the same on every backend.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from ..errors import BackendError, InputError, ModelLoadError
from ..spec import ModelSpec

__all__ = ["Backend", "BaseBackend", "TensorInfo", "read_sidecar", "sidecar_path", "spec_from_metadata"]


@dataclass(frozen=True)
class TensorInfo:
    """Name, shape (None for a dynamic dimension) and numpy dtype name of one model input or output."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str = "float32"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


class Backend(Protocol):
    name: ClassVar[str]
    suffixes: ClassVar[tuple[str, ...]]
    thread_safe: ClassVar[bool]
    spec: ModelSpec
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]

    def load(self) -> None: ...
    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...
    def describe(self) -> dict[str, Any]: ...
    def close(self) -> None: ...


def sidecar_path(artifact: str | Path) -> Path:
    """`model.onnx` -> `model.onnx.json`: the manifest written beside every exported artifact."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def read_sidecar(artifact: str | Path) -> dict[str, Any] | None:
    path = sidecar_path(artifact)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BackendError(f"{path}: manifest is not valid JSON ({exc}); delete it or re-export the model") from None


def spec_from_metadata(artifact: Path, embedded: str | None, input_info: TensorInfo, output_names: list[str]) -> ModelSpec:
    """The spec stored in the artifact, else its sidecar, else the SOD defaults at its input size.

    Third-party exports (rembg's u2net.onnx) carry no spec; their input size comes from the graph.
    """
    try:  # a malformed stored spec (std 0, "abc" for a number) is refused here, naming the file
        if embedded:
            return ModelSpec.from_json(embedded)
        sidecar = read_sidecar(artifact)
        if sidecar and "spec" in sidecar:
            return ModelSpec.from_dict(sidecar["spec"])
    except InputError as exc:
        raise BackendError(f"{artifact}: stored {exc}; re-export the model") from None
    height, width = input_info.shape[2:4]
    return ModelSpec(arch="unknown", input_size=(height or 320, width or 320), input_name=input_info.name,
                     output_names=tuple(output_names))  # fmt: skip


class BaseBackend:
    """Stores options in `__init__`, does all work in `load()`, validates in `infer()`."""

    name: ClassVar[str] = "base"
    suffixes: ClassVar[tuple[str, ...]] = ()
    thread_safe: ClassVar[bool] = False

    def __init__(self, path: str | Path, device: str | None = None, **options: Any) -> None:
        self.path = Path(path)
        self.device = device
        self.options = options
        self.spec: ModelSpec = ModelSpec()
        self.inputs: list[TensorInfo] = []
        self.outputs: list[TensorInfo] = []
        self.precision = "fp32"
        self.integrity = "not checked"
        self._loaded = False

    # -- lifecycle ---------------------------------------------------------------------------
    def load(self) -> None:
        if not self._loaded:
            self._check_integrity()
            self._load()
            self._loaded = True

    def _check_integrity(self) -> None:
        """The files against the manifest's checksums (`integrity.py`), unless `verify_files=False`."""
        from .integrity import check_artifact_files

        if self.options.get("verify_files", True) is False:
            self.integrity = "skipped: verify_files=False"
        elif self.path.is_file():  # a missing file is the backend's error to report
            self.integrity = check_artifact_files(self.path, read_sidecar(self.path))

    def close(self) -> None:
        self._loaded = False

    def __enter__(self) -> BaseBackend:
        self.load()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_u2net_io(self) -> None:
        """One NCHW image input with 3 channels and 1-channel NCHW maps out, or a clear error.

        Catches another network's model file (a classifier, a detector, a 3-class segmenter)
        at load time instead of as a shape error deep inside postprocessing. Backends that read
        a foreign file call it from `_load` as soon as they know the tensors.
        """
        def layout(tensors: list[TensorInfo]) -> str:
            return ", ".join(f"{t.name} {'x'.join('?' if d is None else str(d) for d in t.shape)}" for t in tensors)

        image_in = (len(self.inputs) == 1 and len(self.inputs[0].shape) == 4 and self.inputs[0].shape[1] in (3, None)
                    and self.inputs[0].dtype in ("float32", "float16"))
        maps_out = bool(self.outputs) and all(len(t.shape) == 4 and t.shape[1] in (1, None) for t in self.outputs)
        if not (image_in and maps_out):
            raise ModelLoadError(
                f"{self.path}: is not a U2-Net model: it takes [{layout(self.inputs)}] and returns "
                f"[{layout(self.outputs)}], where U2-Net takes one Nx3xHxW image and returns Nx1xHxW maps"
            )

    # -- inference ---------------------------------------------------------------------------
    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self._loaded:
            raise BackendError(f"{self.path}: backend is closed or not loaded; call load() first")
        self._check_feeds(feeds)
        dtypes = {t.name: t.dtype for t in self.inputs}
        return self._infer({k: np.ascontiguousarray(v, dtype=dtypes[k]) for k, v in feeds.items()})

    def _check_feeds(self, feeds: Mapping[str, np.ndarray]) -> None:
        expected = {t.name: t for t in self.inputs}
        if set(feeds) != set(expected):
            raise InputError(f"{self.path.name}: inputs {sorted(feeds)} given; the model takes {sorted(expected)}")
        for name, array in feeds.items():
            info = expected[name]
            shape = tuple(np.shape(array))
            mismatch = len(shape) != len(info.shape) or any(
                want is not None and want != got for want, got in zip(info.shape, shape, strict=True))
            if mismatch:
                wanted = "x".join("?" if d is None else str(d) for d in info.shape)
                raise InputError(
                    f"{self.path.name}: input '{name}' has shape {'x'.join(map(str, shape))}, the model takes {wanted} "
                    "(re-export with another --size/--batch, or --dynamic)"
                )

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "path": str(self.path),
            "device": self.device or "cpu",
            "precision": self.precision,
            "integrity": self.integrity,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "spec": self.spec.to_dict(),
            "versions": self._versions(),
        }

    # -- for subclasses ----------------------------------------------------------------------
    def _load(self) -> None:
        raise NotImplementedError

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _versions(self) -> dict[str, str]:
        return {}

    @property
    def batch_size(self) -> int | None:
        """Static batch size of the first input, or None when the batch is dynamic."""
        return self.inputs[0].shape[0] if self.inputs else None

    @property
    def static_hw(self) -> tuple[int, int] | None:
        """The input's fixed (height, width), or None when either is dynamic."""
        height, width = self.inputs[0].shape[2:4]
        return (height, width) if height is not None and width is not None else None

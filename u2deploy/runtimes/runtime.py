"""`Runtime`: one API over every backend, images in and saliency maps out.

The facade is the only place that chooses a backend (from the file suffix or `backend=`), and
the only place that joins backends to the shared pre/post-processing, so every backend sees the
same tensors and returns maps through the same code.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import __version__, processing
from ..errors import InputError
from ..processing import ImageInput
from ..spec import ModelSpec, parse_size
from ..tasks import task_for
from .registry import backend_class, backend_for_path

__all__ = ["Runtime"]


class Runtime:
    """Run a U2-Net artifact on images, whatever its format.

    Example:
        >>> with Runtime("u2net.xml") as rt:
        ...     saliency = rt.predict("photo.jpg")   # float32 HxW in [0, 1] at the photo's size

    Args:
        model: a `.pth`/`.pt`, `.onnx`, `.xml` or `.engine`/`.plan` file, or a weights name
            (`u2net`, `u2netp`, ...).
        backend: `auto` (from the suffix), `torch`, `onnxruntime`, `openvino` or `tensorrt`.
        device: backend device (`cpu`, `cuda`, `CPU`/`GPU`/`NPU`/`AUTO` for OpenVINO, ...).
        mode: pre/post-processing, `fast` (OpenCV) or `reference` (upstream-exact).
        task: override the task for files that carry none (`sod`, `human`, `portrait`).
        input_size: network input size for artifacts with dynamic height/width (an int or
            (height, width)); must equal the size of a static artifact.
        strict: fail rather than fall back to CPU when a GPU provider is unavailable.
        task_options: options of the task's pipeline, e.g. ``{"face": False}`` to draw a whole
            image with the portrait model instead of its largest face.
        **options: passed to the backend (threads, hint, precision, graph_optimization, ...).

    `predict` and `infer` may be called from several threads: backends that are not
    thread-safe are serialised with a lock.
    """

    def __init__(self, model: str | os.PathLike, backend: str = "auto", device: str | None = None, *,
                 mode: str = "fast", task: str | None = None, strict: bool = False,
                 input_size: int | tuple[int, int] | None = None, task_options: dict[str, Any] | None = None,
                 **options: Any) -> None:
        if mode not in processing.MODES:
            raise InputError(f"unknown processing mode '{mode}'; available: {', '.join(processing.MODES)}")
        from ..weights import resolve_model_path

        path = resolve_model_path(model)
        name = backend_for_path(path) if backend == "auto" else backend
        if task is not None:
            options["task"] = task
        self._backend = backend_class(name)(path, device=device, strict=strict, **options)
        self._backend.load()
        self.mode = mode
        self.path = path
        self.spec: ModelSpec = self._backend.spec.with_task(task)
        if input_size is not None:
            self.spec = self._apply_size(parse_size(input_size))
        self._task = task_for(self.spec, **(task_options or {}))
        self._lock = None if self._backend.thread_safe else threading.Lock()

    def _apply_size(self, size: tuple[int, int]) -> ModelSpec:
        static = self._backend.static_hw
        if static is not None and tuple(static) != size:
            raise InputError(f"{self.path.name}: was exported for {static[0]}x{static[1]} input, not {size[0]}x{size[1]}; "
                             "re-export with --size or --dynamic, or leave the size out")
        return self.spec.replace(input_size=size)

    # -- properties --------------------------------------------------------------------------
    @property
    def backend(self) -> str:
        return self._backend.name

    @property
    def input_size(self) -> tuple[int, int]:
        """The (height, width) images are resized to: the artifact's static size, else the spec's."""
        return self._backend.static_hw or tuple(self.spec.input_size)

    @property
    def batch_size(self) -> int | None:
        """Static batch size of the artifact, or None when any batch is accepted."""
        return self._backend.batch_size

    # -- inference ---------------------------------------------------------------------------
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Raw inference: an Nx3xHxW float32 array -> the Nx1xHxW fused map (after sigmoid)."""
        outputs = self.infer_all(batch)
        name = self.spec.output_names[0] if self.spec.output_names[0] in outputs else next(iter(outputs))
        return outputs[name]

    def infer_all(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Raw inference returning every output of the artifact by name, for any batch size."""
        batch = np.asarray(batch, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise InputError(f"infer() takes an Nx3xHxW array, got shape {batch.shape}")
        static = self.batch_size
        if static is None or static == len(batch):
            return self._call(batch)
        parts = []
        for start in range(0, len(batch), static):
            chunk = batch[start:start + static]
            pad = static - len(chunk)
            if pad:  # a fixed-batch artifact needs a full batch; the padding is dropped again
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
            parts.append({name: out[: static - pad] for name, out in self._call(chunk).items()})
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}

    def predict(self, images: ImageInput | Sequence[ImageInput], channel_order: str = "rgb") -> np.ndarray | list[np.ndarray]:
        """The task's output for each image: float32 in [0, 1].

        `sod` and `human` give the saliency map at each image's own size; `portrait` gives the
        drawing of the largest face at the network resolution (see `u2deploy.tasks`). A list (or
        tuple) of images gives a list, run in batches where the artifact allows.

        Arrays are taken as RGB. OpenCV decodes and captures BGR, so say so (the stream pipeline
        does), else red and blue swap and the map quietly degrades:

            >>> frame = cv2.imread("photo.jpg")                  # BGR
            >>> saliency = rt.predict(frame, channel_order="bgr")
        """
        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        if not items:
            return []
        spec = self.spec.replace(input_size=self.input_size)
        prepared = [self._task.prepare(image, spec, self.mode, channel_order) for image in items]
        fused = self.infer(np.concatenate([tensor for tensor, _ in prepared]))
        outputs = [self._task.finish(fused[i], spec, context, self.mode) for i, (_, context) in enumerate(prepared)]
        return outputs[0] if single else outputs

    def prepare(self, image: ImageInput, channel_order: str = "rgb") -> tuple[np.ndarray, Any]:
        """First half of `predict`: one image's 1x3xHxW network input and the context `finish` needs.

        `predict` split in two lets a caller batch images across requests (`u2deploy serve`).
        """
        return self._task.prepare(image, self.spec.replace(input_size=self.input_size), self.mode, channel_order)

    def finish(self, fused: np.ndarray, context: Any) -> np.ndarray:
        """Second half of `predict`: one image's row of `infer` output and its `prepare` context -> the output."""
        return self._task.finish(fused, self.spec.replace(input_size=self.input_size), context, self.mode)

    def _call(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        feeds = {self._backend.inputs[0].name: batch}
        if self._lock is None:
            return self._backend.infer(feeds)
        with self._lock:
            return self._backend.infer(feeds)

    # -- description and lifecycle -----------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """Backend, device, precision, input shape and size, processing mode and library versions."""
        info = self._backend.describe()
        info["input_shape"] = list(self._backend.inputs[0].shape)
        info["input_size"] = list(self.input_size)
        info["batch_size"] = self.batch_size
        info["mode"] = self.mode
        info["task"] = self.spec.task
        info["thread_safe"] = self._backend.thread_safe
        info["versions"] = {"u2deploy": __version__, **info["versions"]}
        return info

    def summary(self) -> str:
        """`describe()` for people: a few lines, one topic each (`u2deploy predict -v` prints it)."""
        info = self.describe()
        shape = "x".join("?" if d is None else str(d) for d in info["input_shape"])
        lines = [f"model:     {info['path']} ({info['spec'].get('arch', '?')}, task {info['task']})",
                 f"backend:   {info['backend']} on {info['device']}, input {shape}, {info['mode']} processing",
                 f"precision: {info['precision']} (artifact {info.get('artifact_precision', info['precision'])})"]
        for key in ("inference_precision", "execution_mode", "graph_optimization", "providers", "requested_providers",
                    "fallback", "layer_precisions"):
            if key in info:
                value = ", ".join(map(str, info[key])) if isinstance(info[key], list) else info[key]
                lines.append(f"  {key.replace('_', ' ')}: {value}")
        settings = info.get("settings")
        if settings:
            applied = ", ".join(f"{k}={v}" for k, v in settings["applied"].items()) or "backend defaults"
            lines.append(f"settings:  {applied} (from {settings['source']})")
        if "integrity" in info:
            lines.append(f"integrity: {info['integrity']}")
        lines.append("versions:  " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
        return "\n".join(lines)

    def close(self) -> None:
        self._backend.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Runtime({str(self.path)!r}, backend={self.backend!r}, mode={self.mode!r})"



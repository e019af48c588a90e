"""Task-specific pre/post-processing: what `Runtime.predict` does for `sod`, `human` and `portrait`.

A task turns one image into a network input plus a context, and the network's fused map plus that
context into the user's output. `sod` and `human` share the saliency contract of
`u2deploy.processing` (resize, normalise; map back at the image's size). `portrait` detects the
largest face, crops it with upstream's margins, pads to a white square and draws it
(`u2deploy.tasks.portrait`). Tasks are looked up by name, so `Runtime` never branches on them.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

import numpy as np

from .. import processing
from ..processing import ImageInput
from ..spec import ModelSpec

__all__ = ["Task", "SaliencyTask", "TASK_PIPELINES", "task_for"]


class Task(Protocol):
    def prepare(self, image: ImageInput, spec: ModelSpec, mode: str, channel_order: str) -> tuple[np.ndarray, Any]: ...
    def finish(self, fused: np.ndarray, spec: ModelSpec, context: Any, mode: str) -> np.ndarray: ...


class SaliencyTask:
    """Salient objects and person segmentation: the upstream `u2net_test.py` contract."""

    def __init__(self, **options: Any) -> None:
        self.options = options

    def prepare(self, image: ImageInput, spec: ModelSpec, mode: str, channel_order: str) -> tuple[np.ndarray, Any]:
        return processing.preprocess(image, spec, mode, channel_order)

    def finish(self, fused: np.ndarray, spec: ModelSpec, context: Any, mode: str) -> np.ndarray:
        return processing.postprocess(fused, spec, context, mode)


TASK_PIPELINES: dict[str, str] = {
    "sod": "u2deploy.tasks:SaliencyTask",
    "human": "u2deploy.tasks:SaliencyTask",
    "portrait": "u2deploy.tasks.portrait:PortraitTask",
}


def task_for(spec: ModelSpec, **options: Any) -> Task:
    """The pipeline of `spec.task`, configured with task options (e.g. `face=False` for portraits)."""
    module_name, class_name = TASK_PIPELINES[spec.task].split(":")
    return getattr(importlib.import_module(module_name), class_name)(**options)

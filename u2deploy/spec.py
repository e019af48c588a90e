"""What a model *is* and how its inputs and outputs are prepared: the contract every artifact carries.

A `ModelSpec` travels with the weights: in u2deploy checkpoints, in ONNX `metadata_props`, in
OpenVINO `rt_info` and in every sidecar manifest. Backends never resize or normalise; the
`Runtime` facade reads the spec and lets `processing` do it, so every backend sees the same tensor.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from dataclasses import dataclass, field
from typing import Any

from .errors import InputError

__all__ = ["ModelSpec", "TASKS", "IMAGENET_MEAN", "IMAGENET_STD", "spec_for_task", "METADATA_KEY", "parse_size",
           "MAX_SIDE"]

#: Largest image/network side accepted from options (--size): beyond it OpenCV's allocator or the
#: network's activations (64 channels x H x W floats per layer) exhaust memory.
MAX_SIDE = 4096

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Key under which the spec is stored as JSON in ONNX metadata_props / OpenVINO rt_info.
METADATA_KEY = "u2deploy"

#: Per-task defaults (REFERENCE.md sections 4 and 7).
TASKS: dict[str, dict[str, Any]] = {
    # Salient object detection: u2net_test.py.
    "sod": {"input_size": (320, 320), "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "invert_output": False},
    # Person segmentation: u2net_human_seg_test.py is the SOD pipeline with other weights.
    "human": {"input_size": (320, 320), "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "invert_output": False},
    # Portrait drawing: u2net_portrait_demo.py swaps the R and B statistics and inverts the map.
    "portrait": {
        "input_size": (512, 512),
        "mean": (0.406, 0.456, 0.485),
        "std": (0.225, 0.224, 0.229),
        "invert_output": True,
    },
}


@dataclass(frozen=True)
class ModelSpec:
    """Identity and I/O contract of one U2-Net model.

    Attributes:
        arch: network variant (`u2net`, `u2netp`, `u2net_test`).
        task: `sod`, `human` or `portrait`; picks the pre/post-processing defaults.
        input_size: network input (height, width).
        mean, std: per-channel statistics in RGB order, applied after scaling to [0, 1].
        scale: `max` divides by the image maximum (upstream ToTensorLab); `255` divides by 255.
        invert_output: the map is `1 - fused` (portrait drawings are dark strokes on white).
        input_name, output_names: tensor names in exported graphs.
    """

    arch: str = "u2net"
    task: str = "sod"
    input_size: tuple[int, int] = (320, 320)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    scale: str = "max"
    invert_output: bool = False
    input_name: str = "input"
    output_names: tuple[str, ...] = ("mask",)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise InputError(f"unknown task '{self.task}'; available: {', '.join(TASKS)}")
        if self.scale not in ("max", "255"):
            raise InputError(f"unknown scale mode '{self.scale}'; use 'max' or '255'")
        _check_size(self.input_size)
        _check_statistics("mean", self.mean, positive=False)
        _check_statistics("std", self.std, positive=True)

    def replace(self, **changes: Any) -> ModelSpec:
        return dataclasses.replace(self, **changes)

    def with_task(self, task: str | None) -> ModelSpec:
        """This spec re-targeted at `task`: its statistics, output inversion and default input size.

        Used where a file carries no task (an official .pth) or the user overrides it.
        """
        if task is None or task == self.task:
            return self
        defaults = spec_for_task(task, arch=self.arch)
        return self.replace(task=task, mean=defaults.mean, std=defaults.std, invert_output=defaults.invert_output,
                            input_size=defaults.input_size)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["input_size"] = list(self.input_size)
        data["mean"], data["std"] = list(self.mean), list(self.std)
        data["output_names"] = list(self.output_names)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        """The spec stored in a file; anything malformed is an `InputError` saying which field."""
        if not isinstance(data, dict):
            raise InputError(f"spec is a {type(data).__name__}, not a mapping of fields")
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        for key in ("input_size", "mean", "std", "output_names"):
            if key in kwargs:
                if not isinstance(kwargs[key], (list, tuple)):
                    raise InputError(f"spec field {key} is {kwargs[key]!r}, not a list")
                kwargs[key] = tuple(kwargs[key])
        for key in ("arch", "task", "scale", "input_name"):
            if key in kwargs and not isinstance(kwargs[key], str):
                raise InputError(f"spec field {key} is {kwargs[key]!r}, not a string")
        if "extra" in kwargs and not isinstance(kwargs["extra"], dict):
            raise InputError(f"spec field extra is {kwargs['extra']!r}, not a mapping")
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, TypeError) as exc:
            raise InputError(f"spec is not valid JSON ({exc})") from None
        return cls.from_dict(data)


def _check_size(size: Any) -> None:
    if len(size) != 2 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in size):
        raise InputError(f"spec input_size {list(size)!r} is not two integers (height, width)")
    height, width = size
    if height < 32 or width < 32:
        raise InputError(f"input size {height}x{width} is too small; use at least 32x32 (320 is the default)")
    if height > MAX_SIDE or width > MAX_SIDE:
        raise InputError(f"input size {height}x{width} is too large; use at most {MAX_SIDE}x{MAX_SIDE} (320 is the default)")


def _check_statistics(name: str, values: Any, positive: bool) -> None:
    """Three finite numbers (a std of 0 would divide by zero and give an inf/NaN tensor)."""
    valid = len(values) == 3 and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values)
    if not valid or not all(math.isfinite(v) for v in values):
        raise InputError(f"spec {name} {list(values)!r} is not three finite numbers")
    if positive and min(values) <= 0:
        raise InputError(f"spec std {list(values)!r} must be positive (a std of 0 divides by zero)")


def spec_for_task(task: str, arch: str = "u2net", input_size: int | tuple[int, int] | None = None) -> ModelSpec:
    """The default spec of `task`, optionally at another input size."""
    if task not in TASKS:
        raise InputError(f"unknown task '{task}'; available: {', '.join(TASKS)}")
    defaults = dict(TASKS[task])
    if input_size is not None:
        defaults["input_size"] = parse_size(input_size)
    return ModelSpec(arch=arch, task=task, **defaults)


def parse_size(size: int | str | tuple[int, int] | list[int]) -> tuple[int, int]:
    """320, '320', '320x288' or (320, 288) -> (height, width)."""
    if isinstance(size, (tuple, list)):
        height, width = size
        return _bounded(int(height), int(width), f"{height}x{width}")
    text = str(size).lower()
    try:
        if "x" in text:
            height, width = (int(part) for part in text.split("x"))
        else:
            height = width = int(text)
    except ValueError:
        raise InputError(f"cannot read size '{size}'; use e.g. 320 or 320x288") from None
    return _bounded(height, width, size)


def _bounded(height: int, width: int, given: Any) -> tuple[int, int]:
    """Sizes are checked before anything is allocated: 100000 must not reach OpenCV's allocator."""
    if height < 1 or width < 1 or height > MAX_SIDE or width > MAX_SIDE:
        raise InputError(f"size {given}: each side must be 1..{MAX_SIDE} (e.g. 320 or 320x288)")
    return height, width

"""Training options: defaults from upstream `u2net_train.py`, validation, and the resume rules.

A run's resolved config is stored in every `last.pth`. Resuming takes it from there; options given
again must agree with it, except those in `RESUME_OVERRIDABLE` (length of the run, loader workers,
logging/saving cadence, device, output folder), so a resumed run is the run that was started, not a
silently different one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, UnsupportedOptionError
from ..spec import parse_size
from .data import FLIPS, RESIZES
from .metrics import METRICS

__all__ = ["TrainConfig", "RESUME_OVERRIDABLE", "BEST_METRICS"]

#: options a resumed run may change
RESUME_OVERRIDABLE = frozenset({"iters", "epochs", "workers", "save_every", "val_every", "log_every",
                                "keep_checkpoints", "device", "out"})  # fmt: skip
#: metric -> higher is better; `train_loss` (mean total loss over a save interval) needs no --val
BEST_METRICS: dict[str, bool] = {"train_loss": False, "loss": False,
                                 **{k: higher for k, (_, higher) in METRICS.items()}}  # fmt: skip


@dataclass
class TrainConfig:
    """Every option of a training run.

    Attributes:
        data: a dataset root, or an images folder and a masks folder (see `train.data`).
        val: the same for a validation set; optional.
        arch: `u2net`, `u2netp` or `u2net_test`; taken from `init` when not given, else `u2net`.
        init: weights to start from: a name (`u2net`, `u2netp`, ...) or a file; else random init.
        task: `sod`, `human` or `portrait`: the processing spec the checkpoint carries.
        epochs, iters: length of the run; give exactly one.
        batch_size: per process (upstream: 12 on one GPU).
        lr, betas, eps, weight_decay: Adam, upstream defaults.
        size: rescale size, which is also the inference size stored in the checkpoint (upstream 320).
        crop: random crop size; None -> size - size // 10 (288 for 320); 0 -> no crop (stored as 0).
        flip: `vertical` (upstream), `horizontal` or `none`.
        resize: `reference` (skimage-0.14 exact) or `fast` (OpenCV).
        amp: mixed precision: float16 with a grad scaler on CUDA, bfloat16 on CPU.
        workers: DataLoader worker processes per training process.
        out: run folder (logs, `last.pth`, `best.pth`).
        save_every: iterations between `last.pth` writes (upstream saves every 2000).
        val_every: iterations between validations; None -> save_every.
        log_every: iterations per log row (each row holds the means over the interval).
        best_metric: what `best.pth` maximises/minimises; None -> `max_f` with --val, else `train_loss`.
        keep_checkpoints: also keep `checkpoints/step_NNNNNNN.pth` at every save.
        seed: shuffling, augmentation and initialisation seed.
        device: `auto`, `cpu`, `cuda` or `cuda:N`.
    """

    data: list[str]
    val: list[str] | None = None
    arch: str | None = None
    init: str | None = None
    task: str | None = None
    epochs: int | None = None
    iters: int | None = None
    batch_size: int = 12
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    size: Any = 320
    crop: Any = None
    flip: str = "vertical"
    resize: str = "reference"
    amp: bool = False
    workers: int = 2
    out: str = "runs/train"
    save_every: int = 2000
    val_every: int | None = None
    log_every: int = 10
    best_metric: str | None = None
    keep_checkpoints: bool = False
    seed: int = 0
    device: str = "auto"

    def resolved(self) -> TrainConfig:
        """A checked copy with sizes as [h, w], the crop, val_every and best_metric filled in."""
        size = list(parse_size(self.size))
        if self.crop in (0, "0"):
            crop = 0
        elif self.crop is None:
            crop = [size[0] - size[0] // 10, size[1] - size[1] // 10]
        else:
            crop = list(parse_size(self.crop))
        best = self.best_metric or ("max_f" if self.val else "train_loss")
        config = dataclasses.replace(
            self, data=_paths(self.data), val=_paths(self.val) if self.val else None, size=size, crop=crop,
            betas=tuple(float(b) for b in self.betas), val_every=self.val_every or self.save_every, best_metric=best)
        config.check()
        return config

    def check(self) -> None:
        """Raise on options that cannot work together (never rewrite them)."""
        if (self.epochs is None) == (self.iters is None):
            raise UnsupportedOptionError("give the length of the run as --epochs N or --iters N (exactly one)")
        for name in ("epochs", "iters", "batch_size", "save_every", "log_every", "val_every"):
            value = getattr(self, name)
            if value is not None and int(value) < 1:
                raise InputError(f"--{name.replace('_', '-')} {value}: must be at least 1")
        if self.workers < 0:
            raise InputError(f"--workers {self.workers}: must be 0 or more")
        if not self.lr > 0:
            raise InputError(f"--lr {self.lr}: must be positive")
        for name, value, choices in (("flip", self.flip, FLIPS), ("resize", self.resize, RESIZES),
                                     ("best-metric", self.best_metric, tuple(BEST_METRICS))):  # fmt: skip
            if value is not None and value not in choices:
                raise InputError(f"--{name} {value}: unknown; available: {', '.join(choices)}")
        if self.best_metric not in (None, "train_loss") and not self.val:
            raise UnsupportedOptionError(f"--best-metric {self.best_metric} needs a validation set (--val DIR)")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["betas"] = list(self.betas)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "betas" in values:
            values["betas"] = tuple(values["betas"])
        return cls(**values)

    def for_resume(self, explicit: dict[str, Any]) -> TrainConfig:
        """This (stored) config with the options given again applied; conflicting ones raise."""
        changes = {k: v for k, v in explicit.items() if v is not None}
        if "iters" in changes or "epochs" in changes:  # a new length replaces the old one
            changes.setdefault("iters", None)
            changes.setdefault("epochs", None)
        conflicts = [f"--{k.replace('_', '-')} {v!r} (the run has {getattr(self, k)!r})" for k, v in changes.items()
                     if k not in RESUME_OVERRIDABLE and not _same(k, v, getattr(self, k))]  # fmt: skip
        if conflicts:
            raise UnsupportedOptionError(
                f"resuming keeps the run's options, but {'; '.join(conflicts)} differ; drop them, or start a new "
                "run from the checkpoint with --init")
        allowed = {k: v for k, v in changes.items() if k in RESUME_OVERRIDABLE}
        return dataclasses.replace(self, **allowed).resolved()


def _paths(items: str | list[str] | tuple[str, ...]) -> list[str]:
    """Absolute paths, so a run resumed from another working directory finds its data."""
    items = [items] if isinstance(items, (str, Path)) else list(items)
    return [str(Path(p).expanduser().resolve()) for p in items]


def _same(key: str, given: Any, stored: Any) -> bool:
    """Compare a re-given option with the stored (resolved) one, ignoring spelling differences."""
    if key in ("data", "val"):
        return [Path(p).resolve() for p in _paths(given)] == [Path(p).resolve() for p in (stored or [])]
    if key in ("size", "crop"):
        if given in (0, "0") or stored == 0:
            return given in (0, "0") and stored == 0
        return list(parse_size(given)) == list(stored)
    if key == "init" and given is not None and stored is not None and Path(given).exists():
        return Path(given).resolve() == Path(stored).resolve()
    if key == "betas":
        return [float(b) for b in given] == [float(b) for b in stored]
    return given == stored

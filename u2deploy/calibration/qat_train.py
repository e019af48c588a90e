"""Quantization-aware fine-tuning without labels: the Q/DQ graph learns to reproduce its fp32 graph's maps.

The student is the calibrated TensorRT-form Q/DQ graph run by `qat.graph_module` (fake quantization
exactly where the shipped graph has it; weights, biases, per-channel weight scales and per-tensor
activation scales trainable); the teacher is the fp32 graph it was calibrated from, run by the same
interpreter. The loss is distillation on the logits U2-Net turns into maps: the fused logit (the
Sigmoid's input) and the six side logits feeding the fuse conv, each a binary cross-entropy against
the teacher's probabilities minus the teacher's own entropy (so 0 means identical maps), plus the
L1 distance of the fused maps. No labels are needed, so any folder of images will do.

Images are preprocessed once as inference does (`processing.preprocess`, reference mode) at a
slightly larger size, then served as a fixed pool of random crops and flips; the teacher's logits
for each pool entry are computed once and kept (fp16), so a short CPU run spends its time on the
student. The state with the lowest distillation loss on a few fixed pool entries (checked every
`check_every` steps, and first at the start: the PTQ graph itself) is what is kept, so a run never
ends worse on those than where it began, and Ctrl-C stops with that state.

Judged afterwards by `sensitivity.Emulator` (ONNX Runtime, graph optimisation off: the exact INT8
computation) against the fp32 maps on held-out photos never trained on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..errors import InputError
from .qat import graph_module, learned_graph

__all__ = ["QatOptions", "QatRun", "DistillImages", "distill_names", "fine_tune"]


@dataclass(frozen=True)
class QatOptions:
    """How long and how to fine-tune.

    Attributes:
        iterations: optimizer steps (None: until `minutes`).
        minutes: wall-clock budget, teacher included (None: until `iterations`).
        batch: crops per step.
        crop: crop side in pixels (None: the graph's input size); must divide it by a power of 2.
        step_lr: Adam's learning rate for the int8 weights, in units of their quantization step.
        lr: Adam's learning rate for biases and the weights of the convs kept float.
        scale_lr: learning rate of the log of each scale.
        side_weight: weight of the six side-logit terms against the fused one.
        crops_per_image: pool entries per image (random crop and flip each).
        check_every: steps between checks of the loss on the fixed pool entries.
        seed: crops, flips and the order of the pool.
    """

    iterations: int | None = None
    minutes: float | None = None
    batch: int = 2
    crop: int | None = None
    # small steps: the PTQ start is already close, and Adam moves every parameter by about its lr per
    # step; 30-100x larger rates never beat PTQ on the pretrained U2-Net (docs/int8.md)
    step_lr: float = 3e-4
    lr: float = 1e-7
    scale_lr: float = 3e-5
    side_weight: float = 0.5
    crops_per_image: int = 4
    check_every: int = 10
    check_entries: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.iterations is None and self.minutes is None:
            raise InputError("QAT needs a budget: --iters N or --minutes M")
        if (self.iterations is not None and self.iterations < 1) or (self.minutes is not None and self.minutes <= 0):
            raise InputError(f"QAT budget must be positive (got --iters {self.iterations}, --minutes {self.minutes})")
        if self.batch < 1:
            raise InputError(f"--batch {self.batch}: use 1 or more")


@dataclass
class QatRun:
    """What `fine_tune` did: the learned Q/DQ graph and the loss history."""

    model: Any
    iterations: int
    seconds: float
    start_loss: float
    best_loss: float
    best_iteration: int
    interrupted: bool = False
    history: list[dict[str, float]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"iterations": self.iterations, "minutes": round(self.seconds / 60, 2),
                "check_loss_start": round(self.start_loss, 6), "check_loss_best": round(self.best_loss, 6),
                "best_iteration": self.best_iteration, "interrupted": self.interrupted}  # fmt: skip


def distill_names(model: Any) -> list[str]:
    """The fused logit (the output Sigmoid's input) and the six side logits (the fuse Concat's inputs)."""
    from .qdq import head_nodes

    head = head_nodes(model)
    nodes = {n.name: n for n in model.graph.node}
    sigmoid = next(n for n in model.graph.node if n.output[0] == model.graph.output[0].name)
    return [sigmoid.input[0], *nodes[head.concat].input]


class DistillImages:
    """Preprocessed images and a seeded pool of (image, crop corner, flip) entries.

    Args:
        arrays: decoded images (HxWxC uint8 or float).
        spec: the graph's spec; images are preprocessed at its size x `margin`, then cropped.
        crop: crop side (None: the spec's input size).
        crops_per_image: pool entries per image.
        seed: picks the crops and flips.
    """

    def __init__(self, arrays: list[np.ndarray], spec: Any, crop: int | None = None, crops_per_image: int = 4,
                 seed: int = 0, margin: float = 1.15) -> None:
        from ..processing import preprocess

        height, width = spec.input_size
        self.crop = (crop, crop) if crop else (height, width)
        big = replace(spec, input_size=(int(round(height * margin)), int(round(width * margin))))
        self.tensors = [preprocess(a, big, mode="reference")[0][0] for a in arrays]
        rng = np.random.default_rng(seed)
        self.pool = [(i, *self._corner(rng, big.input_size), bool(rng.integers(2)))
                     for _ in range(crops_per_image) for i in range(len(arrays))]  # fmt: skip

    def _corner(self, rng: np.random.Generator, size: tuple[int, int]) -> tuple[int, int]:
        return int(rng.integers(size[0] - self.crop[0] + 1)), int(rng.integers(size[1] - self.crop[1] + 1))

    def __len__(self) -> int:
        return len(self.pool)

    def entry(self, index: int) -> np.ndarray:
        image, top, left, flip = self.pool[index]
        crop = self.tensors[image][:, top:top + self.crop[0], left:left + self.crop[1]]
        return np.ascontiguousarray(crop[:, :, ::-1] if flip else crop)

    def batch(self, indices: list[int]) -> np.ndarray:
        return np.stack([self.entry(i) for i in indices])


class _Teacher:
    """The fp32 graph's logits for pool entries, computed once each and kept in fp16."""

    def __init__(self, fp32_model: Any, images: DistillImages) -> None:
        import torch

        self.module = graph_module(fp32_model).requires_grad_(False)
        self.names = distill_names(fp32_model)
        self.images, self.memo, self.torch = images, {}, torch

    def logits(self, indices: list[int]) -> list[Any]:
        missing = [i for i in indices if i not in self.memo]
        if missing:
            with self.torch.no_grad():
                outs = self.module(self.torch.from_numpy(self.images.batch(missing)), self.names)
            for row, index in enumerate(missing):
                self.memo[index] = [o[row].half() for o in outs]
        return [self.torch.stack([self.memo[i][k] for i in indices]).float() for k in range(len(self.names))]


def _kl_bce(student: Any, teacher: Any) -> Any:
    """Binary cross-entropy of student logits against teacher probabilities, minus the teacher's entropy."""
    import torch.nn.functional as F  # noqa: N812

    target = teacher.sigmoid()
    return F.binary_cross_entropy_with_logits(student, target) - F.binary_cross_entropy_with_logits(teacher, target)


def distill_loss(student: list[Any], teacher: list[Any], side_weight: float) -> Any:
    """Fused KL-BCE + fused L1 + `side_weight` x the mean side KL-BCE."""
    fused = _kl_bce(student[0], teacher[0]) + (student[0].sigmoid() - teacher[0].sigmoid()).abs().mean()
    sides = sum(_kl_bce(s, t) for s, t in zip(student[1:], teacher[1:], strict=True)) / max(len(student) - 1, 1)
    return fused + side_weight * sides


def _optimizer(module: Any, options: QatOptions) -> Any:
    import torch

    steps = [p for i, p in enumerate(module.values) if module.is_step_unit(i)]
    floats = [p for i, p in enumerate(module.values) if not module.is_step_unit(i)]
    groups = [(steps, options.step_lr), (floats, options.lr), (list(module.logs), options.scale_lr)]
    return torch.optim.Adam([{"params": params, "lr": lr, "base": lr} for params, lr in groups if params])


class _Budget:
    """Progress through the budget (0..1, steps or minutes, whichever ends first), for the cosine decay."""

    def __init__(self, options: QatOptions) -> None:
        self.options, self.start = options, time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start

    def progress(self, step: int) -> float:
        done = [step / self.options.iterations] if self.options.iterations else []
        done += [self.seconds / (60 * self.options.minutes)] if self.options.minutes else []
        return min(1.0, max(done))


def fine_tune(fp32_model: Any, qdq_model: Any, images: DistillImages, options: QatOptions,
              log: Callable[[str], None] | None = None) -> QatRun:
    """Fine-tune the Q/DQ graph toward the fp32 graph's maps; returns the best state as a Q/DQ graph.

    Args:
        fp32_model: the fp32 graph (teacher; its weights start the latent weights).
        qdq_model: the calibrated TensorRT-form Q/DQ graph (student).
        images: the training crops (never the held-out photos).
        options: budget and learning rates.
        log: receives progress lines.
    """
    import torch

    torch.manual_seed(options.seed)
    student, teacher = graph_module(qdq_model, fp32_model), _Teacher(fp32_model, images)
    state = _TrainState(student, teacher, images, options, log)
    try:
        state.loop()
    except KeyboardInterrupt:
        state.interrupted = True
        state.say(f"qat: interrupted at step {state.step}; keeping the best state (step {state.best_step})")
    student.load_state_dict(state.best_state)
    return QatRun(learned_graph(student), state.step, state.budget.seconds, state.start_loss, state.best_loss,
                  state.best_step, state.interrupted, state.history)


class _TrainState:
    """The training loop's state: optimizer, budget, the best check so far."""

    def __init__(self, student: Any, teacher: _Teacher, images: DistillImages, options: QatOptions,
                 log: Callable[[str], None] | None) -> None:
        self.student, self.teacher, self.images, self.options, self.log = student, teacher, images, options, log
        self.names = distill_names(student.model)
        self.optimizer = _optimizer(student, options)
        self.rng = np.random.default_rng(options.seed + 1)
        self.checks = list(range(min(options.check_entries, len(images))))
        self.budget, self.step, self.interrupted, self.history = _Budget(options), 0, False, []
        self.last_said = 0.0
        self.start_loss = self.best_loss = self.check()
        self.best_state, self.best_step = self._snapshot(), 0
        self.say(f"qat: {len(images)} crops of {len(images.tensors)} images at {images.crop[0]}x{images.crop[1]}, "
                 f"check loss at the start (PTQ) {self.start_loss:.5f}")

    def say(self, line: str) -> None:
        if self.log is not None:
            self.log(line)

    def _snapshot(self) -> dict[str, Any]:
        return {k: v.detach().clone() for k, v in self.student.state_dict().items()}

    def check(self) -> float:
        """Distillation loss on the fixed check entries (no gradient)."""
        import torch

        with torch.no_grad():
            outs = self.student(torch.from_numpy(self.images.batch(self.checks)), self.names)
            return float(distill_loss(outs, self.teacher.logits(self.checks), self.options.side_weight))

    def loop(self) -> None:
        while self.budget.progress(self.step) < 1.0:
            loss = self.train_step()
            self.step += 1
            self.history.append({"step": self.step, "loss": round(loss, 6), "seconds": round(self.budget.seconds, 1)})
            if self.step % self.options.check_every == 0 or self.budget.progress(self.step) >= 1.0:
                self.keep_if_best()
            self._progress(loss)

    def train_step(self) -> float:
        import torch

        fraction = self.budget.progress(self.step)
        for group in self.optimizer.param_groups:  # cosine decay over the budget
            group["lr"] = group["base"] * 0.5 * (1 + math.cos(math.pi * fraction))
        indices = [int(i) for i in self.rng.integers(len(self.images), size=self.options.batch)]
        targets = self.teacher.logits(indices)
        outs = self.student(torch.from_numpy(self.images.batch(indices)), self.names)
        loss = distill_loss(outs, targets, self.options.side_weight)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def keep_if_best(self) -> None:
        loss = self.check()
        self.history[-1]["check_loss"] = round(loss, 6)
        if loss < self.best_loss:
            self.best_loss, self.best_state, self.best_step = loss, self._snapshot(), self.step

    def _progress(self, loss: float) -> None:
        seconds = self.budget.seconds
        if seconds - self.last_said < 10 and self.step != 1:
            return
        self.last_said = seconds
        total = f"/{self.options.iterations}" if self.options.iterations else ""
        limit = f" of {self.options.minutes:g} min" if self.options.minutes else ""
        self.say(f"qat: step {self.step}{total}, loss {loss:.5f}, best check {self.best_loss:.5f} (step "
                 f"{self.best_step}), {seconds / 60:.1f} min{limit}, {seconds / max(self.step, 1):.1f} s/step")

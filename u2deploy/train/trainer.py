"""The training loop: upstream `u2net_train.py` plus what a run needs to be trusted and resumed.

Upstream trains with Adam(1e-3) on the summed seven-term BCE, at batch 12, saving a state_dict
every 2000 iterations, with no validation. Here the same recipe gains: a progress bar, a CSV/JSON
log of every loss term and validation metric, atomic `last.pth` (with the optimizer, grad scaler,
step, sampler position and RNG states) and `best.pth` checkpoints that `Runtime` and
`u2deploy export` take as they are, exact resume, a clean stop on SIGINT/SIGTERM, mixed precision
and DistributedDataParallel under torchrun.

Stopping: the first SIGINT (Ctrl-C) or SIGTERM lets the current step finish, writes `last.pth`
and ends the run with `TrainResult.exit_code` 130 (SIGINT) or 143 (SIGTERM); a second Ctrl-C in a
single-process run aborts at once. Under torchrun every process stops at the same step (the stop
flag travels with the loss all-reduce) and repeated signals are expected, since torchrun forwards
the one the terminal sent.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from .._io import atomic_write_text
from ..errors import InputError, ModelLoadError
from ..model.checkpoint import _torch_load, load_checkpoint, load_state_dict_checked, save_checkpoint
from ..model.registry import create_model
from ..processing import postprocess, to_mask_u8
from ..spec import ModelSpec, spec_for_task
from .config import BEST_METRICS, TrainConfig
from .data import EvalTransform, SODDataset, TrainTransform, load_pairs
from .distributed import DistInfo, ResumableSampler, all_reduce_sum, barrier, gather_objects, init_distributed
from .loss import TERM_NAMES, multi_bce_loss
from .metrics import SODMetrics
from .runlog import RunLog
from .state import capture_rng, restore_rng

__all__ = ["Trainer", "TrainResult", "train"]

_LOSS_KEYS = ("loss", *TERM_NAMES)


@dataclass
class TrainResult:
    """How a run ended and where its checkpoints are."""

    run_dir: Path
    step: int
    total_iters: int
    last: Path | None
    best: Path | None
    best_metric: str
    best_value: float | None
    stopped_by: int | None = None  # the signal number when a signal ended the run early

    @property
    def interrupted(self) -> bool:
        return self.stopped_by is not None

    @property
    def exit_code(self) -> int:
        """0 when finished; 128 + signal number (130 for Ctrl-C) when stopped by a signal."""
        return 128 + self.stopped_by if self.stopped_by else 0


class _Logits(nn.Module):
    """Makes `forward` return the logits, so DistributedDataParallel's hooks see the real forward."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.model.forward_logits(x)


def _ignore_sigint(_worker_id: int) -> None:
    """Loader workers leave Ctrl-C to the main process, which stops cleanly (workers would just die)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _StopSignals:
    """Turns SIGINT/SIGTERM into a request to stop after the current step."""

    def __init__(self, announce: bool, tolerate_repeats: bool) -> None:
        self.signum: int | None = None
        self._announce, self._tolerate = announce, tolerate_repeats
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():  # signal.signal works only there
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.signum is not None and not self._tolerate:
            self.__exit__()
            raise KeyboardInterrupt
        if self.signum is None and self._announce:
            print(f"\n{signal.Signals(signum).name}: stopping after this step and saving last.pth "
                  "(Ctrl-C again to abort without saving)", file=sys.stderr, flush=True)  # fmt: skip
        self.signum = self.signum or signum

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


@contextlib.contextmanager
def _main_first(info: DistInfo) -> Iterator[None]:
    """Rank 0 runs the block first (e.g. fetching weights into the cache), then the others."""
    if not info.is_main:
        barrier(info)
    yield
    if info.is_main:
        barrier(info)


class Trainer:
    """Train U2-Net on an image/mask dataset; see the module docstring.

    Example:
        >>> result = Trainer(TrainConfig(data=["data/train"], arch="u2netp", iters=1000, out="runs/p")).fit()
        >>> Runtime(result.best).predict("photo.jpg")

    Args:
        config: the run's options.
        resume: a `last.pth` (or kept checkpoint) to continue from; `config` must then be the
            stored config merged with `TrainConfig.for_resume`, as `Trainer.resume` does.
    """

    def __init__(self, config: TrainConfig, resume: str | os.PathLike | None = None, *,
                 _payload: dict[str, Any] | None = None) -> None:
        self.config = config.resolved()
        self.dist = init_distributed(self.config.device)
        self.run_dir = Path(self.config.out)
        payload = (_payload or _read_train_state(Path(resume))) if resume else None
        self._check_run_dir(resume)
        self._seed()
        self._build_model(payload)
        self._build_data()
        self.step, self.epoch, self.batch_in_epoch, self.elapsed = 0, 0, 0, 0.0
        self.best_value: float | None = None
        self._window = torch.zeros(2)  # (sum of total loss, steps) since the last best check
        if payload is not None:
            self._restore(payload)
        self.total_iters = self.config.iters or self.config.epochs * self.steps_per_epoch
        self.log = RunLog(self.run_dir, enabled=self.dist.is_main, resume_step=self.step if resume else None)

    @classmethod
    def resume(cls, checkpoint: str | os.PathLike, overrides: dict[str, Any] | None = None) -> Trainer:
        """Continue the run saved in `checkpoint`; `overrides` may change only `RESUME_OVERRIDABLE` options."""
        payload = _read_train_state(Path(checkpoint))
        stored = TrainConfig.from_dict(payload["train_state"]["config"])
        overrides = dict(overrides or {})
        overrides.setdefault("out", str(Path(checkpoint).parent if Path(checkpoint).name == "last.pth" else stored.out))
        return cls(stored.for_resume(overrides), resume=checkpoint, _payload=payload)

    # -- setup -------------------------------------------------------------------------------
    def _check_run_dir(self, resume: str | os.PathLike | None) -> None:
        if not resume and (self.run_dir / "last.pth").exists():
            raise InputError(f"{self.run_dir} already holds a run (last.pth); continue it with --resume, "
                             "or choose another --out")  # fmt: skip
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)

    def _seed(self) -> None:
        seed = self.config.seed
        torch.manual_seed(seed)  # identical initial weights on every rank (DDP also broadcasts them)
        np.random.seed(seed + self.dist.rank)
        random.seed(seed + self.dist.rank)

    def _build_model(self, payload: dict[str, Any] | None) -> None:
        config = self.config
        if payload is not None:
            model = create_model(config.arch)
            load_state_dict_checked(model, payload["state_dict"], "resume checkpoint")
            self._init_sha256 = payload.get("provenance", {}).get("init_sha256")
        elif config.init:
            with _main_first(self.dist):
                loaded = load_checkpoint(config.init)
            if config.arch and config.arch != loaded.spec.arch:
                raise InputError(f"--init {config.init} holds {loaded.spec.arch} weights, not --arch {config.arch}; "
                                 "drop --arch or pick weights of that architecture")  # fmt: skip
            model, config.arch = loaded.model, loaded.spec.arch
            config.task = config.task or loaded.spec.task
            self._init_sha256 = loaded.sha256
        else:
            config.arch = config.arch or "u2net"
            model = create_model(config.arch)
            self._init_sha256 = None
        config.task = config.task or "sod"
        self.spec: ModelSpec = spec_for_task(config.task, arch=config.arch, input_size=tuple(config.size))
        self.model = model.to(self.dist.device).train()
        self.net: nn.Module = _Logits(self.model)
        if self.dist.distributed:
            ids = [self.dist.device.index] if self.dist.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.net, device_ids=ids)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr, betas=tuple(config.betas),
                                          eps=config.eps, weight_decay=config.weight_decay)  # fmt: skip
        cuda_amp = config.amp and self.dist.device.type == "cuda"
        self.amp_dtype = torch.float16 if cuda_amp else torch.bfloat16
        self.scaler = torch.amp.GradScaler(self.dist.device.type, enabled=cuda_amp)

    def _build_data(self) -> None:
        config = self.config
        crop = tuple(config.crop) if config.crop else None
        self.train_pairs = load_pairs(config.data)
        self.train_set = SODDataset(self.train_pairs, TrainTransform(self.spec, crop, config.flip, config.resize),
                                    seed=config.seed)  # fmt: skip
        self.sampler = ResumableSampler(self.train_set, self.dist, shuffle=True, seed=config.seed)
        self.loader = self._loader(self.train_set, self.sampler)
        self.steps_per_epoch = math.ceil(self.sampler.num_samples / config.batch_size)
        self.val_loader = None
        if config.val:
            val_pairs = load_pairs(config.val)  # every rank checks it, so a bad set fails everywhere
            if self.dist.is_main:
                val_set = SODDataset(val_pairs, EvalTransform(self.spec, config.resize), seed=config.seed)
                self.val_loader = self._loader(val_set, None)

    def _loader(self, dataset: SODDataset, sampler: ResumableSampler | None) -> DataLoader:
        workers = self.config.workers
        return DataLoader(dataset, batch_size=self.config.batch_size, sampler=sampler, shuffle=False,
                          num_workers=workers, drop_last=False, pin_memory=self.dist.device.type == "cuda",
                          worker_init_fn=_ignore_sigint if workers else None)  # fmt: skip

    # -- state -------------------------------------------------------------------------------
    def _restore(self, payload: dict[str, Any]) -> None:
        state = payload["train_state"]
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        self.elapsed = state.get("elapsed_s", 0.0)
        # resumed into another folder: the first check there writes its own best.pth
        self.best_value = state.get("best_value") if (self.run_dir / "best.pth").exists() else None
        self._window = torch.tensor(state.get("window", [0.0, 0.0]), dtype=torch.float32)
        rng = state["rng"]
        if len(rng) != self.dist.world_size and self.dist.is_main:
            print(f"note: the checkpoint was written by {len(rng)} process(es), this run has {self.dist.world_size}; "
                  "the data order from here differs from the original run", file=sys.stderr)
        restore_rng(rng[self.dist.rank] if len(rng) == self.dist.world_size else rng[0])
        if state.get("dataset") != _fingerprint(self.train_pairs) and self.dist.is_main:
            print("note: the training set differs from the one the checkpoint was trained on", file=sys.stderr)

    def _train_state(self, rng: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
            "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(), "rng": rng,
            "config": self.config.to_dict(), "world_size": self.dist.world_size, "elapsed_s": self.elapsed,
            "best_value": self.best_value, "window": self._window.tolist(),
            "dataset": _fingerprint(self.train_pairs),
        }  # fmt: skip

    def _provenance(self) -> dict[str, Any]:
        config = self.config
        return {"kind": "u2deploy-train", "step": self.step, "epoch": self.epoch, "arch": config.arch,
                "init": config.init, "init_sha256": self._init_sha256, "data": config.data,
                "run_dir": str(self.run_dir.resolve())}  # fmt: skip

    def save_last(self) -> Path:
        """Write `last.pth` with everything needed to resume (a collective: every rank calls it)."""
        rng = gather_objects(capture_rng(), self.dist)
        path = self.run_dir / "last.pth"
        if self.dist.is_main:
            save_checkpoint(self.model, path, self.spec, self._provenance(), {"train_state": self._train_state(rng)})
            if self.config.keep_checkpoints:
                kept = self.run_dir / "checkpoints" / f"step_{self.step:07d}.pth"
                kept.parent.mkdir(exist_ok=True)
                kept.unlink(missing_ok=True)
                os.link(path, kept)  # a hard link: no copy; replacing last.pth later leaves it intact
        barrier(self.dist)
        return path

    def _save_best(self, value: float) -> None:
        provenance = {**self._provenance(), "best_metric": self.config.best_metric, "best_value": value}
        save_checkpoint(self.model, self.run_dir / "best.pth", self.spec, provenance)

    def _consider_best(self, value: float) -> None:
        """Rank 0: keep `best.pth` when `value` of the best metric improves."""
        higher = BEST_METRICS[self.config.best_metric]
        if self.best_value is None or (value > self.best_value if higher else value < self.best_value):
            self.best_value = value
            self._save_best(value)

    # -- training ----------------------------------------------------------------------------
    def _train_step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, bool]:
        """One optimizer step; returns the loss terms averaged over ranks and the agreed stop flag.

        The flag is read after the step, so a signal that arrives during step N stops after step N.
        """
        device = self.dist.device
        images = batch["image"].to(device, non_blocking=True)
        labels = batch["label"].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=self.amp_dtype, enabled=self.config.amp):
            logits = self.net(images)
        loss = multi_bce_loss(logits, labels)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss.total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        stop = self._signals.signum is not None
        packed = torch.cat([loss.stacked().cpu(), torch.tensor([float(stop)])])
        packed = all_reduce_sum(packed, self.dist)
        return packed[:-1] / self.dist.world_size, bool(packed[-1] > 0)

    def fit(self) -> TrainResult:
        """Train until `iters`/`epochs` are done or a signal asks to stop; returns how it ended."""
        if self.dist.is_main:
            atomic_write_text(self.run_dir / "config.json", json.dumps(self._run_info(), indent=2) + "\n")
        from tqdm import tqdm

        self.bar = tqdm(total=self.total_iters, initial=self.step, unit="it", desc="train", dynamic_ncols=True,
                        disable=None if self.dist.is_main else True)  # fmt: skip
        self._interval = {"sums": torch.zeros(len(_LOSS_KEYS)), "steps": 0, "images": 0, "seconds": 0.0}
        self._stop_agreed = False
        try:
            with _StopSignals(self.dist.is_main, tolerate_repeats=self.dist.distributed) as signals:
                self._signals = signals
                while self.step < self.total_iters and not self._stopped():
                    self._run_epoch()
                return self._finish()
        finally:
            self.bar.close()
            self.log.close()

    def _stopped(self) -> bool:
        return self._stop_agreed

    def _run_epoch(self) -> None:
        self.train_set.set_epoch(self.epoch)
        self.sampler.set_epoch(self.epoch)
        self.sampler.set_start(self.batch_in_epoch * self.config.batch_size)
        tick = time.perf_counter()
        for batch in self.loader:
            terms, self._stop_agreed = self._train_step(batch)
            seconds = time.perf_counter() - tick
            self._advance(terms, len(batch["image"]) * self.dist.world_size, seconds)
            if self._stopped() or self.step >= self.total_iters:
                break
            tick = time.perf_counter()

    def _advance(self, terms: torch.Tensor, images: int, seconds: float) -> None:
        """Count the step, then log, validate and save on their schedules."""
        self.step += 1
        self.batch_in_epoch += 1
        self.elapsed += seconds
        if self.batch_in_epoch >= self.steps_per_epoch:
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        interval = self._interval
        interval["sums"] += terms
        interval["steps"] += 1
        interval["images"] += images
        interval["seconds"] += seconds
        self._window += torch.tensor([float(terms[0]), 1.0])
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{terms[0]:.4f}", img_s=f"{images / max(seconds, 1e-9):.1f}", refresh=False)
        config, final = self.config, self.step >= self.total_iters
        if self.step % config.log_every == 0 or final or self._stopped():
            self._log_interval()
        if self._stopped():
            return
        if config.val and (self.step % config.val_every == 0 or final):
            self._validate_and_log()
        if self.step % config.save_every == 0 and not final:
            self._checkpoint()

    def _checkpoint(self) -> None:
        if self.config.best_metric == "train_loss" and self.dist.is_main and self._window[1] > 0:
            self._consider_best(float(self._window[0] / self._window[1]))
            self._window.zero_()
        self.save_last()

    def _log_interval(self) -> None:
        interval = self._interval
        if not interval["steps"]:
            return
        means = (interval["sums"] / interval["steps"]).tolist()
        row = {"kind": "train", "step": self.step, "epoch": self.epoch, "elapsed_s": round(self.elapsed, 3),
               "lr": self.optimizer.param_groups[0]["lr"], **dict(zip(_LOSS_KEYS, means, strict=True)),
               "img_per_s": interval["images"] / max(interval["seconds"], 1e-9),
               "sec_per_step": interval["seconds"] / interval["steps"]}  # fmt: skip
        self.log.write(row)
        if self.bar.disable and self.dist.is_main:
            print(f"step {self.step}/{self.total_iters} epoch {self.epoch} loss {means[0]:.4f} "
                  f"(fused {means[1]:.4f}) {row['img_per_s']:.1f} img/s", flush=True)  # fmt: skip
        self._interval = {"sums": torch.zeros(len(_LOSS_KEYS)), "steps": 0, "images": 0, "seconds": 0.0}

    # -- validation --------------------------------------------------------------------------
    def _validate_and_log(self) -> None:
        """Rank 0 validates and may write best.pth while the others wait."""
        if self.dist.is_main:
            results = self.validate()
            self.log.write({"kind": "val", "step": self.step, "epoch": self.epoch,
                            "elapsed_s": round(self.elapsed, 3), **results})  # fmt: skip
            self._consider_best(results[self.config.best_metric])
            if self.bar.disable:
                print(f"val step {self.step}: loss {results['loss']:.4f} max F {results['max_f']:.4f} "
                      f"MAE {results['mae']:.4f}", flush=True)  # fmt: skip
        barrier(self.dist)

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Loss terms and every `SODMetrics` metric on the validation set, at the network's input size.

        Maps are min-max normalised as `Runtime` does, but not resized back to each image's own
        size: `u2deploy eval` does that, and is the number to report.
        """
        self.model.eval()
        metrics, sums, count = SODMetrics(), torch.zeros(len(_LOSS_KEYS)), 0
        device = self.dist.device
        for batch in self.val_loader:
            images, labels = batch["image"].to(device), batch["label"].to(device)
            with torch.autocast(device.type, dtype=self.amp_dtype, enabled=self.config.amp):
                logits = self.model.forward_logits(images)
            sums += multi_bce_loss(logits, labels).stacked().cpu() * len(images)
            count += len(images)
            probs = torch.sigmoid(logits[0].float()).cpu().numpy()
            for prob, label in zip(probs[:, 0], labels.cpu().numpy()[:, 0], strict=True):
                metrics.update(to_mask_u8(postprocess(prob, self.spec, prob.shape)), to_mask_u8(label))
        self.model.train()
        return {**dict(zip(_LOSS_KEYS, (sums / count).tolist(), strict=True)), **metrics.results()}

    # -- the end -----------------------------------------------------------------------------
    def _finish(self) -> TrainResult:
        signum = self._signals.signum if self.step < self.total_iters else None
        if self._stopped() and signum is None and self.step < self.total_iters:
            signum = signal.SIGINT  # another rank was signalled
        if signum is None and self.config.best_metric == "train_loss" and self.dist.is_main and self._window[1] > 0:
            self._consider_best(float(self._window[0] / self._window[1]))
            self._window.zero_()
        last = self.save_last()
        best = self.run_dir / "best.pth"
        result = TrainResult(self.run_dir, self.step, self.total_iters, last, best if best.exists() else None,
                             self.config.best_metric, self.best_value, int(signum) if signum else None)  # fmt: skip
        if self.dist.is_main:
            summary = {"status": "interrupted" if signum else "finished", "step": self.step,
                       "total_iters": self.total_iters, "epoch": self.epoch, "elapsed_s": round(self.elapsed, 3),
                       "best_metric": self.config.best_metric, "best_value": self.best_value,
                       "last": str(last), "best": str(result.best) if result.best else None}  # fmt: skip
            atomic_write_text(self.run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
        return result

    def _run_info(self) -> dict[str, Any]:
        from .. import __version__

        return {"config": self.config.to_dict(), "spec": self.spec.to_dict(), "world_size": self.dist.world_size,
                "device": str(self.dist.device), "train_pairs": len(self.train_pairs),
                "steps_per_epoch": self.steps_per_epoch, "total_iters": self.total_iters,
                "versions": {"u2deploy": __version__, "torch": torch.__version__}}  # fmt: skip


def _read_train_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(f"{path}: no checkpoint to resume from")
    payload = _torch_load(path)
    if not isinstance(payload, dict) or "train_state" not in payload:
        raise ModelLoadError(f"{path}: holds weights but no training state, so it cannot be resumed; "
                             "start a new run from it with --init")  # fmt: skip
    return payload


def _fingerprint(pairs: list[Any]) -> str:
    """A short hash of the pair names: notices a changed training set on resume."""
    text = "\n".join(f"{p.image.name}|{p.mask.name}" for p in pairs)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def train(config: TrainConfig) -> TrainResult:
    """Run a fresh training run with `config` (see `Trainer` for resuming)."""
    return Trainer(config).fit()

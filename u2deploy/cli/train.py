"""Train or fine-tune U2-Net on an image/mask dataset (upstream recipe by default).

  u2deploy data synth data/synth --count 200                       # no dataset? make one
  u2deploy train --data data/synth --arch u2netp --iters 2000 --out runs/p
  u2deploy train --data DUTS-TR --val DUTS-TE --init u2net --epochs 10 --lr 1e-4 --out runs/ft
  u2deploy train --out runs/ft --resume                            # continue runs/ft/last.pth
  torchrun --nproc-per-node 2 -m u2deploy train --data ... --out runs/ddp   # several processes

--data takes a root (images/+masks/, im/+gt/, DUTS-TR-Image/+DUTS-TR-Mask/, ...) or an images
folder and a masks folder. The run folder gets config.json, log.csv, log.jsonl, last.pth (full
state, written every --save-every iterations), best.pth and summary.json; best.pth and last.pth go
straight into `u2deploy export`, `u2deploy predict` and `Runtime`.

Ctrl-C finishes the current step, saves last.pth and exits with code 130 (SIGTERM: 143); a second
Ctrl-C aborts without saving. Defaults are upstream's: Adam lr 1e-3, batch 12, rescale 320, crop
288, vertical flip, checkpoint every 2000 iterations.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument("--data", nargs="+", metavar="DIR", help="training set: a root folder, or IMAGES_DIR MASKS_DIR")
    data.add_argument("--val", nargs="+", metavar="DIR", help="validation set, same forms (enables best.pth by max F)")
    data.add_argument("--size", default=None, help="rescale/inference size, e.g. 320 or 320x288 (default 320)")
    data.add_argument("--crop", default=None, help="random crop size (default size - size/10, i.e. 288); 0 = no crop")
    data.add_argument("--flip", default=None, choices=("vertical", "horizontal", "none"),
                      help="random flip with p=0.5 (default vertical, as upstream)")
    data.add_argument("--resize", default=None, choices=("reference", "fast"),
                      help="resize: reference (skimage-0.14 exact, default) or fast (OpenCV, for large photos)")
    data.add_argument("--workers", type=int, default=None, help="loader processes per training process (default 2)")
    model = parser.add_argument_group("model")
    model.add_argument("--arch", default=None, choices=("u2net", "u2netp", "u2net_test"),
                       help="architecture (default: that of --init, else u2net)")
    model.add_argument("--init", default=None, metavar="WEIGHTS",
                       help="start from weights: a name (u2net, u2netp, ...) or a .pth/.onnx file")
    model.add_argument("--task", default=None, choices=("sod", "human", "portrait"),
                       help="processing spec stored in the checkpoint (default: that of --init, else sod)")
    optim = parser.add_argument_group("optimisation")
    length = optim.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, default=None, help="passes over the training set")
    length.add_argument("--iters", type=int, default=None, help="optimizer steps")
    optim.add_argument("--batch-size", type=int, default=None, help="per process (default 12)")
    optim.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 1e-3)")
    optim.add_argument("--weight-decay", type=float, default=None, help="Adam weight decay (default 0)")
    optim.add_argument("--amp", action="store_true", default=None,
                       help="mixed precision: float16 + grad scaler on CUDA, bfloat16 on CPU")
    optim.add_argument("--seed", type=int, default=None, help="shuffle/augmentation/init seed (default 0)")
    optim.add_argument("--device", default=None, help="auto (default), cpu, cuda or cuda:N")
    run = parser.add_argument_group("run")
    run.add_argument("--out", default=None, metavar="RUN_DIR", help="run folder (default runs/train)")
    run.add_argument("--resume", nargs="?", const="last", default=None, metavar="CHECKPOINT",
                     help="continue RUN_DIR/last.pth, or the given checkpoint")
    run.add_argument("--save-every", type=int, default=None, help="iterations between last.pth writes (default 2000)")
    run.add_argument("--val-every", type=int, default=None, help="iterations between validations (default: save-every)")
    run.add_argument("--log-every", type=int, default=None, help="iterations per log row (default 10)")
    run.add_argument("--best-metric", default=None,
                     help="what best.pth optimises: max_f (default with --val), mae, loss, s_measure, relax_fb, "
                          "... or train_loss (default without --val)")
    run.add_argument("--keep-checkpoints", action="store_true", default=None,
                     help="also keep RUN_DIR/checkpoints/step_N.pth at every save")


def _explicit_options(args: argparse.Namespace) -> dict[str, object]:
    """The TrainConfig fields the user gave on the command line (None means not given)."""
    import dataclasses

    from ..train.config import TrainConfig

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    return {name: value for name, value in vars(args).items() if name in fields and value is not None}


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .._io import writable_dir
    from ..errors import InputError
    from ..train.config import TrainConfig
    from ..train.distributed import shutdown_distributed
    from ..train.trainer import Trainer

    options = _explicit_options(args)
    try:
        if args.resume:
            checkpoint = Path(args.out or TrainConfig.out) / "last.pth" if args.resume == "last" else Path(args.resume)
            trainer = Trainer.resume(checkpoint, options)
        else:
            if not options.get("data"):
                raise InputError("--data is required (a dataset folder, or IMAGES_DIR MASKS_DIR); "
                                 "`u2deploy data synth DIR` makes a small synthetic one")  # fmt: skip
            writable_dir(options.get("out") or TrainConfig.out, "--out")  # before data loading and the model
            trainer = Trainer(TrainConfig(**options))
        result = trainer.fit()
    finally:
        shutdown_distributed()
    if trainer.dist.is_main:
        state = "stopped" if result.interrupted else "finished"
        best = f"; best.pth {result.best_metric} = {result.best_value:.4f}" if result.best_value is not None else ""
        print(f"{state} at step {result.step}/{result.total_iters}: {result.last}{best}")
    return result.exit_code

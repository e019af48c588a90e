"""Dataset tools: generate a synthetic dataset, or check a real one before training.

  u2deploy data synth data/synth --count 200 --size 320
  u2deploy data synth data/synth-val --count 40 --seed 1
  u2deploy data check DUTS-TR                    # or: u2deploy data check images/ masks/
  u2deploy data check data/mine --decode         # decode every file (finds truncated ones)

`check` lists every problem (unpaired, duplicate, unreadable or size-mismatched files) and exits
with 1 if there is any; `train` and `eval` refuse such a dataset with the same list.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    synth = sub.add_parser("synth", help="write a synthetic salient-object dataset (images/ + masks/)")
    synth.add_argument("out", help="dataset folder to write")
    synth.add_argument("--count", type=int, required=True, help="number of image/mask pairs")
    synth.add_argument("--size", default="320", help="image size, e.g. 320 or 240x320 (default 320)")
    synth.add_argument("--seed", type=int, default=0, help="use different seeds for train and val sets")
    check = sub.add_parser("check", help="pair a dataset's files and list every problem")
    check.add_argument("data", nargs="+", metavar="DIR", help="a root folder, or IMAGES_DIR MASKS_DIR")
    check.add_argument("--decode", action="store_true", help="decode every file, not only its header")


def run(args: argparse.Namespace) -> int:
    if args.action == "synth":
        return _synth(args)
    return _check(args)


def _synth(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .._io import writable_dir
    from ..spec import parse_size
    from ..train.synth import generate

    parse_size(args.size)  # bounded before anything is created or allocated
    writable_dir(args.out, "data synth")
    with tqdm(total=args.count, unit="img", desc="synth", disable=None) as bar:
        root = generate(args.out, args.count, args.size, args.seed, progress=bar.update)
    print(f"wrote {args.count} image/mask pairs to {root}/images and {root}/masks")
    return 0


def _check(args: argparse.Namespace) -> int:
    from ..train.data import scan_dataset

    report = scan_dataset(args.data, decode=args.decode)
    for problem in report.problems:
        print(f"problem: {problem}")
    for path in report.ignored:
        print(f"ignored (not an image): {path}")
    print(report.summary())
    return 1 if report.problems else 0

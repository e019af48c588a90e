"""Evaluate any model artifact on an image/mask dataset with the SOD metrics.

  u2deploy eval runs/p/best.pth --data data/val
  u2deploy eval u2net_int8.onnx --data DUTS-TE --out reports/int8       # judge INT8 on the task
  u2deploy eval u2net.xml --data images/ masks/ --out reports/ov --device GPU

Reports max/mean/adaptive F-beta (beta^2 = 0.3), MAE, weighted F-beta, S-measure, E-measure
(PySODMetrics) and the relaxed boundary F-measure (BASNet, rho = 3). With --out it also writes
summary.json, summary.md, per_image.csv, pr_curve.png and fbeta_curve.png.
"""

from __future__ import annotations

import argparse

from ._common import add_runtime_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_runtime_arguments(parser)
    parser.add_argument("--data", nargs="+", required=True, metavar="DIR",
                        help="dataset: a root folder (images/+masks/, im/+gt/, DUTS-TE-Image/+DUTS-TE-Mask/, ...) "
                             "or IMAGES_DIR MASKS_DIR")
    parser.add_argument("--out", default=None, metavar="DIR", help="write the report and curves here")
    parser.add_argument("--rho", type=float, default=3.0, help="relaxed boundary F tolerance in pixels (default 3)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    parser.add_argument("--batch", type=int, default=1, help="images per inference call (default 1)")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..errors import InputError
    from ..train.evaluate import evaluate_dataset, markdown_table, write_report
    from ._common import runtime_from_args

    for name in ("limit", "batch"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise InputError(f"--{name} {value}: must be at least 1")
    if args.rho < 0:
        raise InputError(f"--rho {args.rho}: must be 0 or more")
    with runtime_from_args(args) as runtime:
        bar = tqdm(unit="img", desc="eval", disable=None)
        result = evaluate_dataset(runtime, args.data, rho=args.rho, limit=args.limit, batch=args.batch,
                                  progress=bar.update)  # fmt: skip
        bar.close()
    print(f"{result.model} ({result.backend}) on {result.dataset}: {result.count} images, {result.seconds:.1f} s")
    print(markdown_table(result))
    if args.out:
        paths = write_report(result, args.out)
        print(f"report: {paths['markdown']}, curves: {paths['pr_curve'].name}, {paths['fbeta_curve'].name}")
    return 0

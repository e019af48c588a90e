"""`predict --ray [ADDRESS]`: the same job on a Ray cluster (u2deploy.scale.ray_data does the work).

  u2deploy predict u2net.onnx photos/ -o out/ --ray                       # a local Ray, started for the run
  u2deploy predict u2net.onnx s3://bucket/photos/ -o s3://bucket/masks/ --ray=10.0.0.5:6379 --ray-actors 8
"""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Ray (bulk inference on a cluster; pip install 'u2deploy[ray]')")
    group.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                       help="run on Ray: a cluster address (host:port, ray://...), or none for a local Ray / "
                            "$RAY_ADDRESS; put it after the inputs or write --ray=ADDRESS")
    group.add_argument("--ray-actors", type=int, default=1, metavar="N", help="actors, each with one model (default 1)")
    group.add_argument("--ray-gpus", type=float, default=None, metavar="G",
                       help="GPUs per actor (default 1 for TensorRT engines, else 0)")
    group.add_argument("--ray-cpus", type=float, default=1, metavar="C", help="CPUs per actor (default 1)")


def _refuse_local_only_options(args: argparse.Namespace) -> None:
    """Ray workers write PNG masks, cut-outs and composites; say so rather than ignore an option."""
    from ..errors import UnsupportedOptionError

    local_only = {"--refine": args.refine != "none", "--post": args.post != "none", "--watch": args.watch,
                  "--format": args.format not in (None, "png"), "-o -": args.out == "-" or args.inputs == ["-"]}
    named = [name for name, used in local_only.items() if used]
    if named:
        raise UnsupportedOptionError(f"{', '.join(named)}: not available with --ray yet (PNG outputs only); "
                                     "run without --ray for it")


def run(args: argparse.Namespace) -> int:
    """Expand local inputs exactly as local predict does, then hand the job to Ray."""
    from ..scale.ray_data import ray_predict
    from ._common import expand_inputs, runtime_options
    from .predict import parse_background, plan_outputs

    _refuse_local_only_options(args)
    task_options = {"task_options": {"face": False}} if args.no_face else {}
    background = parse_background(args.background) if args.output == "composite" else None
    inputs = []
    for item in args.inputs:  # URIs are listed by pyarrow on the driver; local items as predict lists them
        inputs.extend([item] if "://" in item else [str(p) for p in expand_inputs([item])])
    if "://" not in str(args.out):  # the same guard as local predict: a result never replaces an input
        plan_outputs([p for p in inputs if "://" not in p], args.out)
    result = ray_predict(args.model, inputs, args.out, output=args.output, background=background,
                         address=args.ray or None, concurrency=args.ray_actors, batch_size=args.batch,
                         num_gpus=args.ray_gpus, num_cpus=args.ray_cpus, **runtime_options(args, **task_options))  # fmt: skip
    skipped = len(result.skipped)
    print(f"wrote {result.written} {args.output}(s) to {result.out}" + (f"; {skipped} input(s) skipped" if skipped else ""))
    return 1 if skipped else 0

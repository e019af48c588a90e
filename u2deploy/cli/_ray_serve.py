"""`serve --ray [ADDRESS]`: the same app as a Ray Serve deployment (u2deploy.scale.ray_serve does the work).

  u2deploy serve u2net.onnx --ray                        # a local Ray; Ray Serve's proxy on 127.0.0.1:8000
  u2deploy serve u2net.onnx --ray=10.0.0.5:6379 --autoscale 1:8 --host 0.0.0.0 --api-key KEY
"""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Ray Serve (pip install 'u2deploy[ray]')")
    group.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                       help="deploy on Ray Serve: a cluster address, or none for a local Ray / $RAY_ADDRESS "
                            "(write --ray=ADDRESS before MODEL)")
    group.add_argument("--replicas", type=int, default=1, metavar="N", help="replicas, each with one model (default 1)")
    group.add_argument("--autoscale", default=None, metavar="MIN:MAX", help="autoscale between MIN and MAX replicas")
    group.add_argument("--ray-gpus", type=float, default=0, metavar="G", help="GPUs per replica (default 0)")
    group.add_argument("--ray-cpus", type=float, default=1, metavar="C", help="CPUs per replica (default 1)")


def run(args: argparse.Namespace, settings) -> int:
    """Deploy and block until Ctrl-C; the model is loaded by each replica."""
    import dataclasses
    import os

    from ..scale.ray_serve import parse_autoscaling, serve_on_ray
    from ._common import runtime_options

    settings = dataclasses.replace(settings, runtime_options=runtime_options(args))
    model = os.path.abspath(args.model) if os.path.exists(args.model) else args.model
    autoscaling = parse_autoscaling(args.autoscale)
    print(f"u2deploy serve: {args.model} on Ray Serve at http://{args.host}:{args.port}/ (Ctrl-C stops)", flush=True)
    serve_on_ray(model, settings, address=args.ray or None, host=args.host, port=args.port,
                 num_replicas=args.replicas, autoscaling=autoscaling, num_gpus=args.ray_gpus, num_cpus=args.ray_cpus)
    return 0

"""What this machine can run, and how to fix what is missing.

  u2deploy doctor            # Python, u2deploy, torch/onnxruntime/openvino/TensorRT, GPUs, Jetson, cache
  u2deploy doctor --json     # the same as JSON, for bug reports and scripts

Reports Python and u2deploy, each backend library with its version (PyTorch and its CUDA, ONNX
Runtime and its providers, OpenVINO and its devices, TensorRT and its DLA cores, cuda-python),
the NVIDIA GPUs and driver, the Jetson model and JetPack (/proc/device-tree/model,
/etc/nv_tegra_release), whether OpenCV has GStreamer, the cache folder and cached weights, then
each missing or broken thing with its fix. Each library is probed in its own interpreter, so a
broken install is reported rather than fatal. Always exits 0: it is a report.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--timeout", type=float, default=15.0, metavar="S",
                        help="give up on a library whose import hangs after S seconds (default 15)")


def run(args: argparse.Namespace) -> int:
    import json

    from ..doctor import collect, render

    report = collect(timeout=args.timeout)
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0

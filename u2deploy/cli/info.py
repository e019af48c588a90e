"""Parameters, checkpoint size and GFLOPs of a model.

  u2deploy info u2net --size 320
  u2deploy info my_run/best.pth --size 512 --stages

GFLOPs count convolutions only, at 2 FLOPs per multiply-accumulate (as FlopCounterMode does);
the paper's sizes (176.3 MB / 4.7 MB) are saved checkpoint sizes in decimal MB.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="u2net, u2netp, u2net_test, a weights name, or a .pth/.onnx file")
    parser.add_argument("--size", default="320", help="input size, e.g. 320 or 288x320 (default 320)")
    parser.add_argument("--stages", action="store_true", help="also print MACs per stage")


def _weights_label(name: str) -> str:
    from ..weights import KNOWN_WEIGHTS, checkpoint_path, is_cached

    if name not in KNOWN_WEIGHTS:
        return "architecture; no pretrained weights of this name"
    if is_cached(name):
        return f"pretrained weights cached: {checkpoint_path(name)}"
    return f"architecture; pretrained weights not cached yet: u2deploy weights get {name}"


def run(args: argparse.Namespace) -> int:
    import io
    from pathlib import Path

    import torch

    from ..model import create_model, list_models, load_checkpoint
    from ..model.info import model_cost
    from ..spec import parse_size

    size = parse_size(args.size)
    if args.model in list_models():
        # the cost is the architecture's; the weights only change the label (and are not loaded for it)
        model, source = create_model(args.model), _weights_label(args.model)
        file_bytes = None
    else:
        loaded = load_checkpoint(args.model)
        model, source = loaded.model, loaded.source
        file_bytes = Path(loaded.source).stat().st_size
    cost = model_cost(model, size)
    saved = {}
    for label, zipped in (("zip", True), ("legacy", False)):
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer, _use_new_zipfile_serialization=zipped)
        saved[label] = buffer.tell() / 1e6
    print(f"model       {model.arch} ({source})")
    print(f"parameters  {cost.params:,}")
    print(f"fp32 params {cost.param_bytes / 1e6:.1f} MB; saved state_dict {saved['zip']:.1f} MB "
          f"({saved['legacy']:.1f} MB in the pre-1.6 format the paper's sizes refer to)"
          + (f"; this file {file_bytes / 1e6:.1f} MB" if file_bytes else ""))
    print(f"input       1x3x{size[0]}x{size[1]}")
    print(f"GFLOPs      {cost.gflops:.2f} (conv only, 2 FLOPs/MAC; {cost.flops / 2e9:.2f} GMAC)")
    if args.stages:
        for stage, macs in cost.per_stage_macs.items():
            print(f"  {stage:<8} {macs / 1e6:>10,.0f} MMAC")
    return 0

"""`u2deploy quant qat`: fine-tune the calibrated Q/DQ ONNX toward its fp32 maps, then write it with a record.

Inputs are checked before any model is loaded (budget, images, output path); the graphs come from
`quant._graphs` (the calibration cache) or `--fp32/--qdq`. Held-out photos are scored before and
after in exact INT8 emulation and never trained on. Ctrl-C stops training and writes the best state
so far; both files are written atomically.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

__all__ = ["run_qat"]


def _options(args: argparse.Namespace) -> Any:
    from ..calibration.qat_train import QatOptions

    return QatOptions(iterations=args.iters, minutes=args.minutes, batch=args.batch, crop=args.crop,
                      seed=args.calib_seed)


def _images(args: argparse.Namespace) -> Any:
    """The training images (refusing the parity photos), named by the option they came from."""
    from ..calibration.source import select_images
    from ..errors import InputError

    origin, flag = (args.images, "--images") if args.images else (args.calib, "--calib")
    if not origin:
        raise InputError("quant qat needs training images: add --images DIR|GLOB (any photos; labels are not needed)")
    try:
        return select_images(origin, count=10**9, seed=args.calib_seed)
    except InputError as exc:  # select_images speaks of --calib; say which option was given
        text = str(exc).replace("--calib", flag).replace("calibration image", "training image")
        held_out = re.search(r"image (.+) is the held-out parity photo '(\w+)'", text)
        if held_out:
            text = _held_out_message(Path(held_out[1]), held_out[2], flag)
        raise InputError(text) from None


def _held_out_message(path: Path, name: str, flag: str) -> str:
    return f"training image {path.name} is the held-out photo '{name}', which judges the result; remove it from {flag}"


def _check_output(out: Path, sources: list[Path]) -> None:
    from ..errors import InputError

    if out.suffix.lower() != ".onnx":
        raise InputError(f"-o {out}: the fine-tuned graph is an ONNX file; use a name ending in .onnx")
    if any(out.resolve() == Path(source).resolve() for source in sources):
        raise InputError(f"-o {out} is an input graph; write the fine-tuned one to another file")


def _check_disjoint(arrays: list[Any], files: tuple[Path, ...], photos: dict[str, Any]) -> None:
    """Refuse a training image that is one of the held-out photos (the extra ones too) by pixel hash."""
    from ..calibration.source import pixel_sha256
    from ..errors import InputError

    held_out = {pixel_sha256(image): name for name, image in photos.items()}
    for path, array in zip(files, arrays, strict=True):
        if pixel_sha256(array) in held_out:
            raise InputError(_held_out_message(path, held_out[pixel_sha256(array)], "--images"))


def run_qat(args: argparse.Namespace) -> int:
    from ..calibration.qat_train import DistillImages, fine_tune
    from ..calibration.sensitivity import Emulator, held_out_photos, load_models
    from ..processing import load_image
    from .quant import _graphs, _say

    options = _options(args)
    chosen = _images(args)
    out = Path(args.out)
    _check_output(out, [Path(p) for p in (args.fp32, args.qdq) if p])
    fp32_path, qdq_path = _graphs(args)
    fp32, qdq = load_models(fp32_path, qdq_path)
    photos = held_out_photos(extra=not args.no_extra_photos)
    arrays = [load_image(path) for path in chosen.files]
    _check_disjoint(arrays, chosen.files, photos)
    emulator = Emulator(fp32, photos)
    _say(f"judging on {len(emulator.names)} held-out photos: {', '.join(emulator.names)}", args.quiet)
    before = emulator.score(qdq)
    _say(f"PTQ: mean IoU {before.mean_iou:.4f}, worst {before.worst[1]:.4f} ({before.worst[0]})", args.quiet)
    images = DistillImages(arrays, emulator.spec, crop=options.crop, crops_per_image=options.crops_per_image,
                           seed=options.seed)
    run = fine_tune(fp32, qdq, images, options, log=None if args.quiet else _say)
    after = emulator.score(run.model)
    return _write(out, run, before, after, emulator.names, chosen, options, fp32_path, qdq_path)


def _write(out: Path, run: Any, before: Any, after: Any, names: list[str], chosen: Any, options: Any,
           fp32_path: Path, qdq_path: Path) -> int:
    import dataclasses

    from .._io import atomic_write_bytes, atomic_write_text
    from ..calibration.qdq import check_tensorrt_form

    form = check_tensorrt_form(run.model)
    record = {"source_fp32": str(fp32_path), "source_qdq": str(qdq_path),
              "images": {"origin": chosen.origin, "count": len(chosen.files),
                         "files": [p.name for p in chosen.files], "sha256": chosen.list_sha256},
              "options": dataclasses.asdict(options), **run.summary(), "graph": form, "photos": names,
              "before": before.to_dict(), "after": after.to_dict(),
              "judged_with": "onnxruntime, graph optimisation disabled (Q/DQ computed literally, as TensorRT)"}
    atomic_write_bytes(out, run.model.SerializeToString())
    atomic_write_text(out.with_name(out.name + ".json"), json.dumps({"qat": record}, indent=2) + "\n")
    mae = [sum(score.map_mae.values()) / len(score.map_mae) for score in (before, after)]
    print(f"{out}: {run.iterations} QAT steps in {run.seconds / 60:.1f} min; held-out mean IoU {before.mean_iou:.4f} "
          f"-> {after.mean_iou:.4f}, worst {before.worst[1]:.4f} -> {after.worst[1]:.4f} ({after.worst[0]}), "
          f"mean map MAE {mae[0]:.5f} -> {mae[1]:.5f}")
    return 0

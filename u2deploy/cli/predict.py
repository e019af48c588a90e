"""Saliency maps, cut-outs or composites for images, folders and globs, with any artifact.

  u2deploy predict u2net photos/ -o out/
  u2deploy predict u2net.xml "shots/*.jpg" -o out/ --output cutout
  u2deploy predict u2net.onnx photo.jpg -o out/ --output composite --background 0,177,64
  u2deploy predict u2net_portrait face.jpg -o drawings/            # portrait drawing of the largest face
  u2deploy predict u2net_human_seg people/ -o out/ --output cutout  # person cut-outs

The task (sod, human, portrait) comes from the model; `--task` sets it for files that carry none.
A portrait model writes the drawing of the largest face at 512x512 (`--no-face`: the whole image).

A file that cannot be read is reported in one line and skipped; every other input is still
written, and the exit code is 1 at the end if anything was skipped.
"""

from __future__ import annotations

import argparse
import sys

from ._common import add_runtime_arguments

OUTPUTS = ("mask", "cutout", "composite")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_runtime_arguments(parser)
    parser.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    parser.add_argument("-o", "--out", required=True, help="output folder")
    parser.add_argument("--output", default="mask", choices=OUTPUTS, help="what to write (default mask)")
    parser.add_argument("--background", default="255,255,255",
                        help="composite background: R,G,B or an image file (default white)")
    parser.add_argument("--batch", type=int, default=1, help="images per inference call (default 1)")
    parser.add_argument("--no-face", action="store_true",
                        help="portrait: draw the whole image instead of detecting the largest face")
    parser.add_argument("-v", "--verbose", action="store_true", dest="show_runtime",
                        help="print what runs, read back from the engine (backend, precision, settings)")


def parse_background(value: str):
    from pathlib import Path

    from ..errors import InputError

    parts = value.split(",")
    if len(parts) == 3 and all(p.strip().isdigit() for p in parts):
        colour = tuple(int(p) for p in parts)
        if any(c > 255 for c in colour):
            raise InputError(f"--background {value}: colour values must be 0..255")
        return colour
    if Path(value).is_file():
        from ..processing import load_image

        return load_image(value)
    raise InputError(f"--background {value}: not R,G,B and not an image file")


def _write(kind: str, image_path, saliency, out_dir, background, used: set[str]):
    from pathlib import Path

    from PIL import Image

    from .. import processing

    stem = Path(image_path).stem
    name = stem
    counter = 1
    while name in used:  # two inputs with the same name from different folders
        counter += 1
        name = f"{stem}_{counter}"
    used.add(name)
    if kind == "mask":
        array = processing.to_mask_u8(saliency)
    elif kind == "cutout":
        array = processing.cutout(image_path, saliency)
    else:
        array = processing.composite(image_path, saliency, background)
    target = Path(out_dir) / f"{name}.png"
    from .._io import atomic_path

    with atomic_path(target, suffix=".png") as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
    return target


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tqdm import tqdm

    from ..errors import InputError
    from ._common import expand_inputs, runtime_from_args

    if args.batch < 1:
        raise InputError(f"--batch {args.batch}: must be at least 1")
    background = parse_background(args.background) if args.output == "composite" else None
    paths = expand_inputs(args.inputs)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    failures, used = 0, set()
    with runtime_from_args(args, task_options={"face": False} if args.no_face else None) as runtime:
        _check_output_fits_task(args.output, runtime.spec.task)
        if getattr(args, "show_runtime", False):
            print(runtime.summary(), file=sys.stderr)
        bar = tqdm(total=len(paths), unit="img", desc="predict", disable=None)
        for start in range(0, len(paths), args.batch):
            chunk = paths[start:start + args.batch]
            failures += _predict_chunk(runtime, chunk, args, out_dir, background, used, bar)
        bar.close()
    written = len(paths) - failures
    print(f"wrote {written} {args.output}(s) to {out_dir}" + (f"; {failures} input(s) skipped" if failures else ""))
    return 1 if failures else 0


def _check_output_fits_task(output: str, task: str) -> None:
    from ..errors import UnsupportedOptionError

    if task == "portrait" and output != "mask":
        raise UnsupportedOptionError(f"--output {output} needs a saliency or person model; a portrait model writes "
                                     "drawings (use --output mask, or --task sod/human)")


def _predict_chunk(runtime, chunk, args, out_dir, background, used, bar) -> int:
    """Predict a chunk in one call; if any file in it is bad, fall back to one at a time."""
    from ..errors import InputError
    from ..processing import load_image

    images, good, failures = [], [], 0
    for path in chunk:
        try:
            images.append(load_image(path))
            good.append(path)
        except InputError as exc:
            bar.write(f"skipped: {exc}", file=sys.stderr)
            failures += 1
            bar.update(1)
    if good:
        maps = _predict_reporting_warnings(runtime, images, good, bar)
        for path, saliency in zip(good, maps, strict=True):
            _write(args.output, path, saliency, out_dir, background, used)
            bar.update(1)
    return failures


def _predict_reporting_warnings(runtime, images, paths, bar):
    """`runtime.predict`, with a task's warnings (a portrait without a face) as one line per file."""
    import warnings

    if runtime.spec.task != "portrait":
        return runtime.predict(images)
    results = []
    for image, path in zip(images, paths, strict=True):  # one at a time, so each warning names its file
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            results.append(runtime.predict(image))
        for warning in caught:
            bar.write(f"{path}: {warning.message}", file=sys.stderr)
    return results

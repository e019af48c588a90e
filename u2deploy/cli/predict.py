"""Saliency maps, cut-outs or composites for images, folders and globs, with any artifact.

  u2deploy predict u2net photos/ -o out/
  u2deploy predict u2net.xml "shots/*.jpg" -o out/ --output cutout
  u2deploy predict u2net.onnx photo.jpg -o out/ --output composite --background 0,177,64
  u2deploy predict u2net_portrait face.jpg -o drawings/            # portrait drawing of the largest face
  u2deploy predict u2net_human_seg people/ -o out/ --output cutout  # person cut-outs

The task (sod, human, portrait) comes from the model; `--task` sets it for files that carry none.
A portrait model writes the drawing of the largest face at 512x512 (`--no-face`: the whole image).

A file that cannot be read (truncated, not an image, above --max-pixels, NaN pixels) is reported
in one line and skipped; every other input is still written, and the exit code is 1 at the end if
anything was skipped. An output that would replace an input of the run is refused before anything
runs; a full disk stops the run in one line, leaving no partial file.
"""

from __future__ import annotations

import argparse
import sys

from . import _predict_io, _ray_predict
from ._common import add_max_pixels_argument, add_runtime_arguments

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
    add_max_pixels_argument(parser)
    _predict_io.add_arguments(parser)
    _ray_predict.add_arguments(parser)


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


def plan_outputs(paths, out_dir, suffix: str = ".png") -> list:
    """The file each input's result goes to: ``STEM.png`` in `out_dir`, ``STEM_2.png`` on a clash.

    Refuses (one line) when a result would replace an input of the same run, e.g. ``-o`` the
    input folder holding both ``a.jpg`` and ``a.png``: the run would destroy ``a.png`` and then
    read its own output back as an input.
    """
    import os
    from pathlib import Path

    from .._io import output_names
    from ..errors import OutputError

    targets = [Path(out_dir) / name for name in output_names(paths, suffix)]
    # One file is one (device, inode), whatever the spelling or link: a set keeps this linear.
    inputs = {(st.st_dev, st.st_ino): path for path in paths for st in [os.stat(path)]}
    for path, target in zip(paths, targets, strict=True):
        try:
            st = os.stat(target)
        except OSError:  # does not exist yet, so it is no input
            continue
        if (st.st_dev, st.st_ino) in inputs:
            raise OutputError(f"the result for {Path(path).name} would replace input {inputs[(st.st_dev, st.st_ino)]} "
                              f"(-o {out_dir}); write to another folder")
    return targets


def _write(kind: str, image_path, saliency, target, background, args) -> None:
    from .._io import atomic_write_bytes

    fmt = _predict_io.format_for("", kind, args.format)
    array = _predict_io.render(kind, image_path, saliency, _predict_io.refine_options(args), background,
                               str(image_path))
    atomic_write_bytes(target, _predict_io.encode(array, fmt))


def run(args: argparse.Namespace) -> int:

    from .._io import removed_on_failure, writable_dir
    from ..errors import InputError
    from ._common import apply_max_pixels, expand_inputs

    if args.batch < 1:
        raise InputError(f"--batch {args.batch}: must be at least 1")
    apply_max_pixels(args)
    if args.ray is not None:  # the same job on a Ray cluster
        return _ray_predict.run(args)
    background = parse_background(args.background) if args.output == "composite" else None
    fmt = _predict_io.format_for("", args.output, args.format)  # a cut-out into --format jpg fails before loading
    special = _predict_io.dispatch(args, lambda: _checked_runtime(args), background)
    if special is not None:
        return special
    paths = expand_inputs(args.inputs)
    with removed_on_failure(args.out):
        out_dir = writable_dir(args.out)
        suffix = ".jpg" if fmt == "JPEG" else f".{fmt.lower()}"
        targets = dict(zip(paths, plan_outputs(paths, out_dir, suffix), strict=True))
        failures = _predict_all(args, paths, targets, background)
    written = len(paths) - failures
    print(f"wrote {written} {args.output}(s) to {out_dir}" + (f"; {failures} input(s) skipped" if failures else ""))
    return 1 if failures else 0


def _predict_all(args: argparse.Namespace, paths, targets, background) -> int:
    """Predict every input in chunks of --batch and write its result; returns how many were skipped."""
    from tqdm import tqdm

    from ._common import runtime_from_args

    failures = 0
    with runtime_from_args(args, task_options={"face": False} if args.no_face else None) as runtime:
        _check_output_fits_task(args.output, runtime.spec.task)
        if getattr(args, "verbose", False):  # -v: what runs, read back from the engine
            print(runtime.summary(), file=sys.stderr)
        bar = tqdm(total=len(paths), unit="img", desc="predict", disable=None)
        for start in range(0, len(paths), args.batch):
            chunk = paths[start:start + args.batch]
            failures += _predict_chunk(runtime, chunk, args, targets, background, bar)
        bar.close()
    return failures


def _checked_runtime(args: argparse.Namespace):
    """The runtime for the single-file and --watch forms, refused for an output its task cannot make."""
    from ._common import runtime_from_args

    runtime = runtime_from_args(args, task_options={"face": False} if args.no_face else None)
    try:
        _check_output_fits_task(args.output, runtime.spec.task)
    except BaseException:
        runtime.close()
        raise
    return runtime


def _check_output_fits_task(output: str, task: str) -> None:
    from ..errors import UnsupportedOptionError

    if task == "portrait" and output != "mask":
        raise UnsupportedOptionError(f"--output {output} needs a saliency or person model; a portrait model writes "
                                     "drawings (use --output mask, or --task sod/human)")


def _predict_chunk(runtime, chunk, args, targets, background, bar) -> int:
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
            _write_or_stop(args, path, saliency, targets, background, bar)
    return failures


def _write_or_stop(args, path, saliency, targets, background, bar) -> None:
    """Write one result; a full disk or a folder turned read-only stops the run in one line."""
    from .._io import output_error

    try:
        _write(args.output, path, saliency, targets[path], background, args)
    except OSError as exc:  # atomic_path removed the partial file; earlier results stay
        raise output_error(exc, targets[path], done=f"{bar.n} of {bar.total} inputs were handled before it") from None
    bar.update(1)


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

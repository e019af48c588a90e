"""`predict`'s rembg habits: refinement options, stdin/stdout, one file to one file, formats, --watch.

  cat a.jpg | u2deploy predict u2net - -o - > a.png         # stdin to stdout (PNG)
  u2deploy predict u2net a.jpg -o a.webp --output cutout     # one file; the format from the suffix
  u2deploy predict u2net inbox/ -o done/ --watch             # new files as they arrive, Ctrl-C stops

Formats: PNG (anything), WebP (lossless, keeps alpha), JPEG (masks and composites only: a cut-out
needs alpha, which JPEG cannot hold). The watch loop polls the folder: it needs no extra
dependency and works on network and container mounts where inotify events do not arrive.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, UnsupportedOptionError
from ..refine import POST_MODES, REFINE_MODES, RefineOptions

__all__ = ["add_arguments", "refine_options", "render", "encode", "format_for", "dispatch"]

#: suffix -> Pillow format
FORMATS = {".png": "PNG", ".webp": "WEBP", ".jpg": "JPEG", ".jpeg": "JPEG"}
_POLL_S = 0.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The refinement and I/O options of `predict` (also used by `stream` for the refine group)."""
    add_refine_arguments(parser.add_argument_group("edges"))
    group = parser.add_argument_group("files")
    group.add_argument("--format", default=None, choices=("png", "webp", "jpg"),
                       help="output format for folders and stdout (default png; a file name's suffix decides for files)")
    group.add_argument("--watch", action="store_true", help="keep watching the input folder; process new files "
                                                            "as they arrive (Ctrl-C stops)")
    group.add_argument("--watch-timeout", type=float, default=None,
                       help="--watch: stop after this many seconds without a new file (default: never)")


def add_refine_arguments(group: Any) -> None:
    defaults = RefineOptions()
    group.add_argument("--refine", default="none", help=f"edge refinement: {', '.join(REFINE_MODES)} (default none)")
    group.add_argument("--post", default="none", help=f"mask post-processing: {', '.join(POST_MODES)} (rembg's -ppm)")
    group.add_argument("--fg-threshold", type=int, default=defaults.fg_threshold,
                       help=f"matting: sure foreground at or above this map value (default {defaults.fg_threshold})")
    group.add_argument("--bg-threshold", type=int, default=defaults.bg_threshold,
                       help=f"matting: sure background at or below (default {defaults.bg_threshold})")
    group.add_argument("--erode", type=int, default=defaults.erode,
                       help=f"matting: erosion of the sure regions in pixels (default {defaults.erode})")
    group.add_argument("--matting-size", type=int, default=defaults.max_side,
                       help=f"matting: longest side of the solve, larger images are downscaled (default {defaults.max_side})")


def refine_options(args: argparse.Namespace) -> RefineOptions:
    """`RefineOptions` from the command line (validated: a bad value is a one-line error)."""
    return RefineOptions(mode=args.refine, post=args.post, fg_threshold=args.fg_threshold,
                         bg_threshold=args.bg_threshold, erode=args.erode, max_side=args.matting_size)


def render(kind: str, image: Any, saliency: np.ndarray, options: RefineOptions, background: Any,
           name: str = "-") -> np.ndarray:
    """The array `predict` writes (`processing.render`); matting says how long it took, since it can take seconds."""
    from .. import processing

    start = time.perf_counter()
    array = processing.render(kind, image, saliency, background, options)
    if options.mode == "matting":
        print(f"{name}: matting {time.perf_counter() - start:.2f} s (--refine matting)", file=sys.stderr, flush=True)
    return array


def format_for(target: str, kind: str, default: str | None) -> str:
    """Pillow format for a file name (its suffix) or for a folder/stdout (`default`); a cut-out needs alpha."""
    suffix = Path(target).suffix.lower() if target != "-" else ""
    if suffix and suffix not in FORMATS:
        raise InputError(f"-o {target}: unknown image type '{suffix}'; use .png, .webp or .jpg")
    name = FORMATS[suffix] if suffix else FORMATS["." + (default or "png")]
    if kind == "cutout" and name == "JPEG":
        raise UnsupportedOptionError(f"-o {target}: JPEG cannot hold the cut-out's alpha; write .png or .webp, "
                                     "or use --output composite")
    return name


def encode(array: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    options = {"lossless": True} if fmt == "WEBP" else {"quality": 95} if fmt == "JPEG" else {}
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _single_target(args: argparse.Namespace) -> bool:
    """stdin, stdout, or one input file to one image file: the rembg `i` command's habits."""
    if args.inputs == ["-"] or args.out == "-":
        return True
    from ..processing import IMAGE_EXTENSIONS

    return Path(args.out).suffix.lower() in (*FORMATS, *IMAGE_EXTENSIONS)  # .gif etc: a file, refused by format_for


def dispatch(args: argparse.Namespace, load_runtime: Callable[[], Any], background: Any) -> int | None:
    """Handle the single-file and --watch forms; None leaves the folder form to `predict.run`."""
    options = refine_options(args)
    if args.watch:
        return _watch(args, load_runtime, background, options)
    if args.watch_timeout is not None:
        raise UnsupportedOptionError("--watch-timeout needs --watch")
    if not _single_target(args):
        return None
    if len(args.inputs) != 1:
        raise InputError(f"-o {args.out} is one file but {len(args.inputs)} inputs were given; "
                         "give one input, or a folder as -o")
    if args.out != "-" and not Path(args.out).suffix:
        raise InputError(f"-o {args.out}: standard input gives one image; write it to a file (e.g. out.png) or - (stdout)")
    fmt = format_for(args.out, args.output, args.format)
    _refuse_replacing_input(args.inputs[0], args.out)
    data = sys.stdin.buffer.read() if args.inputs == ["-"] else None
    if data is not None and not data:
        raise InputError("-: nothing on standard input; pipe an image in, e.g. cat a.jpg | u2deploy predict u2net - -o -")
    from ..processing import load_image

    image = load_image(data if data is not None else args.inputs[0])
    with load_runtime() as runtime:
        saliency = runtime.predict(image)
    payload = encode(render(args.output, image, saliency, options, background, args.inputs[0]), fmt)
    _emit(payload, args.out)
    return 0


def _refuse_replacing_input(source: str, out: str) -> None:
    """`predict a.png -o a.png` would destroy its own input: refuse before the model loads."""
    from .._io import same_file
    from ..errors import OutputError

    if "-" not in (source, out) and same_file(source, out):
        raise OutputError(f"-o {out} is the input {source}; the result would replace it: write to another file")


def _emit(payload: bytes, out: str) -> None:
    if out == "-":
        sys.stdout.buffer.write(payload)
        sys.stdout.buffer.flush()
        return
    from .._io import atomic_write_bytes

    atomic_write_bytes(out, payload)
    print(f"wrote {out}", file=sys.stderr)


# --------------------------------------------------------------------------------------------
# --watch


def _watch(args: argparse.Namespace, load_runtime: Callable[[], Any], background: Any, options: RefineOptions) -> int:
    from ..processing import IMAGE_EXTENSIONS

    if len(args.inputs) != 1 or not Path(args.inputs[0]).is_dir():
        raise InputError(f"--watch needs one input folder, got {' '.join(args.inputs)}")
    if _single_target(args):
        raise InputError(f"--watch writes one file per input: -o {args.out} must be a folder")
    if args.watch_timeout is not None and args.watch_timeout <= 0:
        raise InputError(f"--watch-timeout {args.watch_timeout}: must be positive (seconds)")
    folder, out_dir = Path(args.inputs[0]), Path(args.out)
    fmt = format_for("", args.output, args.format)
    suffix = {"PNG": ".png", "WEBP": ".webp", "JPEG": ".jpg"}[fmt]
    out_dir.mkdir(parents=True, exist_ok=True)
    if out_dir.resolve() == folder.resolve():
        raise InputError(f"--watch: -o {args.out} is the watched folder; outputs would be read back as inputs")
    seen: dict[Path, tuple[int, int]] = {}
    done: set[Path] = set()
    written = 0
    with load_runtime() as runtime:
        print(f"watching {folder} -> {out_dir}; Ctrl-C stops", file=sys.stderr, flush=True)
        last_new = time.monotonic()
        try:
            while args.watch_timeout is None or time.monotonic() - last_new < args.watch_timeout:
                for path in _ready_files(folder, IMAGE_EXTENSIONS, seen, done):
                    written += _process_one(runtime, path, out_dir / f"{path.stem}{suffix}", args, options,
                                            background, fmt)
                    last_new = time.monotonic()
                time.sleep(_POLL_S)
        except KeyboardInterrupt:
            pass
    print(f"watch: wrote {written} {args.output}(s) to {out_dir}")
    return 0


def _ready_files(folder: Path, extensions: tuple[str, ...], seen: dict[Path, tuple[int, int]],
                 done: set[Path]) -> list[Path]:
    """New image files whose size and time did not change since the last poll (a copy has finished)."""
    ready = []
    for path in sorted(folder.iterdir()):
        if path in done or path.name.startswith(".") or path.suffix.lower() not in extensions or not path.is_file():
            continue
        stat = path.stat()
        signature = (stat.st_size, stat.st_mtime_ns)
        if seen.get(path) == signature:
            done.add(path)  # never processed twice, even if it changes later
            ready.append(path)
        else:
            seen[path] = signature
    return ready


def _process_one(runtime: Any, path: Path, target: Path, args: argparse.Namespace, options: RefineOptions,
                 background: Any, fmt: str) -> int:
    from .._io import atomic_write_bytes
    from ..errors import U2DeployError
    from ..processing import load_image

    try:
        image = load_image(path)
        saliency = runtime.predict(image)
        atomic_write_bytes(target, encode(render(args.output, image, saliency, options, background, str(path)), fmt))
    except U2DeployError as exc:
        print(f"skipped: {exc}", file=sys.stderr, flush=True)
        return 0
    print(f"{path.name} -> {target}", file=sys.stderr, flush=True)
    return 1

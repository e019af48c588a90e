"""Argument helpers shared by several commands."""

from __future__ import annotations

import argparse
import glob
import os
from pathlib import Path

from ..errors import InputError
from ..processing import IMAGE_EXTENSIONS

__all__ = ["IMAGE_EXTENSIONS", "expand_inputs", "add_runtime_arguments", "runtime_from_args", "print_table",
           "add_max_pixels_argument", "apply_max_pixels", "at_least"]


def expand_inputs(items: list[str]) -> list[Path]:
    """Files, folders (their images, sorted) and globs -> a list of files, in the order given."""
    paths: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
            if not found:
                raise InputError(f"{path}: folder holds no images ({', '.join(IMAGE_EXTENSIONS)})")
            paths.extend(found)
        elif path.is_file():
            paths.append(path)
        elif glob.has_magic(item):
            found = sorted(Path(p) for p in glob.glob(os.path.expanduser(item), recursive=True) if Path(p).is_file())
            if not found:
                raise InputError(f"{item}: pattern matches no files")
            paths.extend(found)
        else:
            raise InputError(f"{item}: no such file or folder")
    return paths


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """MODEL plus the options every command that runs a model accepts."""
    parser.add_argument("model", help="weights name (u2net, u2netp, ...), .pth, .onnx, .xml or .engine file")
    parser.add_argument("--backend", default="auto", help="auto (from the file), torch, onnxruntime, openvino, tensorrt")
    parser.add_argument("--device", default=None, help="cpu, cuda, or an OpenVINO device (CPU, GPU, NPU, AUTO)")
    parser.add_argument("--size", default=None, help="network input size for models with dynamic size, e.g. 320")
    parser.add_argument("--mode", default="fast", choices=("fast", "reference"), help="pre/post-processing (default fast)")
    parser.add_argument("--task", default=None, choices=("sod", "human", "portrait"), help="override the model's task")
    parser.add_argument("--threads", type=int, default=None, help="inference threads")
    parser.add_argument("--no-verify-files", action="store_true",
                        help="load the model without checking its files against the manifest's checksums")


def add_max_pixels_argument(parser: argparse.ArgumentParser) -> None:
    from ..processing import MAX_PIXELS, MAX_PIXELS_ENV

    parser.add_argument("--max-pixels", default=None, metavar="N",
                        help=f"refuse images declaring more pixels (default {MAX_PIXELS:_}, or ${MAX_PIXELS_ENV})")


def apply_max_pixels(args: argparse.Namespace) -> None:
    """`--max-pixels` reaches every image read of the command (and its subprocesses) via the env."""
    from ..processing import MAX_PIXELS_ENV, max_pixels

    if getattr(args, "max_pixels", None) is not None:
        os.environ[MAX_PIXELS_ENV] = str(max_pixels(args.max_pixels))
    else:
        max_pixels()  # a malformed $U2DEPLOY_MAX_PIXELS fails now, in one line


def at_least(value: float | None, minimum: float, option: str, hint: str = "") -> None:
    """Options that make no sense below `minimum` are refused, never silently accepted."""
    if value is not None and value < minimum:
        raise InputError(f"{option} {value:g}: must be at least {minimum:g}" + (f" ({hint})" if hint else ""))


def runtime_options(args: argparse.Namespace, **options) -> dict:
    """The `Runtime` keyword arguments the command line asks for (also what Ray actors and replicas get)."""
    at_least(args.threads, 1, "--threads", "leave it out for the backend's default")
    if args.threads:
        options["threads"] = args.threads
    if getattr(args, "no_verify_files", False):
        options["verify_files"] = False
    return {"backend": args.backend, "device": args.device, "mode": args.mode, "task": args.task,
            "input_size": args.size, **options}


def runtime_from_args(args: argparse.Namespace, **options):
    from ..runtimes.runtime import Runtime

    return Runtime(args.model, **runtime_options(args, **options))


def print_table(rows: list[dict[str, object]], columns: list[str]) -> str:
    """Print an aligned text table (also valid Markdown, by tabulate) and return it."""
    from tabulate import tabulate

    text = tabulate([[str(row.get(c, "")) for c in columns] for row in rows], headers=columns, tablefmt="github",
                    disable_numparse=True)  # fmt: skip
    print(text)
    return text

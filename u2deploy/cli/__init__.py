"""`u2deploy` command line: thin subcommands over the Python API.

Each subcommand is a module in this package with `add_arguments(parser)` and `run(args) -> int`,
named in `COMMANDS`. Command modules import only argparse-level things at the top; the heavy
work (torch, onnxruntime, ...) is imported inside `run`. User errors (`U2DeployError`) print one
line and exit with code 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import U2DeployError

__all__ = ["main", "COMMANDS"]

#: command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "predict": ("u2deploy.cli.predict", "saliency maps, cut-outs or composites for images"),
    "export": ("u2deploy.cli.export", "export to ONNX, OpenVINO IR or a TensorRT engine, parity-checked"),
    "bench": ("u2deploy.cli.bench", "benchmark every backend and precision this machine can run"),
    "stream": ("u2deploy.cli.stream", "run a model on a camera, stream or video file"),
    "train": ("u2deploy.cli.train", "train or fine-tune U2-Net on an image/mask dataset"),
    "eval": ("u2deploy.cli.evaluate", "evaluate any artifact on an image/mask dataset"),
    "data": ("u2deploy.cli.data", "dataset tools (generate a synthetic dataset)"),
    "weights": ("u2deploy.cli.weights", "list, fetch or import pretrained weights"),
    "info": ("u2deploy.cli.info", "parameters, file size and GFLOPs of a model"),
    "doctor": ("u2deploy.cli.doctor", "what this machine can run, and how to fix what is missing"),
    "quant": ("u2deploy.cli.quant", "INT8 sensitivity per layer, and mixed INT8+FP16 to a quality target"),
}


class _MissingCommand:
    """Stands in for a command whose module cannot be imported, and says why when run."""

    def __init__(self, name: str, error: ImportError) -> None:
        self.name, self.error = name, error

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("rest", nargs=argparse.REMAINDER)

    def run(self, args: argparse.Namespace) -> int:
        raise U2DeployError(f"'u2deploy {self.name}' is unavailable here: {self.error}")


def _load(name: str):
    try:
        return importlib.import_module(COMMANDS[name][0])
    except ImportError as exc:
        return _MissingCommand(name, exc)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="u2deploy", description="Ship U2-Net to real devices.")
    parser.add_argument("--version", action="version", version=f"u2deploy {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        command = _load(name)
        doc = getattr(command, "__doc__", None) or help_text
        child = sub.add_parser(name, help=help_text, description=doc,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        command.add_arguments(child)
        child.set_defaults(_command=command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args._command.run(args) or 0)
    except U2DeployError as exc:
        print(f"u2deploy {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"u2deploy {args.command}: interrupted", file=sys.stderr)
        return 130

"""`u2deploy` command line: thin subcommands over the Python API.

Each subcommand is a module in this package with `add_arguments(parser)` and `run(args) -> int`,
named in `COMMANDS`. Command modules import only argparse-level things at the top; the heavy
work (torch, onnxruntime, ...) is imported inside `run`. User errors (`U2DeployError`) print one
line and exit with code 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import re
import signal
import sys
import threading
from collections.abc import Iterator, Sequence

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
    "serve": ("u2deploy.cli.serve", "HTTP service and web page: batched across requests, rembg-compatible"),
    "cache": ("u2deploy.cli.cache", "size of the cache by kind; --clear KIND --yes deletes"),
    "quant": ("u2deploy.cli.quant", "INT8 sensitivity per layer, and mixed INT8+FP16 to a quality target"),
}


#: OSError numbers that describe the machine (permissions, space), printed in one line, not as a bug.
_ENVIRONMENT_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}


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
    parser.add_argument("-v", "--verbose", action="store_true", help="errors in full, with the traceback")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        command = _load(name)
        doc = getattr(command, "__doc__", None) or help_text
        child = sub.add_parser(name, help=help_text, description=doc,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        command.add_arguments(child)
        child.set_defaults(_command=command)
    return parser


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every `finally` (temporaries, staging folders) runs."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated()


@contextlib.contextmanager
def _terminate_like_interrupt() -> Iterator[None]:
    """While a command runs, SIGTERM unwinds like Ctrl-C instead of killing without cleanup."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


_VERBOSE = ("-v", "--verbose")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = any(arg in _VERBOSE for arg in argv)  # -v anywhere, also after a nested subcommand's arguments
    args = parser.parse_args([arg for arg in argv if arg not in _VERBOSE])
    args.verbose = verbose
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        with _terminate_like_interrupt():
            return int(args._command.run(args) or 0)
    except _Terminated:
        print(f"u2deploy {args.command}: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except U2DeployError as exc:
        prefix = f"u2deploy {args.command}: error: "
        if getattr(args, "verbose", False):
            import traceback

            details = getattr(exc, "details", None)
            print(prefix + str(exc) + (f"\n{details}" if details else ""), file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
        else:
            print(prefix + one_line(str(exc), ERROR_WIDTH - len(prefix)), file=sys.stderr)
        return 1
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0
    except OSError as exc:
        if exc.errno not in _ENVIRONMENT_ERRNOS:
            raise
        from .._io import output_error  # a read-only or full disk is the user's environment, not a bug

        print(f"u2deploy {args.command}: error: {output_error(exc, exc.filename or 'a file')}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"u2deploy {args.command}: interrupted", file=sys.stderr)
        return 130


#: a user error is one line of at most this many characters (the rest with -v)
ERROR_WIDTH = 160
_MORE = " ... (-v: all)"


def one_line(text: str, limit: int) -> str:
    """`text` on one line of at most `limit` characters; longer, it loses detail before it loses the fix.

    Parenthesised details before "; fix: " go first; then the line is cut at a clause boundary
    after the start of the fix, and says that -v prints all of it.
    """
    line = " ".join(text.split())
    if len(line) <= limit:
        return line
    head, separator, fix = line.partition("; fix: ")
    if separator:
        head = re.sub(r" \([^()]*\)", "", head)
        line = head + separator + fix
        if len(line) <= limit:
            return line
    cut = line[: limit - len(_MORE)]
    floors = [len(head) + len(separator) + 10] if separator else []
    for floor in [*floors, limit // 2]:  # keep the start of the fix if it fits, else cut in the message
        index = max((cut.rfind(b) for b in ("; ", " (", ", ")), default=-1)
        index = index if index > floor else cut.rfind(" ")
        if index > floor:
            return cut[:index] + _MORE
    return cut + _MORE

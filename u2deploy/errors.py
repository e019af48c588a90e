"""User-facing error family.

Every error a user can cause (bad input, missing backend, failed parity gate) is a
`U2DeployError`. The CLI prints these as one line and exits with code 1; any other exception
is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "U2DeployError",
    "InputError",
    "ModelLoadError",
    "MissingDependencyError",
    "UnsupportedOptionError",
    "ExportError",
    "ParityError",
    "WeightsError",
    "BackendError",
    "OutputError",
    "first_line",
]


class U2DeployError(Exception):
    """Base class for errors caused by user input or the user's environment."""


class InputError(U2DeployError):
    """An input image, folder, shape or value cannot be used."""


class ModelLoadError(U2DeployError):
    """A model file is not a U2-Net of a known layout, or cannot be read."""


class MissingDependencyError(U2DeployError):
    """An optional package is needed for the requested feature."""


class UnsupportedOptionError(U2DeployError):
    """Options that cannot be combined, or a value outside what a format supports."""


class ExportError(U2DeployError):
    """An export step failed; nothing was written."""


class ParityError(U2DeployError):
    """An exported artifact differs from the PyTorch reference beyond the allowed tolerance."""


class WeightsError(U2DeployError):
    """Pretrained weights could not be fetched, verified or imported."""


class BackendError(U2DeployError):
    """A runtime backend could not load or run a model on this machine."""


class OutputError(U2DeployError):
    """An output cannot be written: a read-only folder, a full disk, a path that is an input."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first useful line of an exception's message (or its type name), for one-line error reports.

    C++ libraries (OpenVINO) open with lines such as ``Exception from src/...cpp:84:`` and
    ``Check '...' failed at ...:887:``: a line ending in ':' introduces the next one, so the
    next one is what the user needs ("bin file cannot be found").
    """
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    while len(lines) > 1 and lines[0].endswith(":"):
        lines.pop(0)
    return (lines[0] if lines else type(exc).__name__)[:limit]

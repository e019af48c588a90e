"""Name -> "module:attribute" registries, resolved on demand (backends, exporters, quantizers).

An unknown name lists the valid ones and suggests the closest, but never switches to it. An
entry whose u2deploy module does not exist yet (a format a later release adds) is an
`UnsupportedOptionError`, not a traceback.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping
from typing import Any

from .errors import InputError, UnsupportedOptionError

__all__ = ["unknown_name", "resolve_entry"]


def unknown_name(kind: str, value: str, choices: list[str], source: str = "") -> InputError:
    """`unknown backend 'trt10' (from --backend) (did you mean 'tensorrt'?); available: ...`."""
    close = difflib.get_close_matches(value, choices, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    origin = f" (from {source})" if source else ""
    return InputError(f"unknown {kind} '{value}'{origin}{hint}; available: {', '.join(choices)}")


def resolve_entry(table: Mapping[str, str], name: str, kind: str, source: str = "") -> Any:
    """Import and return the object `table[name]` points at.

    Args:
        table: name -> "package.module:attribute".
        name: the key asked for.
        kind: what the table holds, for messages ("backend", "exporter").
        source: where the name came from, for messages ("--fmt").
    """
    if name not in table:
        raise unknown_name(kind, name, list(table), source)
    module_name, attribute = table[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name) and exc.name.startswith("u2deploy"):
            raise UnsupportedOptionError(
                f"the {kind} '{name}' is not part of this u2deploy release yet ({module_name} is missing)"
            ) from None
        from ._deps import require

        require(exc.name or module_name, f"the {kind} '{name}'")  # raises MissingDependencyError
        raise
    return getattr(module, attribute)

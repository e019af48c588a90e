"""Exports of the tiny seeded model, made once per session and shared by every test folder.

The root conftest registers `tiny_export`; the cache lives in this module, so an export
asked for in both places still runs once. Exports default to a 64x64 input: the tiny network is
cheap in channels but not in pixels, and 64x64 keeps an export with its parity check near a second.
"""

from __future__ import annotations

import pytest

_CACHE: dict = {}
SIZE = 64


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory, tiny_checkpoint):
    """`tiny_export(fmt, **fields)` -> ExportResult of the tiny checkpoint; each distinct export runs once."""
    from u2deploy.export import export

    def make(fmt: str = "onnx", **fields):
        fields.setdefault("input_size", (SIZE, SIZE))
        key = (str(tiny_checkpoint), fmt, tuple(sorted(fields.items())))
        if key not in _CACHE:
            out = tmp_path_factory.mktemp("tiny_export")
            _CACHE[key] = export(tiny_checkpoint, f"{out}/", fmt=fmt, progress=False, **fields)
        return _CACHE[key]

    return make

"""`_io.atomic_path`: files get the umask's permissions without touching the process umask."""

from __future__ import annotations

import os
import stat

import pytest

from u2deploy import _io


def test_atomic_write_honours_the_umask_and_never_sets_it(tmp_path, monkeypatch):
    old = os.umask(0o027)
    try:
        def refuse(_mask):  # threads share the umask: setting it, even briefly, races with them
            raise AssertionError("os.umask called")

        monkeypatch.setattr(os, "umask", refuse)
        path = _io.atomic_write_text(tmp_path / "sub" / "a.txt", "hello")
    finally:
        monkeypatch.undo()
        os.umask(old)
    assert path.read_text() == "hello" and stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in path.parent.iterdir()] == ["a.txt"]


def test_a_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), _io.atomic_path(tmp_path / "m.onnx", suffix=".onnx") as tmp:
        assert tmp.name.startswith(".m.onnx.") and tmp.suffix == ".onnx" and tmp.is_file()
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []

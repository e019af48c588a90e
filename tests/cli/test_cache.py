"""`u2deploy cache`: sizes per kind, stale temporaries, and --clear only with --yes."""

from __future__ import annotations

import os
import time

import pytest

from u2deploy.cli import main


@pytest.fixture()
def home(tmp_path, monkeypatch):
    root = tmp_path / "home"
    (root / "weights").mkdir(parents=True)
    (root / "weights" / "u2net.pth").write_bytes(b"w" * 2_000_000)
    (root / "artifacts" / "abc").mkdir(parents=True)
    (root / "artifacts" / "abc" / "u2net_320_fp32.onnx").write_bytes(b"a" * 500_000)
    old = root / "artifacts" / ".u2net_320_int8.onnx.k2j3"  # a staging folder a crash left
    old.mkdir()
    (old / "part.onnx").write_bytes(b"x" * 1000)
    fresh = root / "weights" / ".u2netp.pth.abcd.tmp"  # a write in progress: not stale yet
    fresh.write_bytes(b"y")
    past = time.time() - 7200
    os.utime(old, (past, past))
    monkeypatch.setenv("U2DEPLOY_HOME", str(root))
    return root


def test_cache_lists_sizes_per_kind(home, capsys):
    assert main(["cache"]) == 0
    out = capsys.readouterr().out
    assert str(home) in out.splitlines()[0]
    lines = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    assert "2.0 MB" in lines["weights"] and "0.5 MB" in lines["artifacts"]
    assert lines["temporaries"].split("|")[3].strip() == "1"  # the old staging folder, not the fresh temp file


def test_clear_needs_yes_and_keeps_the_other_kinds(home, capsys):
    assert main(["cache", "--clear", "artifacts"]) == 1
    assert "add --yes" in capsys.readouterr().err and (home / "artifacts").is_dir()
    assert main(["cache", "--clear", "artifacts,temporaries", "--yes"]) == 0
    assert not (home / "artifacts").exists() and (home / "weights" / "u2net.pth").is_file()
    assert (home / "weights" / ".u2netp.pth.abcd.tmp").is_file()


def test_clear_unknown_kind_is_one_line(home, capsys):
    assert main(["cache", "--clear", "weigths", "--yes"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown kind weigths" in err and "weights" in err
    assert (home / "weights" / "u2net.pth").is_file()

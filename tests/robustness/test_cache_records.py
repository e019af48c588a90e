"""Weights integrity, corrupt cache records and leftovers of killed runs (issue 14: 7, 8, 11)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys

import pytest
import torch

from u2deploy import _io, weights
from u2deploy.cli import main
from u2deploy.errors import WeightsError
from u2deploy.weights import Source, WeightsInfo


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("U2DEPLOY_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "weights"


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory, tiny_model):
    path = tmp_path_factory.mktemp("tiny_weights") / "tiny.pth"
    torch.save(tiny_model.state_dict(), path)
    return path


def _md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _register(monkeypatch, *sources: Source) -> None:
    monkeypatch.setitem(weights.KNOWN_WEIGHTS, "tiny", WeightsInfo("u2net_test", "sod", "0.1 MB", "test", sources))


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_every_known_source_is_pinned_or_declared_unverified():
    unverified = {(name, s.label) for name, info in weights.KNOWN_WEIGHTS.items() for s in info.sources
                  if not s.verified}  # fmt: skip
    # Upstream publishes no digest for these two Drive files, and no one else we know of does.
    assert unverified == {("u2net_human_seg", "official u2net_human_seg.pth (Google Drive)"),
                          ("u2net_portrait", "official u2net_portrait.pth (Google Drive)")}
    for info in weights.KNOWN_WEIGHTS.values():
        for source in info.sources:
            for algorithm, value in source.digests().items():
                assert len(value) == {"md5": 32, "sha256": 64}[algorithm] and int(value, 16) >= 0


def test_a_declared_md5_is_checked(cache, monkeypatch, tiny_file):
    _register(monkeypatch, Source("mirror", tiny_file.as_uri(), "pth", md5="0" * 32))
    with pytest.raises(WeightsError, match=r"mirror: .*checksum mismatch \(md5 "):
        weights.get("tiny", progress=False, log=lambda _: None)
    assert not any(p.is_file() for p in cache.rglob("*"))


def test_a_source_without_a_digest_says_it_is_unverified(cache, monkeypatch, tiny_file):
    messages = []
    _register(monkeypatch, Source("mirror", tiny_file.as_uri(), "pth"))
    weights.get("tiny", progress=False, log=messages.append)
    assert messages == ["mirror: no published checksum for this file; it is unverified (it loads as u2net_test)"]
    assert weights._record("tiny")["verified"] is False


def test_a_users_file_with_no_known_digest_says_so_in_one_line(cache, monkeypatch, tiny_file):
    messages = []
    _register(monkeypatch, Source("mirror", "http://127.0.0.1:9/tiny.pth", "pth", md5="0" * 32))
    weights.import_weights("tiny", tiny_file, log=messages.append)
    assert messages == [f"{tiny_file}: matches no known digest of 'tiny'; imported unverified (it loads as u2net_test)"]
    _register(monkeypatch, Source("mirror", "http://127.0.0.1:9/tiny.pth", "pth", md5=_md5(tiny_file)))
    messages.clear()
    weights.import_weights("tiny", tiny_file, log=messages.append)
    assert messages == [] and weights._record("tiny")["verified"] is True


def test_a_truncated_record_is_rebuilt_from_the_verified_original(cache, monkeypatch, tiny_file, tmp_path, capsys):
    copy = tmp_path / "served.pth"
    copy.write_bytes(tiny_file.read_bytes())
    _register(monkeypatch, Source("mirror", copy.as_uri(), "pth", md5=_md5(tiny_file)))
    weights.get("tiny", progress=False)
    record = cache / "tiny.json"
    record.write_text(record.read_text()[:25])  # killed mid-write by an older version, or a full disk
    copy.unlink()  # the source is gone: only the cached original can bring it back
    assert main(["weights", "list"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tiny.json: corrupt cache record removed" in err and "Traceback" not in err
    messages = []
    assert weights.get("tiny", progress=False, log=messages.append) == cache / "tiny.pth"
    assert messages == ["tiny: rebuilt the cached checkpoint from the verified tiny.original.pth"]
    assert weights.is_cached("tiny")


def test_a_corrupt_record_of_an_unverified_file_is_refetched(cache, monkeypatch, tiny_file, capsys):
    _register(monkeypatch, Source("mirror", tiny_file.as_uri(), "pth"))
    weights.get("tiny", progress=False, log=lambda _: None)
    (cache / "tiny.json").write_bytes(b"\xff\xfe not json")
    assert main(["weights", "get", "tiny", "--force"]) == 0
    err = capsys.readouterr().err
    assert "corrupt cache record removed" in err and "Traceback" not in err
    assert weights.is_cached("tiny")


def test_an_interrupted_download_leaves_no_temporary(cache, monkeypatch, tiny_file, capsys):
    _register(monkeypatch, Source("mirror", tiny_file.as_uri(), "pth"))

    def killed(response, tmp, url, progress):
        tmp.write_bytes(b"half a file")
        os.kill(os.getpid(), signal.SIGTERM)  # as `kill PID` does to a running `weights get`
        raise AssertionError("SIGTERM did not interrupt")

    monkeypatch.setattr(weights, "_stream", killed)
    assert main(["weights", "get", "tiny"]) == 128 + signal.SIGTERM
    assert "terminated" in capsys.readouterr().err
    assert [p for p in cache.rglob("*") if p.is_file()] == []
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the handler does not outlive the command


def test_leftovers_of_killed_processes_are_removed_and_live_ones_kept(cache, monkeypatch, tiny_file):
    cache.mkdir(parents=True)
    (cache / "downloads").mkdir()
    dead, alive = _dead_pid(), os.getpid()
    stale = [cache / f".tiny.original.pth.u2d{dead}.abcd1234.pth", cache / "downloads" / f".x.whl.u2d{dead}.zz_z9876.whl"]
    live = cache / f".tiny.pth.u2d{alive}.abcd1234.tmp"
    for path in (*stale, live):
        path.write_bytes(b"x" * 100)
    assert weights.stale_files() == stale
    _register(monkeypatch, Source("mirror", tiny_file.as_uri(), "pth"))
    weights.get("tiny", progress=False, log=lambda _: None)
    assert not any(p.exists() for p in stale) and live.exists()


def test_export_staging_is_removed_on_sigterm_and_after_a_kill(tmp_path, tiny_checkpoint, monkeypatch, capsys):
    from u2deploy.export import pipeline

    out = tmp_path / "out"
    out.mkdir()
    dead = _dead_pid()
    killed_stage = out / f".model.onnx.u2d{dead}.k9k9k9k9"
    killed_stage.mkdir()
    (killed_stage / "model.onnx").write_bytes(b"x" * 1000)

    def terminated(*args, **kwargs):
        assert not killed_stage.exists()  # the -9 leftover went when this export staged
        assert [p.name for p in out.iterdir() if p.name.startswith(".model.onnx.u2d")]  # our own staging exists
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not interrupt")

    monkeypatch.setattr(pipeline, "exporter_for", lambda fmt: terminated)  # killed while converting
    code = main(["export", str(tiny_checkpoint), "--fmt", "onnx", "--size", "64", "--no-verify", "--quiet",
                 "-o", str(out / "model.onnx")])  # fmt: skip
    assert code == 128 + signal.SIGTERM
    assert list(out.iterdir()) == []


def test_stale_temporaries_are_listed_for_the_cache_command(tmp_path):
    dead = _dead_pid()
    (tmp_path / f".a.onnx.u2d{dead}.abcdefgh").mkdir()
    (tmp_path / f".b.png.u2d{dead}.abcdefgh.png").write_bytes(b"")
    (tmp_path / ".hidden_but_not_ours").write_bytes(b"")
    (tmp_path / f".c.png.u2d{os.getpid()}.abcdefgh.png").write_bytes(b"")
    names = [p.name for p in _io.stale_temporaries(tmp_path)]
    assert names == [f".a.onnx.u2d{dead}.abcdefgh", f".b.png.u2d{dead}.abcdefgh.png"]
    assert [p.name for p in _io.remove_stale_temporaries(tmp_path)] == names
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".c.png.u2d{os.getpid()}.abcdefgh.png", ".hidden_but_not_ours"]

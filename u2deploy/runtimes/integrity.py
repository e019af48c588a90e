"""An artifact's files against the checksums its manifest recorded at export, checked at load.

A flipped byte in an `.onnx` or an OpenVINO `.bin` still loads and runs, silently wrong, so every
backend load hashes the files the sidecar lists (one streamed sha256 each) and refuses a file
that changed. Hashing U2-Net's 176 MB takes about 0.5-2 s, as long as loading it, so the verdict
is cached by (path, size, mtime): in memory, and in `<cache>/integrity.json` across processes, so a
second `Runtime` or CLI run on the same unchanged file costs a `stat`. This guards against damaged
or replaced files, not against someone who also resets the mtime. `verify_files=False` skips the
check; `describe()` says so.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from .._io import atomic_write_text, sha256_file
from ..errors import ModelLoadError

__all__ = ["check_artifact_files", "clear_cache"]

_VERIFIED: dict[tuple[str, int, int], str] = {}  # (resolved path, size, mtime_ns) -> sha256 that matched
_LOCK = threading.Lock()
_DISK_ENTRIES = 256  # newest verdicts kept in the cache file


def clear_cache() -> None:
    """Forget every cached verdict, in memory and on disk."""
    with _LOCK:
        _VERIFIED.clear()
        _cache_file().unlink(missing_ok=True)


def _cache_file() -> Path:
    from ..weights import cache_dir

    return cache_dir() / "integrity.json"


def _read_disk() -> dict[str, list]:
    try:
        data = json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        return {}  # missing or damaged: the cache is only a shortcut
    return data if isinstance(data, dict) else {}


def _remember(key: tuple[str, int, int], sha: str) -> None:
    _VERIFIED[key] = sha
    entries = _read_disk()
    entries.pop(key[0], None)
    entries[key[0]] = [key[1], key[2], sha]
    try:
        atomic_write_text(_cache_file(), json.dumps(dict(list(entries.items())[-_DISK_ENTRIES:])))
    except OSError:
        pass  # a read-only cache folder only costs the next load a hash


def _files(artifact: Path, manifest: dict[str, Any]) -> list[tuple[Path, str]]:
    """(file on disk, recorded sha256) for every file the manifest lists.

    The manifest names files as exported; a renamed artifact (with its sidecar renamed too) is
    matched by stem, so `u2net.xml` exported as `model.xml` still finds `u2net.bin`.
    """
    recorded = manifest.get("files")
    if not isinstance(recorded, dict):
        return []
    exported = Path(str((manifest.get("artifact") or {}).get("file") or artifact.name))
    pairs = []
    for name, entry in recorded.items():
        sha = entry.get("sha256") if isinstance(entry, dict) else None
        if not isinstance(sha, str):
            continue
        if name == exported.name:
            path = artifact
        elif Path(name).stem == exported.stem:
            path = artifact.with_suffix(Path(name).suffix)
        else:
            path = artifact.with_name(name)
        pairs.append((path, sha))
    return pairs


def _matches(path: Path, sha: str) -> bool:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _LOCK:
        if _VERIFIED.get(key) == sha or _read_disk().get(key[0]) == [key[1], key[2], sha]:
            return True
    if sha256_file(path) != sha:
        return False
    with _LOCK:
        _remember(key, sha)
    return True


def check_artifact_files(artifact: Path, manifest: dict[str, Any] | None) -> str:
    """Verify `artifact`'s files against `manifest`; returns the verdict for `describe()`.

    Raises:
        ModelLoadError: a listed file differs from what was exported (one line naming it).
    """
    if not manifest:
        return "not checked: no manifest beside the file"
    pairs = [(path, sha) for path, sha in _files(artifact, manifest) if path.is_file()]
    if not pairs:
        return "not checked: the manifest lists no checksums"
    for path, sha in pairs:
        if not _matches(path, sha):
            raise ModelLoadError(f"{path.name}: changed since export (its sha256 differs from the manifest "
                                 f"{artifact.name}.json); re-export it, or load with verify_files=False")
    return f"verified: sha256 of {', '.join(path.name for path, _ in pairs)} match the manifest"

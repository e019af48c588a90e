"""An artifact's files against the checksums its manifest recorded at export, checked at load.

A flipped byte in an `.onnx` or an OpenVINO `.bin` still loads and runs, silently wrong, so every
backend load hashes the files the sidecar lists (one streamed sha256 each) and refuses a file
that changed. The verdict is cached per process by (path, size, mtime): a second `Runtime` on the
same unchanged file costs a `stat`. `verify_files=False` skips the check; `describe()` says so.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from .._io import sha256_file
from ..errors import ModelLoadError

__all__ = ["check_artifact_files", "clear_cache"]

_VERIFIED: dict[tuple[str, int, int], str] = {}  # (resolved path, size, mtime_ns) -> sha256 that matched
_LOCK = threading.Lock()


def clear_cache() -> None:
    with _LOCK:
        _VERIFIED.clear()


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
        if _VERIFIED.get(key) == sha:
            return True
    if sha256_file(path) != sha:
        return False
    with _LOCK:
        _VERIFIED[key] = sha
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

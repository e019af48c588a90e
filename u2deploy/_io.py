"""Atomic file writes and checksums: a failed write never leaves a partial file behind."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "sha256_file", "file_checksums"]


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only if the block succeeds.

    The temp file lives in the same directory so the final `os.replace` is atomic.
    `suffix` keeps an extension on the temp name for tools that look at it (onnx, openvino).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _create_temp(target, suffix or ".tmp")
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def _create_temp(target: Path, suffix: str) -> Path:
    """An empty new file beside `target`, created with mode 0o666 so the kernel applies the umask.

    Not `tempfile.mkstemp`: it creates 0600 files, and reading the umask to widen them means
    setting it (`os.umask`), which races with other threads, since they share it.
    """
    for _ in range(100):
        path = target.parent / f".{target.name}.{secrets.token_hex(4)}{suffix}"
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"{target.parent}: no free temporary name for {target.name}")


def atomic_write_bytes(target: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def atomic_write_text(target: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(target, text.encode("utf-8"))


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_checksums(paths: list[Path]) -> dict[str, dict[str, object]]:
    """{file name: {sha256, bytes}} for a manifest."""
    return {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in paths}

"""Atomic file writes, checksums and output checks: a failed write never leaves a partial file behind."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import OutputError

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "sha256_file", "file_checksums",
           "writable_dir", "output_error", "same_file", "file_digests", "temp_prefix", "temporary_path",
           "stale_temporaries", "remove_stale_temporaries"]

# Temporaries carry the creating process's id (".NAME.u2d<pid>.<random>"), so a later run can tell
# the leftovers of a killed process (-9 runs no cleanup) from those of one still running.
_STALE = re.compile(r"^\..+\.u2d(\d+)\.[a-z0-9_]{8}")

_WHY = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
        errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
        errno.EPERM: "permission denied"}  # fmt: skip


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only if the block succeeds.

    The temp file lives in the same directory so the final `os.replace` is atomic.
    `suffix` keeps an extension on the temp name for tools that look at it (onnx, openvino).
    """
    target = Path(target)
    with temporary_path(target, suffix) as tmp_path:
        yield tmp_path
        os.replace(tmp_path, target)


def temp_prefix(name: str) -> str:
    """Prefix of a hidden temporary for `name` that `stale_temporaries` can attribute to this process."""
    return f".{name}.u2d{os.getpid()}."


@contextlib.contextmanager
def temporary_path(target: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """A hidden, empty temporary file beside `target`, removed when the block ends (however it ends)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _create_temp(target, suffix or ".tmp")
    try:
        yield tmp_path
    finally:
        tmp_path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Temporary files and staging folders in `folder` left by u2deploy processes that no longer run."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for entry in sorted(folder.iterdir()):
        match = _STALE.match(entry.name)
        if match and not _alive(int(match.group(1))):
            found.append(entry)
    return found


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete what `stale_temporaries` finds; returns what was removed (for `u2deploy cache`)."""
    removed = []
    for entry in stale_temporaries(folder):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def _create_temp(target: Path, suffix: str) -> Path:
    """An empty new file beside `target`, created with mode 0o666 so the kernel applies the umask.

    Not `tempfile.mkstemp`: it creates 0600 files, and reading the umask to widen them means
    setting it (`os.umask`), which races with other threads, since they share it.
    """
    for _ in range(100):
        path = target.parent / f"{temp_prefix(target.name)}{secrets.token_hex(4)}{suffix}"
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


def file_digests(path: str | os.PathLike, algorithms: tuple[str, ...] = ("sha256", "md5"), chunk: int = 1 << 20) -> dict[str, str]:
    """{algorithm: hex digest} of a file, every algorithm in one streamed read."""
    digests = {name: hashlib.new(name) for name in algorithms}
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            for digest in digests.values():
                digest.update(block)
    return {name: digest.hexdigest() for name, digest in digests.items()}


def file_checksums(paths: list[Path]) -> dict[str, dict[str, object]]:
    """{file name: {sha256, bytes}} for a manifest."""
    return {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in paths}


def output_error(exc: OSError, target: str | os.PathLike, done: str = "") -> OutputError:
    """One line for a failed write: which path, why, and what was still written."""
    why = _WHY.get(exc.errno or 0, exc.strerror or str(exc))
    fix = "free some space" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "choose a writable folder"
    return OutputError(f"cannot write {target}: {why}; {fix}" + (f" ({done})" if done else ""))


@contextlib.contextmanager
def removed_on_failure(folder: str | os.PathLike) -> Iterator[None]:
    """The folders of `folder`'s path that do not exist yet are removed again (when empty) if the block fails.

    A failed predict or export then leaves no empty `-o` folder behind.
    """
    created = [path for path in (Path(folder), *Path(folder).parents) if not path.exists()]
    try:
        yield
    except BaseException:
        for path in created:  # deepest first
            with contextlib.suppress(OSError):
                path.rmdir()
        raise


def writable_dir(folder: str | os.PathLike, option: str = "-o") -> Path:
    """Create `folder` if needed and prove it takes a file, before any long work starts."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{option} {folder}: is an existing file; give a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except FileExistsError:  # a parent is a file
        raise OutputError(f"{option} {folder}: a parent of it is a file; give a folder") from None
    except OSError as exc:
        raise output_error(exc, folder) from None
    return folder


def output_names(paths: list, suffix: str = ".png") -> list[str]:
    """One output file name per input: ``STEM.png``, then ``STEM_2.png`` for a second ``STEM`` from another folder."""
    names, used = [], set()
    for path in paths:
        stem = name = Path(str(path)).stem
        counter = 1
        while name in used:
            counter += 1
            name = f"{stem}_{counter}"
        used.add(name)
        names.append(f"{name}{suffix}")
    return names


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when `a` and `b` name one file: links, `..` and other spellings included."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one does not exist yet: compare where they would resolve to
        return Path(a).resolve() == Path(b).resolve()

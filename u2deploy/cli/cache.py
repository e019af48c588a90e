"""What the u2deploy cache holds, by kind, and clearing it.

  u2deploy cache                                   # size per kind, and where the cache is
  u2deploy cache --clear artifacts,calibration     # says what it would delete; add --yes to delete
  u2deploy cache --clear temporaries --yes         # staging folders and temp files older than an hour

The cache is $U2DEPLOY_HOME, else the platform cache dir (~/.cache/u2deploy on Linux). Kinds are
its top-level folders (weights, artifacts, calibration, rembg, tensorrt, ...); `temporaries` are
the hidden staging folders and temp files a crashed write left behind; `all` is everything.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

#: what each top-level folder holds (unknown folders are listed with their name only)
KINDS = {
    "weights": "pretrained checkpoints and their downloads (refetching u2net is ~165 MB)",
    "artifacts": "exports made by `u2deploy bench` (rebuilt on the next run)",
    "calibration": "INT8 calibration caches and images",
    "bench": "bench inputs (calibration stand-in photos)",
    "rembg": "rembg's model copy for the bench peers",
    "tensorrt": "TensorRT timing caches",
}
#: a temporary younger than this may belong to a write in progress
STALE_AFTER_S = 3600


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clear", default=None, metavar="KIND[,KIND]",
                        help="kinds to delete: folder names listed by `u2deploy cache`, temporaries, or all")
    parser.add_argument("--yes", action="store_true", help="really delete (without it --clear only lists)")


def _size(path: Path) -> int:
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    return sum(f.lstat().st_size for f in path.rglob("*") if f.is_file() or f.is_symlink())


def stale_temporaries(root: Path, older_than_s: float = STALE_AFTER_S) -> list[Path]:
    """Hidden staging folders and temp files (`.name.XXXX[.tmp]`, see `_io.atomic_path`) older than `older_than_s`.

    Written here because the cache had no such listing; one function, so a shared helper can replace it.
    """
    if not root.is_dir():
        return []
    cutoff, found, todo = time.time() - older_than_s, [], [root]
    while todo:
        for entry in sorted(todo.pop().iterdir()):
            if entry.name.startswith("."):
                if entry.lstat().st_mtime < cutoff:
                    found.append(entry)
            elif entry.is_dir() and not entry.is_symlink():
                todo.append(entry)
    return found


def _human(size: int) -> str:
    return f"{size / 1e9:.2f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB"


def _kinds(root: Path) -> dict[str, list[Path]]:
    kinds = {entry.name: [entry] for entry in sorted(root.iterdir()) if not entry.name.startswith(".")} \
        if root.is_dir() else {}  # fmt: skip
    kinds["temporaries"] = stale_temporaries(root)
    return kinds


def _selected(kinds: dict[str, list[Path]], value: str) -> dict[str, list[Path]]:
    from ..errors import InputError

    names = [name.strip() for name in value.split(",") if name.strip()]
    if "all" in names:
        return kinds
    unknown = [name for name in names if name not in kinds]
    if unknown or not names:
        raise InputError(f"--clear {value}: unknown kind {', '.join(unknown) or '(none)'}; "
                         f"this cache has {', '.join(kinds)} (or all)")  # fmt: skip
    return {name: kinds[name] for name in names}


def _remove(path: Path) -> None:
    if not (path.exists() or path.is_symlink()):  # inside a folder removed just before
        return
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def run(args: argparse.Namespace) -> int:
    from ..weights import cache_dir
    from ._common import print_table

    root = cache_dir()
    kinds = _kinds(root)
    if args.clear is None:
        rows = [{"kind": name, "size": _human(sum(_size(p) for p in paths)), "files": len(paths) if name ==
                 "temporaries" else "", "what": KINDS.get(name, "stale staging folders and temp files" if name ==
                 "temporaries" else "")} for name, paths in kinds.items()]  # fmt: skip
        print(f"cache: {root} ({_human(sum(_size(p) for paths in kinds.values() for p in paths))})")
        print_table(rows, ["kind", "size", "files", "what"])
        return 0
    chosen = _selected(kinds, args.clear)
    total = sum(_size(p) for paths in chosen.values() for p in paths)
    if not args.yes:
        print(f"would delete {', '.join(chosen)} ({_human(total)}) from {root}; add --yes to delete", file=sys.stderr)
        return 1
    for paths in chosen.values():
        for path in paths:
            _remove(path)
    print(f"deleted {', '.join(chosen)} ({_human(total)}) from {root}")
    return 0

"""What users run today, against u2deploy's fastest path at equal quality, timed side by side.

The same definition of "one image" for everyone (`DEFINITION`): a decoded RGB uint8 photo in
memory goes in, the uint8 mask at the photo's own size comes out. Decoding the file is the same
work for every tool and is left out; each tool's own resize, normalisation, inference,
normalisation of the map and resize back are in.

* **upstream recipe**: PyTorch FP32 eager on CPU with the upstream `u2net_test.py` processing
  (`Runtime(checkpoint, backend="torch", mode="reference")`, tested against scikit-image and
  upstream's PIL resize in `tests/test_processing.py`).
* **rembg**: `rembg.remove(photo, session=new_session("u2net"), only_mask=True)` with the same
  `u2net.onnx` weights u2deploy fetched (rembg's own file, md5 60024c5c...): it is placed in a
  rembg home under the u2deploy cache unless the user set `REMBG_HOME`/`U2NET_HOME`.
* **u2deploy fastest**: the fastest batch-1 row of the main table whose mean mask IoU against
  PyTorch FP32 is at least the quality bar, through `Runtime.predict` (fast processing).

Each peer's masks are also compared with the upstream recipe's on every photo (IoU at 0.5), so
"equal quality" is checked end to end, not only at the network output.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._deps import available, require
from ..errors import U2DeployError, first_line
from .harness import interleave, summarize

__all__ = ["DEFINITION", "Peer", "upstream_peer", "rembg_peer", "runtime_peer", "compare_peers", "safe_peer",
           "REMBG_U2NET_MD5"]

DEFINITION = ("end-to-end time per image: a decoded RGB uint8 photo in memory in, the uint8 mask at the photo's size "
              "out (file decoding, the same for every tool, left out); batch 1, one image at a time")  # fmt: skip
#: md5 of rembg's u2net.onnx (the file rembg downloads for "u2net")
REMBG_U2NET_MD5 = "60024c5c889badc19c04ad937298a77b"


@dataclass
class Peer:
    """A way to turn a photo into a mask; `predict` is None when it cannot run here (`reason`)."""

    name: str
    description: str
    predict: Callable[[np.ndarray], np.ndarray] | None = None
    status: str = "ok"
    reason: str = ""
    close: Callable[[], None] = lambda: None
    info: dict[str, Any] = field(default_factory=dict)


def runtime_peer(name: str, description: str, runtime: Any) -> Peer:
    """A peer that is an open `Runtime`: `predict`, then the 8-bit mask."""
    from ..processing import to_mask_u8

    return Peer(name, description, lambda photo: to_mask_u8(runtime.predict(photo)), info={"runtime": repr(runtime)})


def upstream_peer(checkpoint: Path, threads: int | None) -> Peer:
    """PyTorch FP32 with upstream's reference processing, on the same checkpoint."""
    from ..runtimes.runtime import Runtime

    description = "PyTorch FP32 eager, upstream u2net_test.py processing (skimage resize, normPRED, PIL resize)"
    runtime = Runtime(checkpoint, backend="torch", mode="reference", threads=threads)
    peer = runtime_peer("upstream recipe", description, runtime)
    peer.close = runtime.close
    return peer


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _seed_rembg_home(onnx_file: Path | None, home: Path) -> str:
    """Let rembg find the same u2net.onnx u2deploy has, without downloading; says where it comes from."""
    if os.environ.get("REMBG_HOME") or os.environ.get("U2NET_HOME"):
        return "rembg's own home (REMBG_HOME/U2NET_HOME set by the user)"
    if onnx_file is None or _md5(onnx_file) != REMBG_U2NET_MD5:
        return "rembg's own download (u2deploy's cached weights are not rembg's u2net.onnx)"
    # newer rembg reads REMBG_HOME/models/u2net/, releases up to 2.0.6x read U2NET_HOME/ directly
    for target in (home / "models" / "u2net" / "u2net.onnx", home / "u2net.onnx"):
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(onnx_file, target)
            except OSError:
                shutil.copyfile(onnx_file, target)
    os.environ["REMBG_HOME"] = os.environ["U2NET_HOME"] = str(home)
    return f"u2deploy's cached rembg u2net.onnx (md5 {REMBG_U2NET_MD5}), via REMBG_HOME/U2NET_HOME={home}"


def rembg_peer(threads: int | None) -> Peer:
    """rembg's `remove(..., only_mask=True)` with the u2net session; skipped with the reason when absent."""
    description = "rembg remove(only_mask=True), session u2net (ONNX Runtime FP32, PIL LANCZOS resize)"
    if not available("rembg"):
        return Peer("rembg", description, status="skipped", reason="rembg is not installed (pip install rembg; see docs/bench.md)")
    from ..weights import cache_dir, download_path

    weights_from = _seed_rembg_home(download_path("u2net"), cache_dir() / "rembg")
    rembg = require("rembg", "the rembg peer")
    session = _rembg_session(rembg, threads)

    def predict(photo: np.ndarray) -> np.ndarray:
        return np.asarray(rembg.remove(photo, session=session, only_mask=True))

    version = getattr(rembg, "__version__", None) or _version("rembg")
    return Peer("rembg", description, predict, info={"weights": weights_from, "version": version})


def _rembg_session(rembg: Any, threads: int | None) -> Any:
    """rembg's u2net session. Threads go through OMP_NUM_THREADS, which `new_session` reads in every
    rembg 2.0 release; only newer ones take `sess_opts` (2.0.69, what pip picks beside scikit-image
    < 0.26, refuses it)."""
    previous = os.environ.get("OMP_NUM_THREADS")
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        return rembg.new_session("u2net")
    finally:
        if previous is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = previous


def _version(distribution: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _iou_u8(reference: np.ndarray, candidate: np.ndarray) -> float:
    from ..compare import mask_iou

    return mask_iou(reference.astype(np.float32) / 255.0, candidate.astype(np.float32) / 255.0)


def _recording(peer: Peer, photos: list[np.ndarray], masks: dict[int, np.ndarray]) -> Callable[[int], None]:
    def call(index: int) -> None:
        masks[index % len(photos)] = peer.predict(photos[index % len(photos)])

    return call


def compare_peers(peers: list[Peer], photos: dict[str, np.ndarray], *, reference: str = "upstream recipe",
                  baseline: str = "u2deploy fastest", warmup: int = 1, runs: int | None = 10,
                  seconds: float | None = None, pause: float = 0.0,
                  on_round: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """Time the runnable peers interleaved over the photos; one result dict per peer.

    Each result has the latency stats (ms), the ratio of its p50 to `baseline`'s (how many times
    slower than u2deploy's path) and the mask IoU against `reference` on every photo.
    """
    names, images = list(photos), list(photos.values())
    runnable = [peer for peer in peers if peer.predict is not None]
    masks: dict[str, dict[int, np.ndarray]] = {peer.name: {} for peer in runnable}
    calls = {peer.name: _recording(peer, images, masks[peer.name]) for peer in runnable}
    timings = interleave(calls, warmup=warmup, runs=runs, seconds=seconds, pause=pause, on_round=on_round)
    for peer in runnable:  # fewer rounds than photos: finish the quality check untimed
        for index in range(len(images)):
            if index not in masks[peer.name]:
                calls[peer.name](index)
    stats = {name: summarize(t.total) for name, t in timings.items()}
    base = stats.get(baseline)
    results = []
    for peer in peers:
        result: dict[str, Any] = {"name": peer.name, "description": peer.description, **peer.info}
        if peer.predict is None:
            results.append({**result, "status": peer.status, "reason": peer.reason})
            continue
        result.update(status="ok", latency=stats[peer.name].to_dict())
        result["ratio_vs_baseline"] = stats[peer.name].p50 / base.p50 if base else None
        if reference in masks:
            ious = {names[i]: _iou_u8(masks[reference][i], masks[peer.name][i]) for i in range(len(images))}
            result.update(iou_vs_reference=ious, min_iou=min(ious.values()), mean_iou=float(np.mean(list(ious.values()))))
        results.append(result)
    return results


def safe_peer(factory: Callable[[], Peer], name: str, description: str) -> Peer:
    """Build a peer; a user-facing error (missing package, no weights) becomes a skipped peer with the reason."""
    from .matrix import classify

    try:
        return factory()
    except U2DeployError as exc:
        return Peer(name, description, status=classify(exc), reason=first_line(exc, 300))
    except Exception as exc:  # rembg/pooch raise their own types (no network, bad file): report, don't crash
        return Peer(name, description, status="failed",
                    reason=f"failed to start: {type(exc).__name__}: {first_line(exc, 250)}")

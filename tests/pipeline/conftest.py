"""Fixtures for pipeline tests: small generated videos and image folders, and the tiny real model.

Frames are 96x64 with a bright block whose column encodes the frame index, so order can be
checked after any codec; FFV1 (lossless) videos make file-to-file checks exact.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

WIDTH, HEIGHT = 96, 64


def indexed_frame(index: int) -> np.ndarray:
    """A BGR frame whose bright block starts at column 3 * index (index < 25)."""
    rng = np.random.default_rng(index)
    frame = rng.integers(20, 60, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    frame[16:48, 3 * index:3 * index + 20] = (40, 200, 240)
    return frame


def block_column(frame: np.ndarray) -> int:
    """The frame index `indexed_frame` encoded: where the bright block begins."""
    bright = frame[16:48].astype(np.int32).sum(axis=(0, 2)) > 32 * 3 * 150
    return int(np.argmax(bright)) // 3


def write_video(path: Path, frames: list[np.ndarray], fourcc: str = "FFV1", fps: float = 10.0) -> Path:
    import cv2

    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    assert writer.isOpened(), f"test setup: cannot write {fourcc} {path.suffix}"
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def read_video(path: Path) -> tuple[list[np.ndarray], str, float]:
    """(frames, FOURCC, fps) as OpenCV reads the file back."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), f"{path} does not open"
    fourcc = int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode("ascii", "replace")
    fps = capture.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames, fourcc, fps


@pytest.fixture(scope="module")
def tiny_runtime(tiny_checkpoint):
    """The seeded u2net_test model at 64x64: real inference in a few milliseconds a frame.

    One intra-op thread: on a shared 2-core machine a 2-thread OpenMP team next to the
    pipeline's own threads and other processes measured 100x slower (barrier spinning while a
    team thread is descheduled). torch's thread count is process-wide, so it is restored after.
    """
    import torch

    from u2deploy import Runtime

    previous = torch.get_num_threads()
    with Runtime(tiny_checkpoint, input_size=64, threads=1) as runtime:
        yield runtime
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def video_12(tmp_path_factory) -> Path:
    """12 indexed frames in a lossless FFV1 .avi at 10 fps."""
    folder = tmp_path_factory.mktemp("videos")
    return write_video(folder / "indexed.avi", [indexed_frame(i) for i in range(12)])

"""One clear error for each way a stream can fail, raised in the caller, with outputs finalised."""

from __future__ import annotations

import socket
import sys
import threading
import time

import numpy as np
import pytest

from u2deploy.errors import InputError, MissingDependencyError, UnsupportedOptionError
from u2deploy.pipeline import Pipeline, Sink, Source, VideoFileSink, gstreamer, sink_from_uri, source_from_uri

from .conftest import indexed_frame, read_video


def test_unwritable_sink_fails_before_any_frame(tiny_runtime, video_12, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for target in (blocker / "out.mp4", blocker / "frames/"):
        with pytest.raises(InputError, match=r"cannot write .*a-file.*choose a writable folder"):
            Pipeline(tiny_runtime, str(video_12), str(target)).run()


def test_unavailable_codec_names_alternatives_and_leaves_nothing(tiny_runtime, video_12, tmp_path):
    out = tmp_path / "out.mp4"
    with pytest.raises(UnsupportedOptionError, match=r"codec 'ZZZZ' cannot write \.mp4 .*try mp4v, avc1"):
        Pipeline(tiny_runtime, str(video_12), VideoFileSink(out, codec="ZZZZ")).run()
    assert list(tmp_path.iterdir()) == []


def test_bad_sink_names():
    with pytest.raises(InputError, match=r"unknown output type '\.xyz'"):
        sink_from_uri("out.xyz")
    with pytest.raises(InputError, match=r"use a pattern such as frame_%06d\.png"):
        sink_from_uri("frame.png")
    with pytest.raises(InputError, match="not a FOURCC"):
        sink_from_uri("out.avi", codec="mpeg-4")


def test_display_on_headless_opencv(monkeypatch):
    monkeypatch.setattr(gstreamer, "opencv_has_gui", lambda: False)
    with pytest.raises(MissingDependencyError, match=r"display://0 needs an OpenCV with a GUI.*pip uninstall "
                                                     r"opencv-python-headless.*--headless"):
        sink_from_uri("display://0").open(30)


def test_missing_camera_and_file(tiny_runtime):
    with pytest.raises(InputError, match=r"v4l2:///dev/video99: could not open it; check that the camera is connected"):
        Pipeline(tiny_runtime, "v4l2:///dev/video99").run()
    with pytest.raises(InputError, match="no such file"):
        source_from_uri("/nonexistent/clip.mp4")


def test_unreachable_stream_times_out(monkeypatch):
    monkeypatch.setattr(gstreamer, "opencv_has_gstreamer", lambda: False)  # the FFmpeg path, on every machine
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)  # accepts the connection and never answers
    try:
        source = source_from_uri(f"rtsp://127.0.0.1:{server.getsockname()[1]}/live", timeout=1.0)
        started = time.monotonic()
        with pytest.raises(InputError, match=r"rtsp://127\.0\.0\.1:\d+/live: (no answer within|could not open)"):
            source.open()
        assert time.monotonic() - started < 5
    finally:
        server.close()


class FailingSource(Source):
    """Five good frames, then an error (a camera unplugged mid-stream, or a bug)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__("failing")
        self.error, self.sent = error, 0

    def read(self):
        if self.sent == 5:
            raise self.error
        self.sent += 1
        return indexed_frame(self.sent)


def test_source_error_reaches_the_caller_after_the_file_is_finalised(tiny_runtime, tmp_path):
    out = tmp_path / "out.avi"
    with pytest.raises(InputError, match="camera unplugged"):
        Pipeline(tiny_runtime, FailingSource(InputError("camera unplugged")), VideoFileSink(out)).run()
    frames, _, _ = read_video(out)
    assert len(frames) == 5  # what was read before the failure was still written, and the file plays


def test_a_bug_in_a_thread_keeps_its_type_and_says_where(tiny_runtime):
    with pytest.raises(ZeroDivisionError) as caught:
        Pipeline(tiny_runtime, FailingSource(ZeroDivisionError("bug")), "null").run()
    if sys.version_info >= (3, 11):  # exception notes
        assert "raised in the u2deploy pipeline's capture thread" in caught.value.__notes__[0]


class BrokenSink(Sink):
    def write(self, image, index):
        if index == 2:
            raise InputError("disk full")
        self.frames += 1


def test_sink_error_stops_every_thread(tiny_runtime, video_12):
    pipeline = Pipeline(tiny_runtime, str(video_12), BrokenSink("broken"))
    with pytest.raises(InputError, match="disk full"):
        pipeline.run()
    assert all(not t.is_alive() for t in pipeline._threads)


def test_frame_size_change_into_a_video(tiny_runtime, tmp_path):
    class Growing(Source):
        sent = 0

        def read(self):
            self.sent += 1
            return None if self.sent > 3 else np.zeros((64 + 8 * self.sent, 96, 3), np.uint8)

    with pytest.raises(InputError, match="a video needs one frame size"):
        Pipeline(tiny_runtime, Growing(), str(tmp_path / "out.avi")).run()


def test_stalled_camera_is_an_error_not_a_hang(tiny_runtime):
    release = threading.Event()

    class Stalling(Source):
        live, sent = True, 0

        def read(self):
            self.sent += 1
            if self.sent > 2:
                release.wait(30)  # a driver that never returns
                return None
            return indexed_frame(self.sent)

    pipeline = Pipeline(tiny_runtime, Stalling("stalling-camera"), stall_timeout=0.5, join_timeout=0.2)
    started = time.monotonic()
    try:
        with pytest.raises(InputError, match="stalling-camera: no frame for"):
            pipeline.run()
        assert time.monotonic() - started < 5
        assert "did not stop" in pipeline.stats.warnings[0]
    finally:
        release.set()

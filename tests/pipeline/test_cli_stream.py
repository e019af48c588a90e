"""`u2deploy stream`: one-line errors, a full run, and Ctrl-C mid-stream leaving a playable file."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from u2deploy.cli import main

from .conftest import HEIGHT, WIDTH, indexed_frame, read_video, write_video


@pytest.mark.parametrize(("args", "message"), [
    (["--source", "cis://0"], "unknown source scheme 'cis'"),
    (["--source", "0", "--sink", "display://0", "--headless"], "--headless with a display:// sink"),
    (["--source", "0", "--effect", "sparkle"], "unknown effect 'sparkle'"),
    (["--source", "csi://0", "--input-loop", "2"], "--input-loop: not used by csi source"),
    (["--source", "csi://0", "--sink", "out.mp4", "--headless"], "needs an OpenCV built with GStreamer"),
])
def test_errors_are_one_line_and_exit_1(tiny_checkpoint, capsys, monkeypatch, args, message):
    from u2deploy.pipeline import gstreamer

    monkeypatch.setattr(gstreamer, "opencv_has_gstreamer", lambda: False)
    assert main(["stream", str(tiny_checkpoint), *args]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("u2deploy stream: error: ") and message in err[0]


def test_stream_file_to_file(tiny_checkpoint, video_12, tmp_path, capsys):
    import torch

    threads = torch.get_num_threads()
    out = tmp_path / "out.mkv"
    try:
        code = main(["stream", str(tiny_checkpoint), "--size", "64", "--threads", "1", "--source", str(video_12),
                     "--sink", str(out), "--output-codec", "ffv1", "--effect", "blur", "--batch", "3", "--headless"])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    assert "12 frame(s) read from" in capsys.readouterr().out
    frames, fourcc, _ = read_video(out)
    assert len(frames) == 12 and fourcc.lower() == "ffv1" and frames[0].shape == (HEIGHT, WIDTH, 3)


def _lines(stream, into: queue.Queue) -> None:
    for line in iter(stream.readline, ""):
        into.put(line)


def test_ctrl_c_mid_stream_finalises_a_playable_mp4(tiny_checkpoint, tmp_path):
    """MP4 writes its index at the end: without a clean close the file would not open at all."""
    video = write_video(tmp_path / "in.avi", [indexed_frame(i) for i in range(12)])
    out = tmp_path / "out.mp4"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "u2deploy", "stream", str(tiny_checkpoint), "--size", "64", "--threads", "1",
               "--source", str(video), "--input-loop", "-1", "--sink", str(out), "--headless", "--stats"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_lines, args=(process.stderr, lines), daemon=True).start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait until frames are flowing (a --stats line)
            try:
                flowing = re.match(r"stream: (\d+) frames", lines.get(timeout=1))
                if flowing and int(flowing.group(1)) > 12:  # past the end of the file once
                    break
            except queue.Empty:
                assert process.poll() is None, "stream exited early"
        else:
            pytest.fail("no --stats line within 60 s")
        process.send_signal(signal.SIGINT)
        stdout, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stdout
    match = re.search(r"(\d+) frame\(s\) read from .*, (\d+) written to .* stopped by interrupted", stdout)
    assert match, stdout
    read, written = int(match.group(1)), int(match.group(2))
    assert read == written > 12  # looped past the end of the file; nothing queued was lost
    frames, fourcc, _ = read_video(out)
    assert len(frames) == written and fourcc in ("avc1", "h264")  # H.264 through PyAV
    assert not list(tmp_path.glob(".*partial*"))


def test_help_lists_the_options():
    with pytest.raises(SystemExit) as exit_info:
        main(["stream", "--help"])
    assert exit_info.value.code == 0

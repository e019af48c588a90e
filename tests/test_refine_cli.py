"""`u2deploy predict` with rembg's habits: --refine, stdin/stdout, one file, formats, --watch (subprocesses)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image


def u2deploy(*args, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "u2deploy", *map(str, args)], input=stdin, capture_output=True,
                          env=dict(os.environ), timeout=300)


@pytest.fixture(scope="module")
def model(tiny_export):
    """The tiny model as ONNX: a subprocess starts in about a second (importing torch takes far longer)."""
    return tiny_export("onnx").path


@pytest.fixture()
def photo(tmp_path, photos):
    path = tmp_path / "chelsea.jpg"
    Image.fromarray(photos["chelsea"][::4, ::4]).save(path)  # 113x151: fast, still a real photo
    return path


def test_stdin_to_stdout_png(photo, model):
    result = u2deploy("predict", model, "-", "-o", "-", stdin=photo.read_bytes())
    assert result.returncode == 0, result.stderr
    image = Image.open(io.BytesIO(result.stdout))
    assert image.format == "PNG" and image.mode == "L" and image.size == Image.open(photo).size


@pytest.mark.parametrize(("name", "output", "fmt", "mode"), [
    ("cut.webp", "cutout", "WEBP", "RGBA"),
    ("cut.png", "cutout", "PNG", "RGBA"),
    ("mask.jpg", "mask", "JPEG", "L"),
    ("comp.jpeg", "composite", "JPEG", "RGB"),
])
def test_one_input_to_one_file_takes_the_format_from_the_suffix(tmp_path, photo, model, name, output, fmt, mode):
    result = u2deploy("predict", model, photo, "-o", tmp_path / name, "--output", output)
    assert result.returncode == 0, result.stderr
    image = Image.open(tmp_path / name)
    assert (image.format, image.mode) == (fmt, mode)


def test_refined_cutout_keeps_alpha_and_differs_from_raw(tmp_path, photo, model):
    for refine in ("none", "guided", "matting"):
        result = u2deploy("predict", model, photo, "-o", tmp_path / f"{refine}.png", "--output", "cutout",
                          "--refine", refine, "--erode", "3", "--post", "none")
        assert result.returncode == 0, result.stderr
        assert (b"matting" in result.stderr and b" s (" in result.stderr) == (refine == "matting")  # says how long
    raw, guided = (np.asarray(Image.open(tmp_path / f"{r}.png")) for r in ("none", "guided"))
    assert raw.shape == guided.shape and raw.shape[2] == 4
    assert not np.array_equal(raw[:, :, 3], guided[:, :, 3])


@pytest.mark.parametrize(("args", "message"), [
    (["--refine", "fancy"], "--refine 'fancy': unknown; use one of none, guided, matting"),
    (["--refine", "matting", "--fg-threshold", "300"], "--fg-threshold 300: must be a whole number from 1 to 255"),
    (["--refine", "matting", "--bg-threshold", "250"], "--bg-threshold 250 must be below --fg-threshold 240"),
    (["--post", "blur"], "--post 'blur': unknown"),
    (["-o", "{tmp}/cut.jpg", "--output", "cutout"], "JPEG cannot hold the cut-out's alpha"),
    (["-o", "{tmp}/out.gif"], "unknown image type '.gif'"),
    (["-o", "{tmp}/out", "--watch-timeout", "1"], "--watch-timeout needs --watch"),
    (["-o", "{tmp}/out", "--watch"], "--watch needs one input folder"),
])
def test_bad_values_are_one_line_errors(tmp_path, photo, args, message):
    # no model is loaded for these: a missing file as MODEL proves they fail first
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    out = [] if "-o" in args else ["-o", tmp_path / "x.png"]
    result = u2deploy("predict", "u2net_test", photo, *out, *args)
    stderr = result.stderr.decode().replace(f"{tmp_path}/", "")
    assert result.returncode == 1 and message in stderr, stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1 and len(stderr.strip()) <= 160 + len("u2deploy predict: error: ")


def test_watch_processes_new_files_once_and_stops_on_ctrl_c(tmp_path, photo, model):
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    (inbox / "first.jpg").write_bytes(photo.read_bytes())
    process = subprocess.Popen([sys.executable, "-m", "u2deploy", "predict", str(model), str(inbox), "-o",
                                str(out), "--watch"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: (out / "first.png").exists(), process)
        stamp = (out / "first.png").stat().st_mtime_ns
        (inbox / "second.jpg").write_bytes(photo.read_bytes())
        _wait_for(lambda: (out / "second.png").exists(), process)
        time.sleep(1.5)  # several polls: nothing is redone
        assert (out / "first.png").stat().st_mtime_ns == stamp
    finally:
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr.decode()
    assert b"wrote 2 mask(s)" in stdout and stderr.decode().count("first.jpg ->") == 1


def test_watch_timeout_ends_a_quiet_watch(tmp_path, photo, model):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.jpg").write_bytes(photo.read_bytes())
    result = u2deploy("predict", model, inbox, "-o", tmp_path / "out", "--watch", "--watch-timeout", "2",
                      "--format", "webp", "--output", "cutout")
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "out" / "a.webp").mode == "RGBA"


def _wait_for(condition, process, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"watch ended early: {process.stderr.read().decode()}")
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the watch")
        time.sleep(0.2)

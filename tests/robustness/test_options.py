"""Options that make no sense are refused up front in one line (issue 14: 5, 10)."""

from __future__ import annotations

import pytest
from PIL import Image

from u2deploy.cli import main


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err


@pytest.fixture()
def image(tmp_path):
    path = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(path)
    return path


@pytest.mark.parametrize("option, message", [
    (["--size", "100000"], "size 100000: each side must be 1..4096"),
    (["--size", "320x0"], "size 320x0: each side must be 1..4096"),
    (["--threads", "-4"], "--threads -4: must be at least 1"),
    (["--threads", "0"], "--threads 0: must be at least 1"),
    (["--max-pixels", "-1"], "--max-pixels '-1': must be a positive number"),
])  # fmt: skip
def test_predict_refuses_nonsense_options(tmp_path, image, tiny_checkpoint, capsys, option, message):
    assert main(["predict", str(tiny_checkpoint), str(image), "-o", str(tmp_path / "out"), *option]) == 1
    assert message in _error(capsys)


def test_data_synth_bounds_the_size_before_allocating(tmp_path, capsys):
    assert main(["data", "synth", str(tmp_path / "d"), "--count", "1", "--size", "100000"]) == 1
    assert "size 100000: each side must be 1..4096" in _error(capsys)
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("option, message", [
    (["--input-loop", "-5"], "--input-loop -5: must be at least -1 (-1 plays forever)"),
    (["--input-width", "0", "--input-height", "0"], "--input-width 0: must be at least 1"),
    (["--input-width", "640", "--input-height", "-2"], "--input-height -2: must be at least 1"),
    (["--timeout", "-1"], "--timeout -1: must be more than 0 seconds"),
    (["--timeout", "0"], "--timeout 0: must be more than 0 seconds"),
    (["--bitrate", "0"], "--bitrate 0: must be at least 1"),
    (["--threads", "-4"], "--threads -4: must be at least 1"),
])  # fmt: skip
def test_stream_refuses_nonsense_options(tmp_path, image, tiny_checkpoint, capsys, option, message):
    args = ["stream", str(tiny_checkpoint), "--source", str(image.parent), "--sink", str(tmp_path / "out"), *option]
    assert main(args) == 1
    assert message in _error(capsys)

"""`u2deploy predict`, `info` and `weights` as a user runs them (subprocesses: real exit codes and stderr)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image


def u2deploy(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "u2deploy", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)  # fmt: skip


@pytest.fixture()
def image_folder(tmp_path, photos):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(photos["coffee"]).save(folder / "coffee.jpg")
    Image.fromarray(photos["chelsea"]).save(folder / "chelsea.png")
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return folder


def test_predict_writes_every_good_image_and_reports_the_bad_one(tmp_path, image_folder, tiny_checkpoint):
    out = tmp_path / "out"
    result = u2deploy("predict", tiny_checkpoint, image_folder, "-o", out, "--batch", "2")
    assert result.returncode == 1
    assert "corrupt.jpg: not a readable image" in result.stderr and "Traceback" not in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["chelsea.png", "coffee.png"]
    mask = np.asarray(Image.open(out / "coffee.png"))
    assert mask.shape == (400, 600) and mask.dtype == np.uint8
    assert "wrote 2 mask(s)" in result.stdout and "1 input(s) skipped" in result.stdout


@pytest.mark.parametrize("output, mode, channels", [("cutout", "RGBA", 4), ("composite", "RGB", 3)])
def test_predict_cutout_and_composite(tmp_path, image_folder, tiny_checkpoint, output, mode, channels):
    out = tmp_path / "out"
    result = u2deploy("predict", tiny_checkpoint, image_folder / "chelsea.png", "-o", out, "--output", output,
                      "--background", "0,177,64", "--mode", "reference")
    assert result.returncode == 0, result.stderr
    written = Image.open(out / "chelsea.png")
    assert written.mode == mode and written.size == (451, 300)


@pytest.mark.parametrize("args, message", [
    (["missing_model.pth", "{img}"], "missing_model.pth: no such model file"),
    (["{ckpt}", "{tmp}/nothing_here"], "nothing_here: no such file or folder"),
    (["{ckpt}", "{tmp}/*.nope"], "pattern matches no files"),
    (["{ckpt}", "{img}", "--background", "red"], "--background red: not R,G,B"),
    (["{ckpt}", "{img}", "--size", "abc"], "cannot read size 'abc'"),
])  # fmt: skip
def test_predict_user_errors_are_one_line(tmp_path, image_folder, tiny_checkpoint, args, message):
    args = [a.format(ckpt=tiny_checkpoint, tmp=tmp_path, img=image_folder / "coffee.jpg") for a in args]
    extra = ["--output", "composite"] if "--background" in args else []
    result = u2deploy("predict", *args, "-o", tmp_path / "out", *extra)
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_info_reports_parameters_size_and_gflops():
    result = u2deploy("info", "u2netp", "--size", "288")
    assert result.returncode == 0, result.stderr
    assert "1,131,181" in result.stdout and "32.00" in result.stdout and "1x3x288x288" in result.stdout


def test_info_of_a_checkpoint(tiny_checkpoint):
    result = u2deploy("info", tiny_checkpoint)
    assert result.returncode == 0 and "u2net_test" in result.stdout


def test_weights_list_and_path(tmp_path):
    env = {"U2DEPLOY_HOME": str(tmp_path)}
    listing = u2deploy("weights", "list", env=env)
    assert listing.returncode == 0
    for name in ("u2net", "u2netp", "u2net_human_seg", "u2net_portrait"):
        assert name in listing.stdout
    assert f"cache: {tmp_path}" in listing.stdout
    assert u2deploy("weights", "path", env=env).stdout.strip() == str(tmp_path)


def test_weights_get_from_a_file_of_the_wrong_network(tmp_path):
    bogus = tmp_path / "bogus.pth"
    bogus.write_bytes(b"nope")
    result = u2deploy("weights", "get", "u2net", "--from", bogus, env={"U2DEPLOY_HOME": str(tmp_path)})
    assert result.returncode == 1 and f"{bogus}: not a PyTorch checkpoint" in result.stderr
    assert not (tmp_path / "weights").exists()  # nothing was copied into the cache

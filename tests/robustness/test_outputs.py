"""Outputs never destroy inputs, never leave partial files, and fail in one line (issue 14: 1, 2, 9)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from u2deploy.cli import main


def _images(folder, names=("good.jpg", "good.png", "other.png")):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / name)
    return {name: (folder / name).read_bytes() for name in names}


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.startswith("u2deploy ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_predict_into_the_input_folder_refuses_to_replace_an_input(tmp_path, tiny_checkpoint, capsys):
    folder = tmp_path / "photos"
    before = _images(folder)
    code = main(["predict", str(tiny_checkpoint), str(folder), "-o", str(folder), "--size", "64"])
    assert code == 1
    assert "would replace input" in _one_error_line(capsys)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # nothing touched, nothing added


def test_predict_refuses_an_input_reached_through_another_spelling_or_a_link(tmp_path, tiny_checkpoint, capsys):
    folder = tmp_path / "photos"
    before = _images(folder, ("shot.png",))
    link = tmp_path / "link"
    link.symlink_to(folder)
    code = main(["predict", str(tiny_checkpoint), str(folder / "shot.png"), "-o", str(link / ".." / "link"),
                 "--size", "64"])  # fmt: skip
    assert code == 1 and "would replace input" in _one_error_line(capsys)
    assert (folder / "shot.png").read_bytes() == before["shot.png"]


def test_predict_writes_beside_inputs_when_nothing_clashes(tmp_path, tiny_checkpoint, capsys):
    folder = tmp_path / "photos"
    _images(folder, ("a.jpg", "b.jpg"))
    assert main(["predict", str(tiny_checkpoint), str(folder), "-o", str(folder), "--size", "64"]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["a.jpg", "a.png", "b.jpg", "b.png"]


def test_predict_out_an_existing_file_is_one_line(tmp_path, tiny_checkpoint, capsys):
    _images(tmp_path / "in", ("a.png",))
    existing = tmp_path / "taken.txt"
    existing.write_text("keep me")
    code = main(["predict", str(tiny_checkpoint), str(tmp_path / "in"), "-o", str(existing)])
    assert code == 1 and "is an existing file" in _one_error_line(capsys)
    assert existing.read_text() == "keep me"


def test_predict_read_only_output_is_one_line(tmp_path, tiny_checkpoint, capsys, monkeypatch):
    _images(tmp_path / "in", ("a.png",))

    def refuse(*args, **kwargs):  # as root chmod cannot make a folder read-only: fail as the kernel would
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr("u2deploy._io.tempfile.TemporaryFile", refuse)
    code = main(["predict", str(tiny_checkpoint), str(tmp_path / "in"), "-o", str(tmp_path / "out")])
    assert code == 1 and "permission denied" in _one_error_line(capsys)


def test_predict_disk_full_stops_in_one_line_without_a_partial_file(tmp_path, tiny_checkpoint, capsys, monkeypatch):
    _images(tmp_path / "in", ("a.png", "b.png"))
    out = tmp_path / "out"
    original = Path.write_bytes
    calls = []

    def write_bytes(self, data):  # every result is encoded in memory, then written through this
        calls.append(self)
        if len(calls) == 2:  # the second result: half written, then the disk is full
            original(self, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    code = main(["predict", str(tiny_checkpoint), str(tmp_path / "in"), "-o", str(out), "--size", "64"])
    line = _one_error_line(capsys)
    assert code == 1 and "the disk is full" in line and "b.png" in line
    assert sorted(os.listdir(out)) == ["a.png"]  # the first result stays, no temp or partial file


def _video(path, frames=3):
    cv2 = pytest.importorskip("cv2")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (32, 24))
    for index in range(frames):
        writer.write(np.full((24, 32, 3), index * 40, np.uint8))
    writer.release()
    return path.read_bytes()


@pytest.mark.parametrize("spelling", ["same", "dotdot", "symlink", "hardlink"])
def test_stream_sink_that_is_the_source_is_refused(tmp_path, spelling, capsys):
    source = tmp_path / "clip.avi"
    before = _video(source)
    sink = {"same": source, "dotdot": tmp_path / "sub" / ".." / "clip.avi",
            "symlink": tmp_path / "alias.avi", "hardlink": tmp_path / "hard.avi"}[spelling]  # fmt: skip
    (tmp_path / "sub").mkdir()
    if spelling == "symlink":
        sink.symlink_to(source)
    elif spelling == "hardlink":
        os.link(source, sink)
    code = main(["stream", "missing-model.onnx", "--source", str(source), "--sink", str(sink), "--headless"])
    assert code == 1 and "is the source" in _one_error_line(capsys)
    assert source.read_bytes() == before


def test_stream_frames_into_the_source_folder_are_refused(tmp_path, capsys):
    _images(tmp_path / "frames", ("000000.png", "000001.png"))
    code = main(["stream", "missing-model.onnx", "--source", str(tmp_path / "frames"), "--sink",
                 str(tmp_path / "frames"), "--headless"])  # fmt: skip
    assert code == 1 and "folder the source reads" in _one_error_line(capsys)


def _refuse_writes(monkeypatch):
    def refuse(*args, **kwargs):  # as root chmod cannot make a folder read-only: fail as the kernel would
        raise PermissionError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("u2deploy._io.tempfile.TemporaryFile", refuse)


@pytest.mark.parametrize("command", [
    ["export", "{ckpt}", "--fmt", "onnx", "-o", "{out}/"],
    ["export", "{ckpt}", "--fmt", "onnx", "-o", "{out}/model.onnx"],
    ["train", "--data", "{tmp}", "--out", "{out}"],
    ["data", "synth", "{out}", "--count", "1", "--size", "32"],
])  # fmt: skip
def test_read_only_outputs_fail_in_one_line_before_any_work(tmp_path, tiny_checkpoint, capsys, monkeypatch, command):
    _refuse_writes(monkeypatch)
    args = [a.format(ckpt=tiny_checkpoint, out=tmp_path / "out", tmp=tmp_path) for a in command]
    assert main(args) == 1
    assert "the file system is read-only; choose a writable folder" in _one_error_line(capsys)


def test_disk_full_during_data_synth_is_one_line(tmp_path, capsys, monkeypatch):
    def full(image, path, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr("u2deploy.train.synth._save", full)
    assert main(["data", "synth", str(tmp_path / "d"), "--count", "2", "--size", "32"]) == 1
    assert "synth_00000.jpg: the disk is full; free some space" in _one_error_line(capsys)


def test_stream_frames_beside_a_source_video_are_allowed(tmp_path):
    from u2deploy.cli.stream import refuse_overwriting_source
    from u2deploy.pipeline import parse_sink, sink_from_uri, source_from_uri

    _video(tmp_path / "clip.avi")
    source = source_from_uri(str(tmp_path / "clip.avi"))
    refuse_overwriting_source(source, [sink_from_uri(parse_sink(str(tmp_path)))])  # frames 000000.png... beside it

"""Choosing, checking, hashing and batching calibration images; every bad input is one clear line."""

from __future__ import annotations

import numpy as np
import pytest

from tests.calibration.conftest import COUNT, write_images
from u2deploy.calibration import CalibrationSource, select_images
from u2deploy.calibration.source import pixel_sha256
from u2deploy.cli import main
from u2deploy.errors import InputError
from u2deploy.spec import spec_for_task

SPEC = spec_for_task("sod", arch="u2net_test", input_size=64)


def test_images_are_chosen_by_seed_and_batched_through_the_shared_preprocessing(tmp_path):
    from u2deploy.processing import preprocess

    folder = write_images(tmp_path / "many", count=12)
    first, again, other = (select_images(folder, COUNT, seed) for seed in (0, 0, 1))
    assert first.files == again.files and first.files != other.files and first.found == 12
    assert first.list_sha256 == again.list_sha256 != other.list_sha256

    source = CalibrationSource(first, SPEC, batch_size=3, progress=False)
    batches = list(source)
    assert len(source) == len(batches) == 3  # 8 images in batches of 3: the last is filled up
    assert all(b.shape == (3, 3, 64, 64) and b.dtype == np.float32 for b in batches)
    np.testing.assert_array_equal(batches[0][0], preprocess(first.files[0], SPEC, mode="reference")[0][0])
    np.testing.assert_array_equal(batches[-1][-1], batches[0][0])


def test_the_description_and_digest_follow_content_selection_and_preprocessing(tmp_path):
    folder = write_images(tmp_path / "set")
    source = CalibrationSource(select_images(folder, COUNT), SPEC, progress=False)
    record = source.describe()
    assert record["count"] == COUNT and record["seed"] == 0 and len(record["files"]) == COUNT
    assert record["preprocessing"]["input_size"] == [64, 64] and record["sha256"] == source.digest

    resized = CalibrationSource(select_images(folder, COUNT), SPEC.replace(input_size=(96, 96)), progress=False)
    assert resized.digest != source.digest
    write_images(folder, count=1, seed=5)  # img_00.png gets other pixels
    assert CalibrationSource(select_images(folder, COUNT), SPEC, progress=False).digest != source.digest


def test_a_glob_selects_images(tmp_path):
    folder = write_images(tmp_path / "glob", count=10)
    (folder / "notes.txt").write_text("not an image")
    images = select_images(f"{folder}/img_0*.png", COUNT)
    assert len(images.files) == COUNT and images.found == 10


@pytest.mark.parametrize("make, count, message", [
    (lambda p: p / "missing", COUNT, "no such folder; pass a folder of images or a glob"),
    (lambda p: (p / "empty").mkdir() or p / "empty", COUNT, "the folder holds no images"),
    (lambda p: f"{p}/*.jpeg", COUNT, "the pattern matches nothing"),
    (lambda p: write_images(p / "few", count=6), 12, "6 images found; INT8 calibration needs at least 8: add 2 or "
                                                     "more"),
    (lambda p: write_images(p / "six", count=6), 8, "6 images found; INT8 calibration needs at least 8: add 2"),
    (lambda p: write_images(p / "fine"), 4, "--calib-count 4: INT8 calibration needs at least 8 images"),
    (lambda p: write_images(p / "file") / "img_00.png", COUNT, "is a file; pass a folder of images"),
])  # fmt: skip
def test_bad_calibration_inputs_are_one_clear_error(tmp_path, make, count, message):
    with pytest.raises(InputError, match="^" + r"(--calib|--calib-count)") as info:
        select_images(make(tmp_path), count)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_fewer_images_than_the_count_are_all_used_and_said_in_one_line(tmp_path):
    folder = write_images(tmp_path / "nine", count=9)
    notes: list[str] = []
    images = select_images(folder, 64, notify=notes.append)
    assert len(images.files) == images.found == 9
    assert notes == [f"--calib {folder}: 9 images found, fewer than --calib-count 64; calibrating on all 9 "
                     "(64+ photos like the deployment's are better)"]
    assert len(notes[0]) <= 160 + len(str(folder))
    select_images(folder, 9, notify=notes.append)
    select_images(folder, 8, notify=notes.append)
    assert len(notes) == 1  # enough images: nothing to say


def test_an_unreadable_image_is_named(tmp_path):
    folder = write_images(tmp_path / "broken")
    (folder / "img_03.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(InputError, match=r"calibration image .*img_03.png: not a readable image .*remove it from "
                                         r"--calib or fix it"):
        select_images(folder, COUNT)


def test_a_held_out_parity_photo_is_refused_by_content(tmp_path):
    from PIL import Image

    from u2deploy.samples import sample_photo

    folder = write_images(tmp_path / "leak")
    Image.fromarray(sample_photo("rocket")).save(folder / "renamed.png")  # same pixels, another name
    with pytest.raises(InputError, match="renamed.png is the held-out parity photo 'rocket'"):
        select_images(folder, COUNT + 1)
    assert pixel_sha256(np.zeros((2, 2), np.uint8)) != pixel_sha256(np.zeros((2, 2), np.uint16))


@pytest.mark.parametrize("args, message", [
    (["--int8"], "--int8 needs calibration images: add --calib DIR|GLOB"),
    (["--int8", "--calib", "{empty}"], "the folder holds no images"),
    (["--int8", "--calib", "{images}", "--calib-count", "3"], "--calib-count 3: INT8 calibration needs at least 8"),
    (["--int8", "--calib", "{few}"], "5 images found; INT8 calibration needs at least 8: add 3 or more"),
])  # fmt: skip
def test_cli_refuses_bad_calibration_before_loading_the_model(capsys, tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    images, few = write_images(tmp_path / "images"), write_images(tmp_path / "few", count=5)
    args = [a.format(empty=tmp_path / "empty", images=images, few=few) for a in args]
    code = main(["export", str(tmp_path / "no_such_model.pth"), "--fmt", "onnx", *args])
    err = capsys.readouterr().err
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1, err
    assert not list(tmp_path.glob("*.onnx"))


def test_cli_says_in_one_line_that_it_uses_every_image_of_a_short_folder(capsys, tmp_path):
    images = write_images(tmp_path / "images", count=9)
    code = main(["export", str(tmp_path / "no_such_model.pth"), "--fmt", "onnx", "--int8", "--calib", str(images)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and "9 images found, fewer than --calib-count 64; calibrating on all 9" in err[0], err
    assert "no_such_model.pth" in err[-1]  # then the next problem, the model, as usual


def test_options_refuse_an_unknown_method_or_float_scope():
    from u2deploy.errors import UnsupportedOptionError
    from u2deploy.export import CalibrationOptions, ExportOptions

    with pytest.raises(UnsupportedOptionError, match="--calib-method kl: use minmax, entropy, percentile, mse"):
        ExportOptions(precision="int8", calibration=CalibrationOptions("photos/", method="kl")).validate()
    with pytest.raises(UnsupportedOptionError, match="keep_float 'all': use fuse, heads, none"):
        ExportOptions(precision="int8", calibration=CalibrationOptions("photos/", keep_float="all")).validate()
    with pytest.raises(UnsupportedOptionError, match="bias_correction 'full' is not available for the Q/DQ graph"):
        ExportOptions(precision="int8", calibration=CalibrationOptions("photos/", bias_correction="full")).validate()
    full = CalibrationOptions("photos/", bias_correction="full")
    ExportOptions(fmt="openvino", precision="int8", calibration=full).validate()  # OpenVINO's default anyway

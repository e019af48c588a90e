"""Bad images: each is one `InputError` naming the file, and never stops the other inputs (issue 14: 3, 4, 12)."""

from __future__ import annotations

import io
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image

from u2deploy import processing
from u2deploy.errors import InputError


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and header declaring `width` x `height`, with a few bytes of data.

    This is what a decompression bomb looks like before decoding: a small file, a huge image.
    """
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))  # fmt: skip


def encoded(fmt: str, size=(48, 64), seed: int = 0, **params) -> bytes:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size[0], 0:size[1]]
    array = np.dstack([xx * 4, yy * 5, (xx + yy) * 2]).astype(np.uint8) + rng.integers(0, 20, (*size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **params)
    return buffer.getvalue()


@pytest.mark.parametrize("width, height", [(100_000, 100_000), (12_000, 12_000)])
def test_a_huge_header_is_refused_before_decoding(tmp_path, width, height):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(width, height))
    tracemalloc.start()
    try:
        expected = rf"bomb.png: declares {width * height // 10**6} megapixels, above the limit of 100;"
        with pytest.raises(InputError, match=expected):
            processing.load_image(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5e6  # the header was read, no pixel buffer was allocated


def test_the_pixel_limit_is_an_option_and_an_environment_variable(tmp_path, monkeypatch):
    path = tmp_path / "small.png"
    path.write_bytes(encoded("PNG"))
    with pytest.raises(InputError, match="small.png: declares 3072 pixels, above the limit of 0.001"):
        processing.load_image(path, max_pixels=1000)
    monkeypatch.setenv(processing.MAX_PIXELS_ENV, "1000")
    with pytest.raises(InputError, match="above the limit"):
        processing.load_image(path)
    assert processing.load_image(path, max_pixels=64 * 48).shape == (48, 64, 3)
    monkeypatch.setenv(processing.MAX_PIXELS_ENV, "lots")
    with pytest.raises(InputError, match=r"\$U2DEPLOY_MAX_PIXELS 'lots': must be a positive number"):
        processing.load_image(path)


def test_a_raised_limit_above_pillows_own_lets_a_genuine_image_through(tmp_path):
    # Pillow refuses more than 2 x 89.5 MP on its own; a user who raised our limit is obeyed.
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(20_000, 10_000))
    with pytest.raises(InputError, match="not a readable image"):  # past the limits, then truncated data
        processing.load_image(path, max_pixels=300_000_000)


def test_a_large_non_image_is_sniffed_not_read_whole(tmp_path):
    path = tmp_path / "huge.jpg"
    with open(path, "wb") as handle:  # a sparse 1 GB file of zeros named .jpg
        handle.truncate(1 << 30)
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match="huge.jpg: not a readable image"):
            processing.load_image(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5e6


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_pixels_are_refused(tmp_path, bad):
    array = np.random.default_rng(0).random((20, 30)).astype(np.float32)
    array[3, 4] = bad
    with pytest.raises(InputError, match="image array: 1 pixel value"):
        processing.load_image(array)
    path = tmp_path / "float.tiff"
    Image.fromarray(array, mode="F").save(path)
    with pytest.raises(InputError, match=r"float.tiff: 1 pixel value\(s\) are NaN or infinite"):
        processing.preprocess(path, processing.ModelSpec(input_size=(32, 32)), mode="reference")


def test_a_non_finite_model_output_is_an_error_not_a_black_map():
    from u2deploy.errors import BackendError
    from u2deploy.spec import spec_for_task

    fused = np.zeros((1, 1, 32, 32), np.float32)
    fused[0, 0, 1, 1] = np.nan
    with pytest.raises(BackendError, match="NaN or inf"):
        processing.postprocess(fused, spec_for_task("sod"), (10, 10), mode="reference")


def test_the_api_raises_input_error_for_a_bomb(tmp_path, tiny_checkpoint):
    from u2deploy import Runtime

    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(100_000, 100_000))
    with Runtime(tiny_checkpoint, input_size=64) as runtime:
        with pytest.raises(InputError, match="bomb.png: declares 10000 megapixels"):
            runtime.predict(str(path))
        with pytest.raises(InputError, match="<bytes>: declares 10000 megapixels"):
            runtime.predict(path.read_bytes())


def test_predict_reports_a_bomb_in_one_line_and_writes_every_other_input(tmp_path, tiny_checkpoint, capsys):
    from u2deploy.cli import main

    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(3):
        (folder / f"good{index}.png").write_bytes(encoded("PNG", seed=index))
    (folder / "bomb.png").write_bytes(png_header_only(100_000, 100_000))
    code = main(["predict", str(tiny_checkpoint), str(folder), "-o", str(tmp_path / "out"), "--size", "64",
                 "--batch", "4"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert [line for line in err.splitlines() if "bomb.png" in line] == [
        f"skipped: {folder / 'bomb.png'}: declares 10000 megapixels, above the limit of 100; raise it "
        "with --max-pixels or $U2DEPLOY_MAX_PIXELS if the image is genuine"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good0.png", "good1.png", "good2.png"]


def test_a_stream_folder_source_skips_a_bomb_and_reads_the_rest(tmp_path, capsys):
    from u2deploy.pipeline.sources import ImageFolderSource

    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "a.png").write_bytes(encoded("PNG", seed=1))
    (folder / "b.png").write_bytes(png_header_only(100_000, 100_000))
    (folder / "c.jpg").write_bytes(encoded("JPEG", seed=2))
    source = ImageFolderSource(str(folder), loop=1)
    frames = list(source)
    assert len(frames) == 4 and all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for f in frames)
    expected = np.asarray(Image.open(folder / "a.png"))[:, :, ::-1]  # BGR, like cv2.imread
    np.testing.assert_array_equal(frames[0], expected)
    assert capsys.readouterr().err.count("b.png: declares 10000 megapixels") == 1  # reported once, not on every loop


# --------------------------------------------------------------------------------------------
# Fuzz: damaged real files always give an image or an InputError, never another exception.

FORMATS = [("PNG", {}), ("JPEG", {"quality": 90}), ("JPEG", {"progressive": True}), ("TIFF", {}),
           ("WEBP", {}), ("GIF", {}), ("BMP", {})]  # fmt: skip


def _damaged(data: bytes, rng: np.random.Generator) -> bytes:
    kind = rng.integers(3)
    if kind == 0:  # truncated
        return data[: int(rng.integers(0, len(data)))]
    damaged = bytearray(data)
    for _ in range(int(rng.integers(1, 9))):  # flipped bytes, mostly near the header where parsers branch
        position = int(rng.integers(0, min(len(data), 200) if kind == 1 else len(data)))
        damaged[position] ^= int(rng.integers(1, 256))
    return bytes(damaged)


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about the damaged TIFF tags it skips
@pytest.mark.parametrize("fmt, params", FORMATS, ids=[f"{f}{'-p' if p.get('progressive') else ''}" for f, p in FORMATS])
def test_fuzzed_files_give_an_image_or_an_input_error(fmt, params):
    rng = np.random.default_rng(len(fmt))
    original = encoded(fmt, **params)
    for _ in range(60):
        data = _damaged(original, rng)
        try:
            image = processing.load_image(data)
        except InputError as exc:
            assert str(exc).startswith("<bytes>: ") and "\n" not in str(exc)
        else:
            assert image.ndim in (2, 3) and image.shape[0] >= 1 and image.shape[1] >= 1

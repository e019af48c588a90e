"""PyAV video sinks, decoded back: H.264 MP4, transparent WebM/MOV whose alpha is the mask, audio, timing."""

from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest

from tests.pipeline.conftest import HEIGHT, WIDTH, block_column, indexed_frame
from u2deploy import processing
from u2deploy.pipeline import Pipeline, sink_from_uri

av = pytest.importorskip("av")

from u2deploy.pipeline.av_io import AvVideoSink, read_video_rgba  # noqa: E402

FPS = 10


def make_clip(path, count: int = 12, audio: bool = True):
    """An H.264 MP4 of indexed frames at 10 fps, with a 440 Hz AAC tone as long as the video."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=FPS, options={"crf": "0", "preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv444p"
        sound = container.add_stream("aac", rate=44100, layout="mono") if audio else None
        for index in range(count):
            frame = av.VideoFrame.from_ndarray(indexed_frame(index), format="bgr24")
            frame.pts = index
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if sound is not None:
            samples = int(44100 * count / FPS)
            tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(samples) / 44100)).astype(np.float32)[None]
            for start in range(0, samples, 1024):
                chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, start:start + 1024]), format="fltp",
                                                   layout="mono")
                chunk.sample_rate, chunk.pts = 44100, start
                container.mux(sound.encode(chunk))
            container.mux(sound.encode(None))
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("av") / "talk.mp4")


def expected_masks(runtime, clip_path) -> list[np.ndarray]:
    """The masks of the source frames as the pipeline decodes them (OpenCV)."""
    import cv2

    capture = cv2.VideoCapture(str(clip_path))
    masks = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        masks.append(processing.to_mask_u8(runtime.predict(frame, channel_order="bgr")))
    capture.release()
    return masks


def _streams(path):
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        return video.codec_context.name, video.average_rate, bool(container.streams.audio), float(container.duration / 1e6)


@pytest.mark.parametrize(("suffix", "codec", "tolerance"), [(".webm", "vp9", 6.0), (".mov", "prores", 1.0)])
def test_transparent_video_alpha_is_the_mask(tiny_runtime, clip, tmp_path, suffix, codec, tolerance):
    out = tmp_path / f"cut{suffix}"
    sink = sink_from_uri(str(out))
    assert isinstance(sink, AvVideoSink) and sink.supports_alpha
    Pipeline(tiny_runtime, str(clip), sink, "cutout").run()
    frames, rate, has_audio = read_video_rgba(out)
    masks = expected_masks(tiny_runtime, clip)
    assert len(frames) == len(masks) == 12 and rate == FPS and has_audio
    assert _streams(out)[0] == codec and sink.pixel_format.startswith("yuva")
    for index, (frame, mask) in enumerate(zip(frames, masks, strict=True)):
        error = np.abs(frame[:, :, 3].astype(float) - mask).mean()
        other = np.abs(frame[:, :, 3].astype(float) - masks[(index + 6) % 12]).mean()
        assert error < tolerance and error < other, (index, error, other)
        assert block_column(np.ascontiguousarray(frame[:, :, 2::-1])) == index  # colour in order too


def test_mp4_is_h264_with_the_source_audio_and_timing(tiny_runtime, clip, tmp_path):
    out = tmp_path / "out.mp4"
    Pipeline(tiny_runtime, str(clip), str(out), "matte").run()
    codec, rate, has_audio, duration = _streams(out)
    assert (codec, rate, has_audio) == ("h264", FPS, True)
    assert duration == pytest.approx(1.2, abs=0.15)
    frames, _, _ = read_video_rgba(out)
    mattes = [processing.composite(indexed_frame(i), tiny_runtime.predict(indexed_frame(i), channel_order="bgr"),
                                   (0, 0, 0), channel_order="bgr") for i in range(12)]
    for index, frame in enumerate(frames):  # 12 frames, each closest to the matte of its own input
        errors = [np.abs(frame[:, :, :3].astype(int) - matte).mean() for matte in mattes]
        assert int(np.argmin(errors)) == index


def test_audio_is_cut_at_the_video_length_and_reencoded_for_webm(tiny_runtime, clip, tmp_path):
    out = tmp_path / "short.webm"
    Pipeline(tiny_runtime, str(clip), str(out), "mask", max_frames=5).run()
    with av.open(str(out)) as container:
        audio = container.streams.audio[0]
        assert audio.codec_context.name == "opus"  # AAC is not allowed in WebM
        last = max(float(p.pts * p.time_base) for p in container.demux(audio) if p.pts is not None)
    assert last < 0.5 + 0.1


def test_dropped_frames_keep_their_time(tmp_path):
    out = tmp_path / "gaps.mp4"
    sink = AvVideoSink(out, fps=FPS)
    sink.open()
    for index in (3, 4, 7, 8):  # a live source dropped 5 and 6
        sink.write(indexed_frame(index), index)
    sink.close()
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        times = sorted(float(frame.pts * stream.time_base) for frame in container.decode(stream))
    assert times == pytest.approx([0.0, 0.1, 0.4, 0.5], abs=1e-3)
    assert not list(tmp_path.glob(".*partial*"))


def test_no_audio_source_and_bad_sizes(tmp_path):
    sink = AvVideoSink(tmp_path / "odd.webm", fps=Fraction(30000, 1001))
    sink.open()
    from u2deploy.errors import InputError

    with pytest.raises(InputError, match="needs an even width and height"):
        sink.write(np.zeros((63, 95, 4), np.uint8), 0)
    sink.close()
    assert not (tmp_path / "odd.webm").exists() and not list(tmp_path.glob(".*partial*"))


def test_cli_stream_cutout_to_webm_with_o(tiny_export, clip, tmp_path):
    out = tmp_path / "out.webm"
    command = [sys.executable, "-m", "u2deploy", "stream", str(tiny_export("onnx").path), "--source", str(clip),
               "--effect", "cutout", "-o", str(out), "--headless", "--threads", "1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    frames, rate, has_audio = read_video_rgba(out)
    assert len(frames) == 12 and rate == FPS and has_audio and frames[0].shape == (HEIGHT, WIDTH, 4)
    assert len({int(f[:, :, 3].mean()) for f in frames}) > 1 or frames[0][:, :, 3].std() > 0  # alpha carries the mask

"""File sources with the real (tiny, seeded) model: every frame, in order, at the right size and codec."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from u2deploy import processing
from u2deploy.errors import InputError, UnsupportedOptionError
from u2deploy.pipeline import ImageSequenceSink, Pipeline, Source, VideoFileSink, choose_batch

from .conftest import HEIGHT, WIDTH, block_column, indexed_frame, read_video, write_video


def expected_masks(runtime, count: int) -> list[np.ndarray]:
    return [processing.to_mask_u8(runtime.predict(indexed_frame(i), channel_order="bgr")) for i in range(count)]


def test_file_to_image_sequence_keeps_every_frame_in_order(tiny_runtime, video_12, tmp_path):
    sink = ImageSequenceSink(tmp_path / "masks")
    stats = Pipeline(tiny_runtime, str(video_12), sink, "mask").run()
    assert (stats.frames_read, stats.frames_out, stats.dropped, stats.stopped_by) == (12, 12, 0, "end of stream")
    written = sorted((tmp_path / "masks").iterdir())
    assert [p.name for p in written] == [f"{i:06d}.png" for i in range(12)]
    import cv2

    masks = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in written]
    expected = expected_masks(tiny_runtime, 12)
    assert not np.array_equal(expected[0], expected[11])  # the model really sees different frames
    for mask, want in zip(masks, expected, strict=True):
        assert mask.shape == (HEIGHT, WIDTH)
        assert np.abs(mask.astype(int) - want).max() <= 1


@pytest.mark.parametrize("batch", [4, 5])
def test_batched_inference_matches_frame_by_frame(tiny_runtime, video_12, tmp_path, batch):
    frames = list(Pipeline(tiny_runtime, str(video_12), batch=batch))
    assert len(frames) == 12  # 12 is not a multiple of 5: the last short batch is kept
    expected = expected_masks(tiny_runtime, 12)
    for i, (frame, saliency) in enumerate(frames):
        assert block_column(frame) == i
        assert np.abs(processing.to_mask_u8(saliency).astype(int) - expected[i]).max() <= 1


def test_file_to_video_frame_count_order_size_and_codec(tiny_runtime, video_12, tmp_path):
    out = tmp_path / "out.avi"
    sink = VideoFileSink(out, codec="FFV1")
    stats = Pipeline(tiny_runtime, str(video_12), sink, "color:0,0,0").run()  # black background keeps the block
    frames, fourcc, fps = read_video(out)
    assert stats.frames_out == len(frames) == 12
    assert fourcc.lower() == "ffv1" and fps == pytest.approx(10.0)  # the source's rate
    assert all(f.shape == (HEIGHT, WIDTH, 3) for f in frames)
    assert not list(tmp_path.glob(".*partial*"))


def test_mp4_default_codec_is_h264_and_order_survives_lossy_coding(tiny_runtime, video_12, tmp_path):
    out = tmp_path / "out.mp4"
    Pipeline(tiny_runtime, str(video_12), str(out), "matte").run()
    frames, fourcc, _ = read_video(out)
    assert len(frames) == 12 and fourcc in ("avc1", "h264")  # H.264 through PyAV (u2deploy[video])
    source = [processing.composite(indexed_frame(i), tiny_runtime.predict(indexed_frame(i), channel_order="bgr"),
                                   (0, 0, 0), channel_order="bgr")[:, :, ::-1] for i in range(12)]
    for i, frame in enumerate(frames):  # each output frame is closest to the matte of its own input
        errors = [np.abs(frame.astype(int) - s).mean() for s in source]
        assert int(np.argmin(errors)) == i


def test_image_folder_source_and_max_frames(tiny_runtime, tmp_path):
    import cv2

    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(6):
        cv2.imwrite(str(folder / f"f{i:02d}.png"), indexed_frame(i))
    frames = list(Pipeline(tiny_runtime, str(folder), max_frames=4))
    assert [block_column(f) for f, _ in frames] == [0, 1, 2, 3]
    globbed = list(Pipeline(tiny_runtime, str(folder / "*.png"), max_frames=8, batch=4))
    assert [block_column(f) for f, _ in globbed] == [0, 1, 2, 3, 4, 5]  # the source ends before max_frames


def test_stop_drains_what_is_queued(tiny_runtime, tmp_path):
    """Stopping mid-file loses nothing that was read: every read frame is written and the file plays."""
    video = write_video(tmp_path / "long.avi", [indexed_frame(i % 12) for i in range(300)])
    out = tmp_path / "out.avi"
    pipeline = Pipeline(tiny_runtime, str(video), VideoFileSink(out, codec="FFV1"), "mask", batch=2)
    threading.Timer(0.3, pipeline.stop, args=("test",)).start()
    stats = pipeline.run()
    frames, _, _ = read_video(out)
    assert stats.stopped_by == "test"
    assert 0 < stats.frames_read < 300
    assert stats.frames_out == stats.frames_read == len(frames)
    expected = expected_masks(tiny_runtime, 12)
    for i, frame in enumerate(frames):  # lossless: each frame is the mask of its own input, in order
        assert np.abs(frame[:, :, 0].astype(int) - expected[i % 12]).max() <= 1


def test_smoothing_is_an_average_over_time(tiny_runtime, video_12):
    plain = [s for _, s in Pipeline(tiny_runtime, str(video_12), max_frames=3)]
    smooth = [s for _, s in Pipeline(tiny_runtime, str(video_12), max_frames=3, smoothing=0.5)]
    assert np.array_equal(smooth[0], plain[0])
    still = np.r_[0:10, 54:64]  # rows away from the moving block: there it is the plain average (moving pixels are not averaged)
    np.testing.assert_allclose(smooth[1][still], (0.5 * plain[1] + 0.5 * plain[0])[still], atol=1e-6)
    with pytest.raises(InputError, match="smoothing 1.0"):
        Pipeline(tiny_runtime, str(video_12), smoothing=1.0)


def test_choose_batch():
    assert choose_batch(None, None, live=False) == 1
    assert choose_batch(None, 8, live=False) == 8
    assert choose_batch(4, None, live=False) == 4  # a fixed-batch artifact runs full batches
    assert choose_batch(4, None, live=True) == 1
    with pytest.raises(UnsupportedOptionError, match="fixed batch of 1"):
        choose_batch(1, 4, live=False)
    with pytest.raises(UnsupportedOptionError, match="live sources"):
        choose_batch(None, 4, live=True)


class FastCamera(Source):
    """A live source that produces frames far faster than the model runs."""

    live = True

    def __init__(self, count: int) -> None:
        super().__init__("fake-camera")
        self.count, self.sent = count, 0

    def read(self):
        if self.sent >= self.count:
            return None
        time.sleep(0.002)
        self.sent += 1
        return indexed_frame(self.sent % 25)


def test_live_source_keeps_the_newest_frame_and_counts_drops(tiny_runtime):
    pipeline = Pipeline(tiny_runtime, FastCamera(150), "null")
    stats = pipeline.run()
    assert stats.frames_read == 150
    assert stats.dropped > 0
    assert stats.frames_out + stats.dropped == stats.frames_read


def test_iterator_break_stops_the_threads(tiny_runtime, video_12):
    pipeline = Pipeline(tiny_runtime, str(video_12))
    for index, (frame, saliency) in enumerate(pipeline):
        assert frame.shape == (HEIGHT, WIDTH, 3) and saliency.shape == (HEIGHT, WIDTH)
        assert saliency.dtype == np.float32 and 0.0 <= saliency.min() <= saliency.max() <= 1.0
        if index == 1:
            break
    assert all(not t.is_alive() for t in pipeline._threads)
    assert pipeline.stats.stopped_by == "stopped by the caller"

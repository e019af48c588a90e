"""The display sink's logic (stats overlay, q to stop) with OpenCV's window calls faked: CI has no GUI."""

from __future__ import annotations

import numpy as np

from u2deploy.pipeline import DisplaySink, Pipeline, gstreamer
from u2deploy.pipeline.sinks import draw_text


def test_draw_text_draws_on_a_copy():
    image = np.zeros((64, 96), np.uint8)
    out = draw_text(image, "12 frames 30.0 fps")
    assert out.shape == (64, 96, 3) and out.any() and not image.any()


def test_display_shows_stats_and_q_stops_the_stream(tiny_runtime, video_12, monkeypatch):
    import cv2

    shown: list[np.ndarray] = []
    monkeypatch.setattr(gstreamer, "opencv_has_gui", lambda: True)
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setattr(cv2, "namedWindow", lambda *a: None)
    monkeypatch.setattr(cv2, "imshow", lambda title, image: shown.append(image))
    monkeypatch.setattr(cv2, "waitKey", lambda delay: ord("q") if len(shown) == 4 else -1)
    monkeypatch.setattr(cv2, "getWindowProperty", lambda *a: 1.0)
    monkeypatch.setattr(cv2, "destroyWindow", lambda *a: None)
    sink = DisplaySink(0)
    sink.annotate("status line")  # what the pipeline passes once a second with show_stats
    stats = Pipeline(tiny_runtime, str(video_12), sink, "mask", show_stats=True).run()
    assert stats.stopped_by == "window closed"
    assert 4 <= stats.frames_out <= 12 and stats.frames_out == stats.frames_read  # queued frames still shown
    from u2deploy.processing import to_mask_u8

    from .conftest import indexed_frame

    plain = to_mask_u8(tiny_runtime.predict(indexed_frame(0), channel_order="bgr"))
    assert shown[0].shape == (64, 96, 3)  # the grey mask, expanded to draw on
    drawn = np.any(shown[0] != plain[:, :, None], axis=2)
    assert drawn[:20].sum() > 20 and np.abs(shown[0][40:].astype(int) - plain[40:, :, None]).max() <= 1

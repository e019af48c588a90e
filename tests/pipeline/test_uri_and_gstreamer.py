"""URI parsing and the GStreamer strings built for CSI, V4L2, RTSP and RTP (no GStreamer needed)."""

from __future__ import annotations

import re

import pytest

from u2deploy.errors import InputError, MissingDependencyError, UnsupportedOptionError
from u2deploy.pipeline import gstreamer, parse_sink, parse_source, sink_from_uri, source_from_uri


@pytest.mark.parametrize(("text", "scheme", "location"), [
    ("csi://0", "csi", "0"),
    ("v4l2:///dev/video1", "v4l2", "/dev/video1"),
    ("2", "v4l2", "2"),
    ("rtsp://user:pw@cam.local:554/live", "rtsp", "rtsp://user:pw@cam.local:554/live"),
    ("file:///data/clip.mp4", "file", "/data/clip.mp4"),
    ("clips/*.png", "file", "clips/*.png"),
    ("gst://videotestsrc ! appsink", "gst", "videotestsrc ! appsink"),
])
def test_parse_source(text, scheme, location):
    uri = parse_source(text)
    assert (uri.scheme, uri.location) == (scheme, location)


@pytest.mark.parametrize(("text", "scheme"), [
    ("out.mp4", "file"), ("display://0", "display"), ("rtp://10.0.0.2:5000", "rtp"),
    ("rtsp://server:8554/cam", "rtsp"), ("null", "null"), ("gst://appsrc ! fakesink", "gst"),
])
def test_parse_sink(text, scheme):
    assert parse_sink(text).scheme == scheme


def test_unknown_scheme_lists_valid_ones_and_suggests():
    with pytest.raises(InputError, match=r"unknown source scheme 'cis'.*did you mean 'csi://'.*csi://N.*v4l2.*rtsp.*gst://"):
        parse_source("cis://0")
    with pytest.raises(InputError, match=r"unknown sink scheme 'udp'.*display://0.*rtp://host:port.*null"):
        parse_sink("udp://1.2.3.4:5000")


def test_malformed_addresses():
    with pytest.raises(InputError, match="csi://N"):
        parse_source("csi://front")
    with pytest.raises(InputError, match="rtp://host:port"):
        parse_sink("rtp://10.0.0.2")


def test_csi_pipeline_has_requested_sizes_rate_and_flip():
    text = gstreamer.csi_pipeline(1, 960, 540, 60, sensor_size=(1920, 1080), flip="rotate-180")
    elements = text.split(" ! ")
    assert elements == [
        "nvarguscamerasrc sensor-id=1",
        "video/x-raw(memory:NVMM),width=1920,height=1080,format=NV12,framerate=60/1",
        "nvvidconv flip-method=2",
        "video/x-raw,width=960,height=540,format=BGRx",
        "videoconvert",
        "video/x-raw,format=BGR",
        "appsink drop=true max-buffers=1 sync=false",
    ]


def test_csi_pipeline_defaults_sensor_to_output_size():
    text = gstreamer.csi_pipeline(0, 1280, 720, 30)
    assert "width=1280,height=720,format=NV12,framerate=30/1" in text
    assert "flip-method=0" in text
    with pytest.raises(InputError, match="unknown flip 'upside'"):
        gstreamer.csi_pipeline(flip="upside")


@pytest.mark.parametrize("jetson", [True, False])
def test_v4l2_pipeline(jetson):
    mjpeg = gstreamer.v4l2_pipeline("/dev/video2", 640, 480, 15, codec="mjpeg", jetson=jetson)
    assert mjpeg.startswith("v4l2src device=/dev/video2 ! image/jpeg,width=640,height=480,framerate=15/1 ! ")
    assert ("nvv4l2decoder mjpeg=1" in mjpeg) == jetson and ("jpegdec" in mjpeg) != jetson
    raw = gstreamer.v4l2_pipeline("/dev/video0", 1280, 720, 30, codec="raw", jetson=jetson)
    assert "video/x-raw,format=YUY2,width=1280,height=720,framerate=30/1" in raw
    for text in (mjpeg, raw):
        assert text.endswith("videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false")


@pytest.mark.parametrize("jetson", [True, False])
def test_rtsp_pipeline(jetson):
    text = gstreamer.rtsp_pipeline("rtsp://cam/live", 640, 360, 15, codec="h265", latency_ms=100, jetson=jetson)
    assert text.startswith("rtspsrc location=rtsp://cam/live latency=100 ! rtph265depay ! h265parse ! ")
    assert ("nvv4l2decoder" in text) == jetson and ("avdec_h265" in text) != jetson
    assert re.search(r"width=640,height=360", text)
    assert "videorate drop-only=true ! video/x-raw,framerate=15/1" in text
    assert text.endswith("appsink drop=true max-buffers=1 sync=false")
    native = gstreamer.rtsp_pipeline("rtsp://cam/live", jetson=jetson)
    assert "width=" not in native and "videorate" not in native


@pytest.mark.parametrize("jetson", [True, False])
def test_rtp_sink_pipeline(jetson):
    text = gstreamer.rtp_sink_pipeline("10.0.0.2", 5000, fps=25, bitrate_kbps=2000, jetson=jetson)
    assert text.startswith("appsrc ! ")
    assert ("nvv4l2h264enc bitrate=2000000" in text) == jetson
    assert ("x264enc tune=zerolatency speed-preset=ultrafast bitrate=2000 key-int-max=25" in text) != jetson
    assert text.endswith("rtph264pay config-interval=1 pt=96 ! udpsink host=10.0.0.2 port=5000 sync=false async=false")
    assert gstreamer.rtsp_sink_pipeline("rtsp://srv:8554/out", jetson=False).endswith("rtspclientsink location=rtsp://srv:8554/out")


def test_gstreamer_missing_names_the_wheel_fix(monkeypatch):
    monkeypatch.setattr(gstreamer, "opencv_has_gstreamer", lambda: False)
    source = source_from_uri("csi://0", width=640, height=480, fps=30)
    assert "width=640,height=480,format=BGRx" in source.pipeline
    with pytest.raises(MissingDependencyError, match=r"csi://0 needs an OpenCV built with GStreamer.*"
                                                     r"pip uninstall opencv-python opencv-python-headless"):
        source.open()
    sink = sink_from_uri("rtp://127.0.0.1:5000")
    with pytest.raises(MissingDependencyError, match="rtp://127.0.0.1:5000 needs an OpenCV built with GStreamer"):
        sink.open(30)


def test_rtsp_without_gstreamer_uses_ffmpeg(monkeypatch):
    monkeypatch.setattr(gstreamer, "opencv_has_gstreamer", lambda: False)
    source = source_from_uri("rtsp://cam/live", width=320, height=240)
    assert not source.use_gstreamer and source.size == (320, 240)
    with pytest.raises(UnsupportedOptionError, match="input rate needs the GStreamer path"):
        source_from_uri("rtsp://cam/live", fps=10)


def test_options_that_do_not_apply_are_rejected(video_12):
    with pytest.raises(UnsupportedOptionError, match="--input-rate"):
        source_from_uri(str(video_12), fps=30)
    with pytest.raises(UnsupportedOptionError, match="--input-flip"):
        source_from_uri("v4l2:///dev/video0", flip="rotate-180")
    with pytest.raises(UnsupportedOptionError, match="--output-codec"):
        sink_from_uri("frames/", codec="mp4v")


def test_credentials_stay_out_of_messages(monkeypatch):
    monkeypatch.setattr(gstreamer, "opencv_has_gstreamer", lambda: False)
    source = source_from_uri("rtsp://admin:hunter2@cam.local:554/live")
    assert source.name == "rtsp://admin:***@cam.local:554/live"
    assert source.target == "rtsp://admin:hunter2@cam.local:554/live"  # the real URL still opens it

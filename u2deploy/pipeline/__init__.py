"""Camera and video pipelines: a source, a `Runtime`, an effect and sinks, run concurrently.

    from u2deploy import Runtime
    from u2deploy.pipeline import Pipeline

    with Runtime("u2netp.onnx") as rt:
        Pipeline(rt, "csi://0", "out.mp4", "blur").run()

Sources and sinks are named by URIs (`uri`), built as small classes a user can subclass
(`sources`, `sinks`); effects turn a frame and its mask into the output (`effects`); GStreamer
strings for Jetson cameras and streaming are in `gstreamer`. Nothing here imports OpenCV until a
source, sink or effect is used.
"""

from __future__ import annotations

from .av_io import AvVideoSink, read_video_rgba
from .effects import EFFECTS, Effect, parse_effect
from .pipeline import MaskSmoother, Pipeline, PipelineStats, choose_batch
from .sinks import (
    DisplaySink,
    GstSink,
    ImageSequenceSink,
    NullSink,
    RtpSink,
    RtspSink,
    Sink,
    VideoFileSink,
    sink_from_uri,
)
from .sources import (
    CameraSource,
    CsiSource,
    GstSource,
    ImageFolderSource,
    OpenCVSource,
    RtspSource,
    Source,
    VideoFileSource,
    source_from_uri,
)
from .uri import URI, parse_sink, parse_source

__all__ = [
    "Pipeline",
    "PipelineStats",
    "MaskSmoother",
    "choose_batch",
    "Effect",
    "EFFECTS",
    "parse_effect",
    "Source",
    "OpenCVSource",
    "VideoFileSource",
    "ImageFolderSource",
    "CameraSource",
    "CsiSource",
    "RtspSource",
    "GstSource",
    "source_from_uri",
    "Sink",
    "NullSink",
    "VideoFileSink",
    "AvVideoSink",
    "read_video_rgba",
    "ImageSequenceSink",
    "DisplaySink",
    "GstSink",
    "RtpSink",
    "RtspSink",
    "sink_from_uri",
    "URI",
    "parse_source",
    "parse_sink",
]

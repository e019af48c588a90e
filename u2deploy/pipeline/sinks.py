"""Where output frames go: video files, image sequences, a window, RTP/RTSP, or nowhere.

A `Sink` is opened before the first frame (so an unwritable folder or a missing GUI fails before
any work), receives uint8 images with `write`, and is closed exactly once, also after errors and
Ctrl-C: `close` is what makes a video file playable, so the pipeline always calls it.

Video files are written to a hidden ``.NAME.partial.EXT`` beside the target and renamed when
closed: the target is either absent or a complete, finalised file, never a half-written one
(an MP4 without its index, for example, does not play at all).

Subclass `Sink` for anything else: only `write` is required. `supports_alpha` and
`supports_grey` tell the pipeline whether BGRA and single-channel images can be passed as they
are; otherwise they are flattened (see `effects.adapt_for_sink`).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .._deps import available
from .._io import atomic_write_bytes
from ..errors import InputError, MissingDependencyError, UnsupportedOptionError
from . import gstreamer
from .uri import URI, is_pattern, parse_sink, redact

__all__ = [
    "Sink",
    "NullSink",
    "VideoFileSink",
    "ImageSequenceSink",
    "DisplaySink",
    "GstSink",
    "RtpSink",
    "RtspSink",
    "VIDEO_CODECS",
    "CODEC_ALIASES",
    "sink_from_uri",
]

#: container suffix -> FOURCCs tried in order when no codec is given. mp4v comes first for MP4
#: because every FFmpeg-enabled OpenCV has it; PyPI wheels have no H.264 encoder ('avc1' fails),
#: so ask for it explicitly (--output-codec h264) where your OpenCV has one. With PyAV installed,
#: .mp4/.webm/.mov without --output-codec go through `av_io.AvVideoSink` (H.264, alpha) instead.
VIDEO_CODECS: dict[str, tuple[str, ...]] = {
    ".mp4": ("mp4v", "avc1"),
    ".mov": ("mp4v", "avc1"),
    ".mkv": ("mp4v", "MJPG", "avc1"),
    ".avi": ("MJPG", "XVID"),  # OpenCV's built-in AVI writer handles MJPG even without FFmpeg
    ".webm": ("VP80", "VP90"),
}

#: friendly codec names -> FOURCC
CODEC_ALIASES: dict[str, str] = {
    "h264": "avc1", "avc": "avc1", "mpeg4": "mp4v", "mjpeg": "MJPG", "mjpg": "MJPG", "xvid": "XVID",
    "ffv1": "FFV1", "vp8": "VP80", "vp9": "VP90", "png": "png ",
}

IMAGE_SEQUENCE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")
_ALPHA_SUFFIXES = (".png", ".tif", ".tiff", ".webp")


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's log while probing codecs: a failed probe is expected, not an error."""
    import cv2

    previous = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(previous)


def _check_writable_dir(folder: Path, target: str) -> None:
    """Create `folder` and prove a file can be written there, before any frame is produced."""
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".u2deploy-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputError(f"cannot write {target}: {exc.strerror or exc} ({folder}); choose a writable folder") from None


class Sink:
    """Base class for outputs.

    Attributes:
        name: how messages and the summary refer to the sink.
        supports_alpha: BGRA images can be written as they are.
        supports_grey: single-channel images can be written as they are.
        stop_requested: set by a sink that wants the stream to end (a closed window).
    """

    supports_alpha: bool = False
    supports_grey: bool = False

    def __init__(self, name: str = "sink") -> None:
        self.name = name
        self.stop_requested = False
        self.frames = 0

    def check(self) -> None:
        """Raise now if this sink cannot work on this machine (cheap; nothing is created)."""

    def open(self, fps: float | None = None) -> None:
        """Check the output can be used; `fps` is the source's nominal rate (None if unknown)."""

    def write(self, image: np.ndarray, index: int) -> None:
        """Write one uint8 image (BGR, BGRA or grey); `index` is the frame's number in the source."""
        raise NotImplementedError

    def annotate(self, text: str) -> None:
        """Status text (FPS, timings) that sinks showing frames to a person may draw."""

    def close(self) -> None:
        """Finalise the output; called once, also after errors and Ctrl-C."""

    def describe(self) -> dict[str, Any]:
        return {"sink": self.name, "frames": self.frames}

    def __enter__(self) -> Sink:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NullSink(Sink):
    """Discards frames (benchmarks, or when only the Python iterator is used)."""

    supports_alpha = supports_grey = True

    def __init__(self) -> None:
        super().__init__("null")

    def write(self, image: np.ndarray, index: int) -> None:
        self.frames += 1


# --------------------------------------------------------------------------------------------
# Files


def _fourcc(codec: str) -> str:
    fourcc = CODEC_ALIASES.get(codec.lower(), codec)
    if len(fourcc) != 4:
        raise InputError(f"codec '{codec}' is not a FOURCC (4 characters, e.g. mp4v, MJPG, FFV1) "
                         f"or a known name ({', '.join(CODEC_ALIASES)})")
    return fourcc


class VideoFileSink(Sink):
    """A video file through `cv2.VideoWriter`, opened at the first frame (whose size it takes).

    Args:
        path: ``.mp4``, ``.mov``, ``.mkv``, ``.avi`` or ``.webm``.
        fps: frame rate written in the file; None uses the source's rate, else 30.
        codec: a FOURCC or name (``h264``, ``mp4v``, ``MJPG``, ``FFV1``...); None tries
            `VIDEO_CODECS` for the suffix in order. A codec asked for is never replaced by another.
    """

    def __init__(self, path: str | os.PathLike, fps: float | None = None, codec: str | None = None) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in VIDEO_CODECS:
            raise InputError(f"{self.path}: unknown video type '{suffix}'; use one of {', '.join(VIDEO_CODECS)}")
        if fps is not None and fps <= 0:
            raise InputError(f"output rate {fps}: must be positive")
        super().__init__(str(self.path))
        self.codecs = (_fourcc(codec),) if codec else VIDEO_CODECS[suffix]
        self.explicit_codec = codec is not None
        self.fps = fps
        self.partial = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self.codec: str | None = None
        self._writer: Any = None
        self._size: tuple[int, int] | None = None

    def open(self, fps: float | None = None) -> None:
        _check_writable_dir(self.path.parent, str(self.path))
        self.fps = self.fps or fps or 30.0

    def write(self, image: np.ndarray, index: int) -> None:
        size = (image.shape[1], image.shape[0])
        if self._writer is None:
            self._open_writer(size)
        elif size != self._size:
            raise InputError(f"{self.path}: frame {index} is {size[0]}x{size[1]} but the video is "
                             f"{self._size[0]}x{self._size[1]}; a video needs one frame size (write an image folder instead)")
        self._writer.write(image)
        self.frames += 1

    def _open_writer(self, size: tuple[int, int]) -> None:
        import cv2

        for codec in self.codecs:
            with _quiet_opencv():
                writer = cv2.VideoWriter(str(self.partial), cv2.VideoWriter_fourcc(*codec), float(self.fps), size, True)
            if writer.isOpened():
                self._writer, self.codec, self._size = writer, codec, size
                return
            writer.release()
        self.partial.unlink(missing_ok=True)
        raise self._codec_error()

    def _codec_error(self) -> UnsupportedOptionError:
        ffmpeg = gstreamer.opencv_build_flag("FFMPEG")
        tried = ", ".join(c.strip() for c in self.codecs)
        if self.explicit_codec:
            others = ", ".join(VIDEO_CODECS[self.path.suffix.lower()])
            return UnsupportedOptionError(f"{self.path}: codec '{tried}' cannot write {self.path.suffix} with this OpenCV "
                                          f"(FFmpeg: {ffmpeg}); try {others}, or leave --output-codec out")
        return UnsupportedOptionError(f"{self.path}: no codec for {self.path.suffix} works in this OpenCV (tried {tried}; "
                                      f"FFmpeg: {ffmpeg}); write .avi (MJPG is built into OpenCV) or an image folder")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()  # writes the index/trailer: without it the file does not play
            self._writer = None
            os.replace(self.partial, self.path)
        self.partial.unlink(missing_ok=True)

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(codec=self.codec, fps=self.fps, size=list(self._size) if self._size else None)
        return info


class ImageSequenceSink(Sink):
    """One image per frame, named by the frame's index in the source (gaps show dropped frames).

    Args:
        target: a folder (frames are ``000000.png``...) or a printf pattern such as
            ``out/frame_%05d.jpg``. PNG, TIFF and WebP keep alpha (for cut-outs).
    """

    supports_grey = True

    def __init__(self, target: str | os.PathLike) -> None:
        text = str(target)
        if is_pattern(text):
            self.pattern = text
        else:
            self.pattern = str(Path(text) / "%06d.png")
        self.suffix = Path(self.pattern).suffix.lower()
        if self.suffix not in IMAGE_SEQUENCE_SUFFIXES:
            raise InputError(f"{text}: unknown image type '{self.suffix}'; use one of {', '.join(IMAGE_SEQUENCE_SUFFIXES)}")
        self.supports_alpha = self.suffix in _ALPHA_SUFFIXES
        super().__init__(text)

    def path_for(self, index: int) -> Path:
        return Path(self.pattern % index)

    def open(self, fps: float | None = None) -> None:
        _check_writable_dir(Path(self.pattern).parent, self.name)

    def write(self, image: np.ndarray, index: int) -> None:
        import cv2

        path = self.path_for(index)
        ok, data = cv2.imencode(self.suffix, image)
        if not ok:
            raise InputError(f"{path}: OpenCV could not encode a {image.shape} image as {self.suffix}")
        atomic_write_bytes(path, data.tobytes())  # a reader of the folder never sees half a frame
        self.frames += 1


# --------------------------------------------------------------------------------------------
# Display and network


class DisplaySink(Sink):
    """A window (``display://0``); q or Esc, or closing the window, ends the stream.

    OpenCV's HighGUI wants one thread, the main one on some platforms, so the pipeline calls
    sinks from the thread that runs it.
    """

    supports_grey = True

    def __init__(self, index: int = 0, title: str | None = None) -> None:
        super().__init__(f"display://{index}")
        self.title = title or f"u2deploy {self.name}"
        self._text = ""
        self._opened = False

    def check(self) -> None:
        import cv2

        if not gstreamer.opencv_has_gui():
            raise MissingDependencyError(
                f"{self.name} needs an OpenCV with a GUI, but OpenCV {cv2.__version__} has 'GUI: NONE' (opencv-python-"
                "headless); pip uninstall opencv-python-headless && pip install opencv-python (on Jetson: uninstall "
                "the wheel and use JetPack's OpenCV), or run with --headless and a file sink")
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise InputError(f"{self.name}: no display ($DISPLAY is not set, e.g. over ssh); set DISPLAY=:0 on the "
                             "device's own screen, or run with --headless and a file or rtp:// sink")

    def open(self, fps: float | None = None) -> None:
        import cv2

        self.check()
        try:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)
        except cv2.error as exc:
            raise InputError(f"{self.name}: cannot open a window ({str(exc).strip().splitlines()[-1]})") from None
        self._opened = True

    def annotate(self, text: str) -> None:
        self._text = text

    def write(self, image: np.ndarray, index: int) -> None:
        import cv2

        if self._text:
            image = draw_text(image, self._text)
        cv2.imshow(self.title, image)
        key = cv2.waitKey(1) & 0xFF
        if key in (27, ord("q")) or cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            self.stop_requested = True
        self.frames += 1

    def close(self) -> None:
        if self._opened:
            import cv2

            with contextlib.suppress(cv2.error):
                cv2.destroyWindow(self.title)
                cv2.waitKey(1)
            self._opened = False


def draw_text(image: np.ndarray, text: str) -> np.ndarray:
    """A copy of `image` with `text` lines in the top-left corner, legible on any background."""
    import cv2

    out = image.copy() if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    scale = max(0.4, out.shape[0] / 900)
    for row, line in enumerate(text.splitlines()):
        origin = (8, int((row + 1) * 24 * scale + 4))
        cv2.putText(out, line, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, line, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


class GstSink(Sink):
    """Any GStreamer pipeline starting with ``appsrc``, written by OpenCV's GStreamer backend."""

    def __init__(self, pipeline: str = "", name: str | None = None, fps: float | None = None) -> None:
        super().__init__(name or f"gst://{pipeline}")
        self.pipeline, self.fps = pipeline, fps
        self._writer: Any = None

    def build(self, fps: float) -> str:
        """The pipeline text; subclasses build it once the rate is known."""
        if not self.pipeline.lstrip().startswith("appsrc"):
            raise InputError(f"{self.name}: an output pipeline must start with appsrc, e.g. 'appsrc ! videoconvert ! ...'")
        return self.pipeline

    def check(self) -> None:
        gstreamer.require_gstreamer(self.name)

    def open(self, fps: float | None = None) -> None:
        self.check()
        self.fps = self.fps or fps or 30.0
        self.pipeline = self.build(self.fps)

    def write(self, image: np.ndarray, index: int) -> None:
        if self._writer is None:
            self._start((image.shape[1], image.shape[0]))
        self._writer.write(image)
        self.frames += 1

    def _start(self, size: tuple[int, int]) -> None:
        import cv2

        writer = cv2.VideoWriter(self.pipeline, cv2.CAP_GSTREAMER, 0, float(self.fps), size, True)
        if not writer.isOpened():
            raise InputError(f"{self.name}: GStreamer could not start '{self.pipeline}'; check that each element "
                             "exists (gst-inspect-1.0 NAME) and try the pipeline with gst-launch-1.0 videotestsrc")
        self._writer = writer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None


class RtpSink(GstSink):
    """H.264/H.265 over RTP/UDP (``rtp://host:port``); hardware encoder on Jetson."""

    def __init__(self, host: str, port: int, *, codec: str = "h264", bitrate_kbps: int = 4000,
                 fps: float | None = None) -> None:
        super().__init__(name=f"rtp://{host}:{port}", fps=fps)
        self.host, self.port, self.codec, self.bitrate_kbps = host, port, codec, bitrate_kbps
        gstreamer.rtp_sink_pipeline(host, port, codec=codec, jetson=False)  # validate the codec now

    def build(self, fps: float) -> str:
        return gstreamer.rtp_sink_pipeline(self.host, self.port, fps=fps, codec=self.codec, bitrate_kbps=self.bitrate_kbps)


class RtspSink(GstSink):
    """Publish to an RTSP server (``rtsp://server:8554/path``, e.g. MediaMTX) with rtspclientsink."""

    def __init__(self, url: str, *, codec: str = "h264", bitrate_kbps: int = 4000, fps: float | None = None) -> None:
        super().__init__(name=redact(url), fps=fps)
        self.url, self.codec, self.bitrate_kbps = url, codec, bitrate_kbps
        gstreamer.rtsp_sink_pipeline(url, codec=codec, jetson=False)

    def build(self, fps: float) -> str:
        return gstreamer.rtsp_sink_pipeline(self.url, fps=fps, codec=self.codec, bitrate_kbps=self.bitrate_kbps)


# --------------------------------------------------------------------------------------------
# URI -> Sink


def sink_from_uri(uri: str | URI, *, fps: float | None = None, codec: str | None = None,
                  bitrate_kbps: int = 4000) -> Sink:
    """Build (not open) the sink a URI names.

    Args:
        uri: see `uri.SINK_SCHEMES`.
        fps: rate written into video files and streams; None takes the source's.
        codec: FOURCC or name for video files; ``h264``/``h265`` for rtp/rtsp.
        bitrate_kbps: rtp/rtsp encoder bit rate.
    """
    uri = uri if isinstance(uri, URI) else parse_sink(uri)
    if uri.scheme in ("rtp", "rtsp"):
        host, port = uri.host_port
        if uri.scheme == "rtp":
            return RtpSink(host, port, codec=codec or "h264", bitrate_kbps=bitrate_kbps, fps=fps)
        return RtspSink(uri.location, codec=codec or "h264", bitrate_kbps=bitrate_kbps, fps=fps)
    if uri.scheme == "gst":
        _reject(uri, output_codec=codec)
        return GstSink(uri.location, name=uri.text, fps=fps)
    if uri.scheme == "display":
        _reject(uri, output_codec=codec, output_rate=fps)
        return DisplaySink(int(uri.location or 0))
    if uri.scheme == "null":
        _reject(uri, output_codec=codec, output_rate=fps)
        return NullSink()
    return _file_sink(uri, fps, codec)


def _reject(uri: URI, **options: Any) -> None:
    """Options that mean nothing for this sink are errors, not silently ignored."""
    for name, value in options.items():
        if value:
            flag = "--" + name.replace("_", "-")
            raise UnsupportedOptionError(f"{flag} {value}: not used by sink '{uri.text}'; leave it out")


def _file_sink(uri: URI, fps: float | None, codec: str | None) -> Sink:
    location = uri.location
    suffix = Path(location).suffix.lower()
    if suffix in VIDEO_CODECS:
        from .av_io import AV_SUFFIXES, AvVideoSink

        if codec is None and suffix in AV_SUFFIXES and available("av"):
            return AvVideoSink(location, fps=fps)  # H.264 and alpha; --output-codec keeps OpenCV's writer
        return VideoFileSink(location, fps=fps, codec=codec)
    _reject(uri, output_codec=codec, output_rate=fps)
    if is_pattern(location) or not suffix or Path(location).is_dir() or location.endswith(("/", os.sep)):
        return ImageSequenceSink(location)
    if suffix in IMAGE_SEQUENCE_SUFFIXES:
        stem = Path(location).with_suffix("")
        raise InputError(f"{location}: a stream writes many frames; use a pattern such as {stem}_%06d{suffix} "
                         "or a folder")
    raise InputError(f"{location}: unknown output type '{suffix}'; use a video ({', '.join(VIDEO_CODECS)}), "
                     "a folder or an image pattern such as frames/%06d.png")

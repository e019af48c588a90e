"""Where frames come from: files, image folders, USB/V4L2 and CSI cameras, RTSP and GStreamer.

A `Source` hands out BGR uint8 frames, one `read()` at a time, and None at the end. `live`
tells the pipeline what to favour: a live source (camera, stream) keeps only the newest frame,
because latency matters more than completeness; a file source has every frame processed in
order. Subclass `Source` (or `OpenCVSource`) for anything else: only `read` is required.

Opening a live source has a timeout and waits for the first frame, so an unplugged camera or an
unreachable stream fails in seconds with one line naming it, instead of hanging.
"""

from __future__ import annotations

import glob
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..errors import InputError, UnsupportedOptionError
from . import gstreamer
from .uri import URI, is_pattern, parse_source, redact

__all__ = [
    "Source",
    "OpenCVSource",
    "VideoFileSource",
    "ImageFolderSource",
    "CameraSource",
    "RtspSource",
    "CsiSource",
    "GstSource",
    "IMAGE_SUFFIXES",
    "source_from_uri",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
T = TypeVar("T")


def call_with_timeout(function: Callable[[], T], timeout: float, what: str, hint: str) -> T:
    """Run a call that may block forever (opening a camera or a network stream) with a deadline.

    The call runs in a daemon thread; on timeout that thread is abandoned (OpenCV offers no way
    to cancel an open), which is safe because nothing else touches what it creates.
    """
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = function()
        except BaseException as exc:  # re-raised below, in the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=target, name="u2deploy-open", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise InputError(f"{what}: no answer within {timeout:g} s; {hint}")
    if "error" in result:
        raise result["error"]
    return result["value"]


class Source:
    """Base class for frame sources.

    Subclasses implement `read` and, where needed, `open`, `close` and `describe`.

    Attributes:
        live: True for cameras and streams (the pipeline keeps only the newest frame).
        name: how messages and the summary refer to the source.
    """

    live: bool = False

    def __init__(self, name: str = "source") -> None:
        self.name = name

    def check(self) -> None:
        """Raise now if this source cannot work on this machine (cheap; nothing is opened)."""

    def open(self) -> None:
        """Acquire the device or file; raise `InputError` naming the source if it cannot be used."""

    def read(self) -> np.ndarray | None:
        """The next HxWx3 BGR uint8 frame, or None when the source has ended."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the device or file; called once, also after errors."""

    @property
    def fps(self) -> float | None:
        """Nominal frame rate, when the source knows it (sinks use it for the output file)."""
        return None

    def describe(self) -> dict[str, Any]:
        return {"source": self.name, "live": self.live, "fps": self.fps}

    def __enter__(self) -> Source:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self):
        while (frame := self.read()) is not None:
            yield frame


def _resize(frame: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    if size is None or (frame.shape[1], frame.shape[0]) == size:
        return frame
    import cv2

    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


class OpenCVSource(Source):
    """A `cv2.VideoCapture` over a file, device, URL or GStreamer pipeline.

    Args:
        target: what `cv2.VideoCapture` opens (path, index, URL or pipeline string).
        api: an OpenCV backend id (``cv2.CAP_FFMPEG``, ``cv2.CAP_V4L2``, ``cv2.CAP_GSTREAMER``,
            ``cv2.CAP_ANY``).
        name: the URI, for messages.
        live: a camera or stream (drop old frames) rather than a file (every frame).
        params: open parameters (``[cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 5000, ...]``).
        props: properties set after opening, in order (V4L2 needs the FOURCC before the size).
        size: (width, height) to resize frames to in software; None keeps them.
        timeout: seconds allowed for opening and for the first frame of a live source.
        hint: the likely fix, appended to open errors.
        loop: file sources only: extra plays after the first (-1: forever).
    """

    def __init__(self, target: str | int, api: int, name: str, *, live: bool, params: Sequence[int] = (),
                 props: Sequence[tuple[int, float]] = (), size: tuple[int, int] | None = None,
                 timeout: float = 10.0, hint: str = "", loop: int = 0) -> None:
        super().__init__(name)
        self.target, self.api, self.live = target, api, live
        self.params, self.props, self.size = list(params), list(props), size
        self.timeout, self.hint, self.loop = timeout, hint, loop
        self._capture: Any = None
        self._pending: np.ndarray | None = None
        self._plays = 0

    def open(self) -> None:
        import cv2

        def create() -> Any:
            return cv2.VideoCapture(self.target, self.api, self.params)

        started = time.monotonic()
        # The hard deadline leaves a second for backends with their own open timeout (FFmpeg) to fire first.
        capture = call_with_timeout(create, self.timeout + 1.0, self.name, self.hint) if self.live else create()
        if not capture.isOpened():
            capture.release()
            waited = time.monotonic() - started
            why = f"no answer within {waited:.0f} s" if self.live and waited >= 0.9 * self.timeout else "could not open it"
            raise InputError(f"{self.name}: {why}; {self.hint}")
        for prop, value in self.props:
            capture.set(prop, value)
        self._capture = capture
        if self.live:  # an opened device that never delivers (e.g. a V4L2 metadata node) fails here
            self._pending = self._first_frame()

    def _first_frame(self) -> np.ndarray:
        ok, frame = call_with_timeout(self._capture.read, self.timeout, self.name, self.hint)
        if not ok or frame is None:
            raise InputError(f"{self.name}: opened, but no frame arrived; {self.hint}")
        return frame

    def read(self) -> np.ndarray | None:
        if self._pending is not None:
            frame, self._pending = self._pending, None
            return _resize(frame, self.size)
        ok, frame = self._capture.read()
        if not ok and self._rewind():
            ok, frame = self._capture.read()
        return _resize(frame, self.size) if ok else None

    def _rewind(self) -> bool:
        """Start a looped file again; False when there is nothing left to play."""
        if self.live or not (self.loop < 0 or self._plays < self.loop):
            return False
        import cv2

        self._plays += 1
        if not self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0):
            self._capture.release()
            self._capture = cv2.VideoCapture(self.target, self.api)
        return True

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    @property
    def fps(self) -> float | None:
        if self._capture is None:
            return None
        import cv2

        value = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        return value if 0 < value < 1000 else None

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        if self._capture is not None:
            import cv2

            info["backend"] = self._capture.getBackendName()
            info["size"] = [int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT))]
        return info


class VideoFileSource(OpenCVSource):
    """A video file (anything OpenCV's FFmpeg reads) or a ``frames/%06d.png`` image sequence."""

    def __init__(self, path: str | os.PathLike, *, size: tuple[int, int] | None = None, loop: int = 0) -> None:
        import cv2

        path = Path(path)
        if not is_pattern(path) and not path.is_file():
            raise InputError(f"{path}: no such file")
        api = cv2.CAP_IMAGES if is_pattern(path) else cv2.CAP_ANY
        super().__init__(str(path), api, str(path), live=False, size=size, loop=loop,
                         hint="not a video OpenCV can decode (check the file, or convert it with ffmpeg to H.264 mp4)")

    @property
    def frame_count(self) -> int | None:
        """Frames in the file as the container reports it (an estimate for some formats)."""
        if self._capture is None:
            return None
        import cv2

        count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
        return count if count > 0 else None


class ImageFolderSource(Source):
    """Images from a folder (sorted by name) or a glob, read as frames of a non-live stream.

    Frames of different sizes are allowed here; a video sink will refuse them, an image
    sequence sink will not.
    """

    def __init__(self, paths: str | os.PathLike | Sequence[str | os.PathLike], *,
                 size: tuple[int, int] | None = None, loop: int = 0) -> None:
        if isinstance(paths, (str, os.PathLike)):
            name, self.paths = str(paths), _list_images(str(paths))
        else:
            self.paths = [Path(p) for p in paths]
            name = str(self.paths[0]) if len(self.paths) == 1 else f"{len(self.paths)} images"
        if not self.paths:
            raise InputError(f"{name}: no images to read")
        super().__init__(name)
        self.size, self.loop = size, loop
        self._index = 0
        self.bad: set[Path] = set()  # reported once, skipped on later plays

    def read(self) -> np.ndarray | None:
        """The next readable image as BGR uint8; an unreadable one is reported once and skipped.

        Decoding goes through `processing.load_image`, so a decompression bomb, a non-image or
        NaN pixels cost one line on stderr, not the stream.
        """
        plays = self.loop + 1
        while len(self.bad) < len(self.paths):
            if self.loop >= 0 and self._index >= len(self.paths) * plays:
                return None
            path = self.paths[self._index % len(self.paths)]
            self._index += 1
            if path not in self.bad:
                frame = self._decode(path)
                if frame is not None:
                    return _resize(frame, self.size)
        raise InputError(f"{self.name}: none of its {len(self.paths)} image(s) is readable")

    def _decode(self, path: Path) -> np.ndarray | None:
        from .. import processing

        try:
            rgb = processing.to_rgb_u8(processing.load_image(path))
        except InputError as exc:
            self.bad.add(path)
            print(f"skipped: {exc}", file=sys.stderr, flush=True)
            return None
        return np.ascontiguousarray(rgb[:, :, ::-1])


def _list_images(spec: str) -> list[Path]:
    """A folder's images (sorted) or a glob's matches (sorted)."""
    path = Path(spec)
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not found:
            raise InputError(f"{path}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return found
    found = sorted(Path(p) for p in glob.glob(os.path.expanduser(spec), recursive=True) if Path(p).is_file())
    if not found:
        raise InputError(f"{spec}: pattern matches no files")
    return found


class CameraSource(OpenCVSource):
    """USB/V4L2 camera through OpenCV's V4L2 backend (works with the PyPI wheel).

    Args:
        device: ``/dev/videoN`` or an index.
        width, height, fps: format to ask for; the driver picks the nearest it supports, and
            `describe()` reports what it chose.
        codec: ``mjpeg`` asks for MJPEG (higher rates on USB 2), ``raw`` for YUYV, None leaves it.
        timeout: seconds allowed for opening and the first frame.
    """

    def __init__(self, device: str | int = 0, width: int | None = None, height: int | None = None,
                 fps: float | None = None, *, codec: str | None = None, timeout: float = 10.0) -> None:
        import cv2

        target = int(device) if str(device).isdigit() else str(device)
        props: list[tuple[int, float]] = []
        if codec is not None:
            if codec not in ("mjpeg", "raw"):
                raise InputError(f"unknown V4L2 input codec '{codec}'; valid: raw, mjpeg")
            props.append((cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*("MJPG" if codec == "mjpeg" else "YUYV"))))
        props += [(p, v) for p, v in ((cv2.CAP_PROP_FRAME_WIDTH, width), (cv2.CAP_PROP_FRAME_HEIGHT, height),
                                      (cv2.CAP_PROP_FPS, fps)) if v]
        props.append((cv2.CAP_PROP_BUFFERSIZE, 1))  # the driver's queue would otherwise add latency
        hint = ("check that the camera is connected and not used by another program (ls /dev/video*, "
                "v4l2-ctl --list-devices); a CSI camera needs csi://N instead")
        super().__init__(target, cv2.CAP_V4L2, f"v4l2://{device}", live=True, props=props, timeout=timeout, hint=hint)


class GstSource(OpenCVSource):
    """Any GStreamer pipeline ending in ``appsink``, opened by OpenCV's GStreamer backend."""

    def __init__(self, pipeline: str, *, live: bool = True, name: str | None = None, timeout: float = 10.0,
                 hint: str = "check the pipeline with gst-launch-1.0 (replace appsink with fakesink)") -> None:
        import cv2

        if "appsink" not in pipeline:
            raise InputError(f"gst://{pipeline}: a capture pipeline must end in appsink, "
                             "e.g. '... ! videoconvert ! video/x-raw,format=BGR ! appsink'")
        self.pipeline = pipeline
        super().__init__(pipeline, cv2.CAP_GSTREAMER, name or f"gst://{pipeline}", live=live, timeout=timeout, hint=hint)

    def check(self) -> None:
        gstreamer.require_gstreamer(self.name)

    def open(self) -> None:
        self.check()
        super().open()


class CsiSource(GstSource):
    """Jetson CSI camera (nvarguscamerasrc). See `gstreamer.csi_pipeline` for the arguments."""

    live = True

    def __init__(self, sensor_id: int = 0, width: int = 1280, height: int = 720, fps: float = 30, *,
                 flip: str | int = "none", sensor_size: tuple[int, int] | None = None,
                 sensor_mode: int | None = None, timeout: float = 10.0) -> None:
        pipeline = gstreamer.csi_pipeline(sensor_id, width, height, fps, flip=flip, sensor_size=sensor_size,
                                          sensor_mode=sensor_mode)
        hint = ("check the ribbon cable and the sensor id, and restart the camera daemon "
                "(sudo systemctl restart nvargus-daemon) if another program crashed while using it")
        super().__init__(pipeline, live=True, name=f"csi://{sensor_id}", timeout=timeout, hint=hint)


class RtspSource(OpenCVSource):
    """Network camera: GStreamer rtspsrc (hardware decode on Jetson) when OpenCV has GStreamer,
    else OpenCV's FFmpeg backend.

    Args:
        url: the ``rtsp://`` address.
        width, height: scale frames (in the GStreamer pipeline, or in software with FFmpeg).
        fps: drop frames down to this rate (GStreamer only).
        api: ``auto``, ``gstreamer`` or ``opencv`` (FFmpeg).
        codec: the stream's codec for the GStreamer depayloader (``h264`` or ``h265``);
            FFmpeg detects it.
        timeout: seconds allowed for connecting and for the first frame.
    """

    def __init__(self, url: str, width: int | None = None, height: int | None = None, fps: float | None = None, *,
                 api: str = "auto", codec: str | None = None, timeout: float = 10.0, latency_ms: int = 200) -> None:
        import cv2

        use_gst = api == "gstreamer" or (api == "auto" and gstreamer.opencv_has_gstreamer())
        hint = ("check the address, credentials and network (try it in VLC or ffplay); "
                "for TCP-only cameras set OPENCV_FFMPEG_CAPTURE_OPTIONS=rtsp_transport;tcp")
        self.use_gstreamer = use_gst
        if use_gst:
            pipeline = gstreamer.rtsp_pipeline(url, width, height, fps, codec=codec or "h264", latency_ms=latency_ms)
            super().__init__(pipeline, cv2.CAP_GSTREAMER, redact(url), live=True, timeout=timeout, hint=hint)
            return
        if fps:
            raise UnsupportedOptionError(f"{redact(url)}: an input rate needs the GStreamer path (videorate), and this OpenCV "
                                         "has no GStreamer; leave the rate out, FFmpeg delivers the stream's own rate")
        ms = int(timeout * 1000)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        size = (width, height) if width and height else None
        super().__init__(url, cv2.CAP_FFMPEG, redact(url), live=True, params=params, size=size, timeout=timeout, hint=hint)

    def check(self) -> None:
        if self.use_gstreamer:
            gstreamer.require_gstreamer(self.name)

    def open(self) -> None:
        self.check()
        super().open()


# --------------------------------------------------------------------------------------------
# URI -> Source


def _reject(uri: URI, **options: Any) -> None:
    """Options that mean nothing for this kind of source are errors, not silently ignored."""
    given = [name for name, value in options.items() if value not in (None, False, "none", 0)]
    if given:
        names = ", ".join(f"--{n.replace('_', '-')}" for n in given)
        raise UnsupportedOptionError(f"{names}: not used by {uri.scheme} source '{uri.text}'; leave it out")


def _size(width: int | None, height: int | None) -> tuple[int, int] | None:
    if (width is None) != (height is None):
        raise InputError("give both --input-width and --input-height, or neither")
    return (width, height) if width else None


def source_from_uri(uri: str | int | URI, *, width: int | None = None, height: int | None = None,
                    fps: float | None = None, api: str = "auto", codec: str | None = None,
                    flip: str | int = "none", sensor_size: tuple[int, int] | None = None,
                    loop: int = 0, timeout: float = 10.0) -> Source:
    """Build (not open) the source a URI names; options that do not apply to it raise.

    Args:
        uri: see `uri.SOURCE_SCHEMES`.
        width, height, fps: capture format for cameras; scaling for streams and files.
        api: ``auto``, ``opencv`` or ``gstreamer`` (for v4l2 and rtsp).
        codec: ``raw``/``mjpeg`` for v4l2, ``h264``/``h265`` for rtsp.
        flip: CSI only, see `gstreamer.FLIP_METHODS`.
        sensor_size: CSI only, the (width, height) asked of the sensor.
        loop: file sources: extra plays after the first (-1: forever).
        timeout: seconds allowed to open a live source and get its first frame.
    """
    uri = uri if isinstance(uri, URI) else parse_source(uri)
    if api not in ("auto", "opencv", "gstreamer"):
        raise InputError(f"unknown capture api '{api}'; valid: auto, opencv, gstreamer")
    if uri.scheme in ("csi", "gst") and api == "opencv":
        raise UnsupportedOptionError(f"{uri.text}: {uri.scheme} sources are GStreamer pipelines; drop --input-api opencv")
    if uri.scheme == "csi":
        _reject(uri, input_codec=codec, input_loop=loop)
        return CsiSource(int(uri.location), width or 1280, height or 720, fps or 30, flip=flip,
                         sensor_size=sensor_size, timeout=timeout)
    _reject(uri, input_flip=flip, sensor_size=sensor_size)
    if uri.scheme == "v4l2":
        _reject(uri, input_loop=loop)
        return _v4l2_source(uri, width, height, fps, api, codec, timeout)
    if uri.scheme == "rtsp":
        _reject(uri, input_loop=loop)
        return RtspSource(uri.location, width, height, fps, api=api, codec=codec, timeout=timeout)
    if uri.scheme == "gst":
        _reject(uri, input_width=width, input_height=height, input_rate=fps, input_codec=codec, input_loop=loop)
        return GstSource(uri.location, live="filesrc" not in uri.location, timeout=timeout)
    _reject(uri, input_rate=fps, input_codec=codec, input_api="gstreamer" if api == "gstreamer" else None)
    return _file_source(uri.location, _size(width, height), loop)


def _v4l2_source(uri: URI, width: int | None, height: int | None, fps: float | None, api: str,
                 codec: str | None, timeout: float) -> Source:
    device = uri.location if not uri.location.isdigit() else int(uri.location)
    if api != "gstreamer":
        return CameraSource(device, width, height, fps, codec=codec, timeout=timeout)
    node = device if isinstance(device, str) else f"/dev/video{device}"
    pipeline = gstreamer.v4l2_pipeline(node, width or 1280, height or 720, fps or 30, codec=codec or "raw")
    return GstSource(pipeline, live=True, name=uri.text, timeout=timeout,
                     hint="check that the camera offers this size, rate and format (v4l2-ctl --list-formats-ext)")


def _file_source(location: str, size: tuple[int, int] | None, loop: int) -> Source:
    path = Path(location)
    if path.is_dir() or (glob.has_magic(location) and not path.exists()):
        return ImageFolderSource(location, size=size, loop=loop)
    if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
        return ImageFolderSource([path], size=size, loop=loop)
    return VideoFileSource(path, size=size, loop=loop)

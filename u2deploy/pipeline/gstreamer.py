"""GStreamer pipeline strings for Jetson and desktop capture and streaming, and the OpenCV checks.

OpenCV opens a GStreamer pipeline given as a string (``cv2.VideoCapture(text, cv2.CAP_GSTREAMER)``
for capture, ``cv2.VideoWriter(text, cv2.CAP_GSTREAMER, ...)`` for output). Building the strings
is pure text work, so the element chains are unit-tested here without GStreamer; only opening
them needs an OpenCV built with GStreamer, which `require_gstreamer` checks with a message that
names the usual cause on Jetson: the PyPI wheel shadowing JetPack's OpenCV.

Element chains follow NVIDIA's documented CSI recipe (nvarguscamerasrc -> NVMM NV12 -> nvvidconv
-> BGRx -> videoconvert -> BGR -> appsink) and use the Jetson hardware codecs (nvv4l2decoder,
nvv4l2h264enc) when `jetson` is true, software ones (avdec_h264, x264enc, jpegdec) otherwise.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from ..errors import InputError, MissingDependencyError

__all__ = [
    "FLIP_METHODS",
    "LIVE_APPSINK",
    "flip_method",
    "csi_pipeline",
    "v4l2_pipeline",
    "rtsp_pipeline",
    "rtp_sink_pipeline",
    "rtsp_sink_pipeline",
    "opencv_build_flag",
    "opencv_has_gstreamer",
    "opencv_has_gui",
    "require_gstreamer",
    "is_jetson",
]

#: nvvidconv ``flip-method`` values, named as jetson-utils' ``--input-flip`` names them.
FLIP_METHODS: dict[str, int] = {
    "none": 0,
    "counterclockwise": 1,
    "rotate-180": 2,
    "clockwise": 3,
    "horizontal": 4,
    "upper-right-diagonal": 5,
    "vertical": 6,
    "upper-left-diagonal": 7,
}

#: Live capture: keep only the newest buffer so latency never grows (drop=true max-buffers=1),
#: and do not wait for the clock (sync=false), which would add a frame of latency.
LIVE_APPSINK = "appsink drop=true max-buffers=1 sync=false"
_TO_BGR = "videoconvert ! video/x-raw,format=BGR"
_CODECS = ("h264", "h265")


# --------------------------------------------------------------------------------------------
# Capture


def _rate(fps: float) -> str:
    """GStreamer fraction for a frame rate (29.97 -> 30000/1001 style, integers stay N/1)."""
    if float(fps).is_integer():
        return f"{int(fps)}/1"
    return f"{round(fps * 1000)}/1000"


def _check_size(width: int, height: int, fps: float | None = None) -> None:
    if width <= 0 or height <= 0 or (fps is not None and fps <= 0):
        raise InputError(f"capture size {width}x{height} at {fps} fps: width, height and rate must be positive")


def csi_pipeline(sensor_id: int = 0, width: int = 1280, height: int = 720, fps: float = 30, *,
                 sensor_size: tuple[int, int] | None = None, flip: str | int = "none",
                 sensor_mode: int | None = None) -> str:
    """Jetson CSI camera through the Argus ISP (not V4L2, which would give raw Bayer).

    Args:
        sensor_id: the ``csi://N`` number.
        width, height: size of the frames handed to OpenCV; nvvidconv scales in hardware.
        fps: frame rate asked of the sensor.
        sensor_size: (width, height) asked of the sensor; Argus picks the closest sensor mode.
            Defaults to the output size.
        flip: a `FLIP_METHODS` name or number (for cameras mounted upside down or sideways).
        sensor_mode: force an Argus sensor mode instead of letting it choose.
    """
    sensor_w, sensor_h = sensor_size or (width, height)
    _check_size(width, height, fps)
    _check_size(sensor_w, sensor_h)
    source = f"nvarguscamerasrc sensor-id={int(sensor_id)}"
    if sensor_mode is not None:
        source += f" sensor-mode={int(sensor_mode)}"
    return " ! ".join([
        source,
        f"video/x-raw(memory:NVMM),width={sensor_w},height={sensor_h},format=NV12,framerate={_rate(fps)}",
        f"nvvidconv flip-method={flip_method(flip)}",
        f"video/x-raw,width={width},height={height},format=BGRx",
        _TO_BGR,
        LIVE_APPSINK,
    ])


def flip_method(flip: str | int) -> int:
    """A `FLIP_METHODS` name or 0..7 -> the nvvidconv number; anything else raises."""
    if isinstance(flip, int) or str(flip).isdigit():
        if 0 <= int(flip) <= 7:
            return int(flip)
    elif str(flip) in FLIP_METHODS:
        return FLIP_METHODS[str(flip)]
    raise InputError(f"unknown flip '{flip}'; valid: {', '.join(FLIP_METHODS)} (or 0-7)")


def v4l2_pipeline(device: str = "/dev/video0", width: int = 1280, height: int = 720, fps: float = 30, *,
                  codec: str = "raw", jetson: bool | None = None) -> str:
    """USB/V4L2 camera through v4l2src.

    Args:
        device: the V4L2 device node.
        width, height, fps: the camera format to ask for (it must be one the camera offers).
        codec: ``raw`` (YUY2) or ``mjpeg``; MJPEG gives higher rates at large sizes on USB 2.
        jetson: decode/convert with nvv4l2decoder/nvvidconv; None detects the platform.
    """
    _check_size(width, height, fps)
    jetson = is_jetson() if jetson is None else jetson
    size = f"width={width},height={height},framerate={_rate(fps)}"
    if codec == "mjpeg":
        caps = f"image/jpeg,{size}"
        decode = ["nvv4l2decoder mjpeg=1", "nvvidconv", "video/x-raw,format=BGRx"] if jetson else ["jpegdec"]
    elif codec == "raw":
        caps = f"video/x-raw,format=YUY2,{size}"
        decode = ["nvvidconv", "video/x-raw,format=BGRx"] if jetson else []
    else:
        raise InputError(f"unknown V4L2 input codec '{codec}'; valid: raw, mjpeg")
    return " ! ".join([f"v4l2src device={device}", caps, *decode, _TO_BGR, LIVE_APPSINK])


def rtsp_pipeline(url: str, width: int | None = None, height: int | None = None, fps: float | None = None, *,
                  codec: str = "h264", latency_ms: int = 200, jetson: bool | None = None) -> str:
    """RTSP client: depayload, decode (hardware on Jetson), optionally scale and drop to a rate.

    Args:
        url: the ``rtsp://`` address.
        width, height: scale decoded frames to this size; None keeps the stream's size.
        fps: drop frames down to this rate (never duplicates); None keeps the stream's rate.
        codec: the stream's video codec, ``h264`` or ``h265`` (rtspsrc cannot tell the depayloader).
        latency_ms: rtspsrc jitter buffer; lower is snappier, higher survives a worse network.
        jetson: decode with nvv4l2decoder; None detects the platform.
    """
    if codec not in _CODECS:
        raise InputError(f"unknown RTSP input codec '{codec}'; valid: {', '.join(_CODECS)}")
    if (width is None) != (height is None):
        raise InputError("give both the input width and height, or neither")
    jetson = is_jetson() if jetson is None else jetson
    scale = f",width={width},height={height}" if width else ""
    depay = [f"rtspsrc location={url} latency={int(latency_ms)}", f"rtp{codec}depay", f"{codec}parse"]
    if jetson:
        decode = ["nvv4l2decoder", "nvvidconv", f"video/x-raw,format=BGRx{scale}"]
    else:
        decode = [f"avdec_{codec}", "videoscale", f"video/x-raw{scale}"] if scale else [f"avdec_{codec}"]
    rate = ["videorate drop-only=true", f"video/x-raw,framerate={_rate(fps)}"] if fps else []
    return " ! ".join([*depay, *decode, *rate, _TO_BGR, LIVE_APPSINK])


# --------------------------------------------------------------------------------------------
# Streaming output


def _h264_encoder(codec: str, bitrate_kbps: int, fps: float, jetson: bool) -> list[str]:
    """Encoder elements that take OpenCV's BGR appsrc; one keyframe a second so viewers join fast."""
    if codec not in _CODECS:
        raise InputError(f"unknown streaming codec '{codec}'; valid: {', '.join(_CODECS)}")
    gop = max(1, round(fps))
    if jetson:  # nvv4l2 encoders take NV12 in NVMM memory and a bit rate in bit/s
        return ["videoconvert", "video/x-raw,format=BGRx", "nvvidconv", "video/x-raw(memory:NVMM),format=NV12",
                f"nvv4l2{codec}enc bitrate={bitrate_kbps * 1000} insert-sps-pps=true idrinterval={gop}",
                f"{codec}parse"]
    software = "x264enc" if codec == "h264" else "x265enc"
    return ["videoconvert", "video/x-raw,format=I420",
            f"{software} tune=zerolatency speed-preset=ultrafast bitrate={bitrate_kbps} key-int-max={gop}",
            f"{codec}parse"]


def rtp_sink_pipeline(host: str, port: int, *, fps: float = 30, codec: str = "h264", bitrate_kbps: int = 4000,
                      jetson: bool | None = None) -> str:
    """H.264/H.265 over RTP/UDP to ``host:port`` (jetson-utils' ``rtp://`` output).

    The receiver needs the payload caps, e.g. ``gst-launch-1.0 udpsrc port=5000
    caps="application/x-rtp,encoding-name=H264,payload=96" ! rtph264depay ! avdec_h264 ! autovideosink``.
    """
    jetson = is_jetson() if jetson is None else jetson
    return " ! ".join(["appsrc", *_h264_encoder(codec, bitrate_kbps, fps, jetson),
                       f"rtp{codec}pay config-interval=1 pt=96",
                       f"udpsink host={host} port={int(port)} sync=false async=false"])


def rtsp_sink_pipeline(url: str, *, fps: float = 30, codec: str = "h264", bitrate_kbps: int = 4000,
                       jetson: bool | None = None) -> str:
    """Publish to an RTSP server (for example MediaMTX) with rtspclientsink.

    Serving RTSP directly needs gst-rtsp-server, which OpenCV's VideoWriter cannot host; pushing
    to a server is the form a VideoWriter pipeline can express.
    """
    jetson = is_jetson() if jetson is None else jetson
    return " ! ".join(["appsrc", *_h264_encoder(codec, bitrate_kbps, fps, jetson),
                       f"rtspclientsink location={url}"])


# --------------------------------------------------------------------------------------------
# What this OpenCV and this machine can do


@functools.cache
def opencv_build_flag(name: str) -> str:
    """The value OpenCV's build information gives for `name` (``GStreamer`` -> ``YES``/``NO``)."""
    import cv2

    match = re.search(rf"^\s*{re.escape(name)}:\s*(.+?)\s*$", cv2.getBuildInformation(), re.MULTILINE)
    return match.group(1) if match else "NO"


def opencv_has_gstreamer() -> bool:
    return opencv_build_flag("GStreamer").upper().startswith("YES")


def opencv_has_gui() -> bool:
    return opencv_build_flag("GUI").upper() not in ("NONE", "NO", "")


def require_gstreamer(what: str) -> None:
    """Raise, with the fix, when this OpenCV cannot open GStreamer pipelines."""
    if opencv_has_gstreamer():
        return
    import cv2

    raise MissingDependencyError(
        f"{what} needs an OpenCV built with GStreamer, but OpenCV {cv2.__version__} ({Path(cv2.__file__).parent}) "
        "reports 'GStreamer: NO' (PyPI opencv-python wheels are built without it); on Jetson, JetPack's OpenCV has "
        "it but a pip-installed wheel shadows it: run 'pip uninstall opencv-python opencv-python-headless' and check "
        "that python3 -c \"import cv2; print(cv2.getBuildInformation())\" shows 'GStreamer: YES'; elsewhere build "
        "OpenCV with -DWITH_GSTREAMER=ON"
    )


@functools.cache
def is_jetson() -> bool:
    """True on an NVIDIA Jetson (L4T), where the nv* GStreamer elements exist."""
    if Path("/etc/nv_tegra_release").exists():
        return True
    try:
        return "jetson" in Path("/proc/device-tree/model").read_text(errors="ignore").lower()
    except OSError:
        return False

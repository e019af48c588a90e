"""Source and sink URIs: one string names where frames come from or go to.

The conventions follow jetson-inference's videoSource/videoOutput (``csi://0``,
``v4l2:///dev/video0``, ``rtsp://...``, ``file://...``, ``display://0``, ``rtp://host:port``), so a
command line written for one works with the other. Parsing is pure string work: nothing is opened
here, which keeps it testable without a camera and lets the CLI reject a bad URI before loading a
model.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

__all__ = ["URI", "SOURCE_SCHEMES", "SINK_SCHEMES", "parse_source", "parse_sink", "is_pattern", "redact"]

#: scheme -> how to write it (listed in the error for an unknown scheme)
SOURCE_SCHEMES: dict[str, str] = {
    "csi": "csi://N (Jetson CSI camera, sensor N)",
    "v4l2": "v4l2:///dev/videoN or a camera index such as 0 (USB/V4L2 camera)",
    "rtsp": "rtsp://host[:port]/path (network camera)",
    "file": "file://PATH or a plain path (video file, image folder, glob or %d pattern)",
    "gst": "gst://PIPELINE (any GStreamer pipeline ending in appsink)",
}

SINK_SCHEMES: dict[str, str] = {
    "file": "file://PATH or a plain path (.mp4/.avi/.mkv/.mov/.webm video, a folder or a %d image pattern)",
    "display": "display://0 (a window; needs an OpenCV with GUI support)",
    "rtp": "rtp://host:port (H.264 over RTP/UDP through GStreamer)",
    "rtsp": "rtsp://host:port/path (push to an RTSP server through GStreamer)",
    "gst": "gst://PIPELINE (any GStreamer pipeline starting with appsrc)",
    "null": "null (discard frames; for benchmarks)",
}

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.DOTALL)


@dataclass(frozen=True)
class URI:
    """A parsed source or sink.

    Attributes:
        scheme: one of `SOURCE_SCHEMES` or `SINK_SCHEMES`.
        location: what follows the scheme: a sensor id or device, a path, a URL (kept whole for
            rtsp), ``host:port`` for rtp, or a GStreamer pipeline.
        text: the string the user gave, for messages.
    """

    scheme: str
    location: str
    text: str

    @property
    def host_port(self) -> tuple[str, int]:
        """(host, port) of an ``rtp://`` or ``rtsp://`` URI."""
        match = re.match(r"^(?:rtsp://|rtp://)?\[?([^\]/:]+)\]?:(\d+)", self.location)
        if not match:
            raise InputError(f"{self.text}: expected {self.scheme}://host:port")
        return match.group(1), int(match.group(2))

    def __str__(self) -> str:
        return self.text


def _unknown(scheme: str, text: str, role: str, valid: dict[str, str]) -> InputError:
    close = difflib.get_close_matches(scheme.lower(), list(valid), n=1)
    hint = f" (did you mean '{close[0]}://'?)" if close else ""
    listing = "; ".join(valid.values())
    return InputError(f"unknown {role} scheme '{scheme}' in '{text}'{hint}; valid {role}s: {listing}")


def _split(text: str) -> tuple[str, str] | None:
    """('scheme', 'rest') for ``scheme://rest``; None for a plain path (incl. ``C:\\`` drives)."""
    match = _SCHEME.match(text)
    if not match or len(match.group(1)) == 1:
        return None
    return match.group(1).lower(), match.group(2)


def parse_source(text: str | int) -> URI:
    """Parse a ``--source`` value.

    Raises:
        InputError: the scheme is unknown (the message lists the valid ones) or the rest is empty.
    """
    text = str(text).strip()
    if not text:
        raise InputError("empty source; " + "; ".join(SOURCE_SCHEMES.values()))
    if text.isdigit():
        return URI("v4l2", text, text)
    split = _split(text)
    if split is None:
        return URI("file", text, text)
    scheme, rest = split
    if scheme not in SOURCE_SCHEMES:
        raise _unknown(scheme, text, "source", SOURCE_SCHEMES)
    if scheme == "csi" and not rest.isdigit():
        raise InputError(f"{text}: expected csi://N with N the sensor id, e.g. csi://0")
    if scheme == "rtsp":
        rest = text  # FFmpeg and rtspsrc both take the whole URL
    if not rest:
        raise InputError(f"{text}: nothing after '{scheme}://'; expected {SOURCE_SCHEMES[scheme]}")
    return URI(scheme, rest, text)


def parse_sink(text: str) -> URI:
    """Parse a ``--sink`` value.

    Raises:
        InputError: the scheme is unknown (the message lists the valid ones) or the address is
            malformed.
    """
    text = str(text).strip()
    if text.lower() in ("null", "null://", "none"):
        return URI("null", "", text)
    if not text:
        raise InputError("empty sink; " + "; ".join(SINK_SCHEMES.values()))
    split = _split(text)
    if split is None:
        return URI("file", text, text)
    scheme, rest = split
    if scheme not in SINK_SCHEMES:
        raise _unknown(scheme, text, "sink", SINK_SCHEMES)
    if scheme == "rtsp":
        rest = text
    uri = URI(scheme, rest, text)
    if scheme in ("rtp", "rtsp"):
        uri.host_port  # noqa: B018 - validate now, before a model is loaded
    elif scheme == "display" and rest not in ("", "0") and not rest.isdigit():
        raise InputError(f"{text}: expected display://N, e.g. display://0")
    elif scheme in ("file", "gst") and not rest:
        raise InputError(f"{text}: nothing after '{scheme}://'; expected {SINK_SCHEMES[scheme]}")
    return uri


def is_pattern(path: str | Path) -> bool:
    """True for a printf-style image sequence such as ``frames/%06d.png``."""
    return re.search(r"%0?\d*d", str(path)) is not None


def redact(url: str) -> str:
    """``rtsp://user:secret@cam/live`` -> ``rtsp://user:***@cam/live``, for messages and summaries."""
    return re.sub(r"^([a-z][a-z0-9+.-]*://[^/:@]+):[^/@]*@", r"\1:***@", url, flags=re.IGNORECASE)

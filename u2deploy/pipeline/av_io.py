"""Video files through PyAV (FFmpeg in a wheel): H.264 MP4, and transparent WebM and MOV for cut-outs.

OpenCV's PyPI build has no H.264 encoder and writes no alpha, so file sinks for ``.mp4``,
``.webm`` and ``.mov`` go through PyAV when it is installed (``u2deploy[video]``); cameras and
GStreamer stay with OpenCV. What each container gets:

| suffix | codec | pixel format | alpha |
|---|---|---|---|
| ``.mp4`` | H.264 (libx264, CRF 18) | yuv420p | no: cut-outs are flattened |
| ``.webm`` | VP9 (libvpx-vp9, CRF 30) | yuva420p for cut-outs, else yuv420p | yes: browsers play it transparent |
| ``.mov`` | ProRes 4444 (prores_ks) | yuva444p10le for cut-outs, else yuv444p10le | yes: for editors |

Frame timing is kept: each frame's presentation time is its index in the source at the source's
rate, so frames a live source dropped leave their gap instead of speeding the video up. Audio is
copied from a source file that has it (stream copy where the container accepts the codec, else
re-encoded to Opus for WebM or AAC), cut at the video's length, and interleaved as frames arrive.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .._deps import require
from ..errors import InputError
from .sinks import Sink, _check_writable_dir

__all__ = ["AvVideoSink", "AV_SUFFIXES", "read_video_rgba"]

#: suffix -> (encoder, pixel format without alpha, pixel format with alpha or None, encoder options)
AV_SUFFIXES: dict[str, tuple[str, str, str | None, dict[str, str]]] = {
    ".mp4": ("libx264", "yuv420p", None, {"crf": "18", "preset": "veryfast"}),
    ".webm": ("libvpx-vp9", "yuv420p", "yuva420p", {"crf": "30", "b": "0", "deadline": "realtime", "cpu-used": "8",
                                                     "row-mt": "1"}),
    ".mov": ("prores_ks", "yuv444p10le", "yuva444p10le", {"profile": "4", "vendor": "apl0"}),
}
#: audio codecs each container takes as they are; others are re-encoded to the first one
_AUDIO_OK = {".mp4": ("aac", "mp3", "alac", "opus"), ".webm": ("opus", "vorbis"), ".mov": ("aac", "pcm_s16le", "alac")}


def _av() -> Any:
    return require("av", "H.264 MP4 and transparent WebM/MOV video")


class AvVideoSink(Sink):
    """A video file written by FFmpeg through PyAV, opened at the first frame.

    Args:
        path: ``.mp4``, ``.webm`` or ``.mov`` (see the module's table).
        fps: frame rate; None takes the source's, else 30.
        audio_from: a media file whose audio is copied in (the pipeline sets it to a file source).
    """

    supports_grey = False

    def __init__(self, path: str | os.PathLike, fps: float | None = None, audio_from: str | os.PathLike | None = None) -> None:
        self.path = Path(path)
        self.suffix = self.path.suffix.lower()
        if self.suffix not in AV_SUFFIXES:
            raise InputError(f"{self.path}: PyAV sinks write {', '.join(AV_SUFFIXES)}, not '{self.suffix}'")
        if fps is not None and fps <= 0:
            raise InputError(f"output rate {fps}: must be positive")
        super().__init__(str(self.path))
        self.encoder, self._plain, self._alpha, self._options = AV_SUFFIXES[self.suffix]
        self.supports_alpha = self._alpha is not None
        self.fps, self.audio_from = fps, audio_from
        self.partial = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self.pixel_format: str | None = None
        self._container: Any = None
        self._stream: Any = None
        self._audio: _AudioCopy | None = None
        self._first: int | None = None
        self._last_pts = -1
        self._size: tuple[int, int] | None = None

    def check(self) -> None:
        _av()

    def open(self, fps: float | None = None) -> None:
        self.check()
        _check_writable_dir(self.path.parent, str(self.path))
        self.fps = self.fps or fps or 30.0

    def write(self, image: np.ndarray, index: int) -> None:
        size = (image.shape[1], image.shape[0])
        if self._container is None:
            self._start(image)
            self._first = index  # pts 0; later frames are timed from it
        elif size != self._size:
            raise InputError(f"{self.path}: frame {index} is {size[0]}x{size[1]} but the video is "
                             f"{self._size[0]}x{self._size[1]}; a video needs one frame size")
        av = _av()
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgra" if image.shape[2] == 4 else "bgr24")
        frame.pts = max(index - self._first, self._last_pts + 1)  # source timing; never backwards
        self._last_pts = frame.pts
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        if self._audio is not None:
            self._audio.copy_until(float((frame.pts + 1) * self._stream.codec_context.time_base))
        self.frames += 1

    def _start(self, image: np.ndarray) -> None:
        av = _av()
        height, width = image.shape[:2]
        alpha = image.ndim == 3 and image.shape[2] == 4 and self._alpha is not None
        self.pixel_format = self._alpha if alpha else self._plain
        if "420" in self.pixel_format and (width % 2 or height % 2):
            raise InputError(f"{self.path}: frames are {width}x{height}; {self.encoder} needs an even width and height "
                             "(scale with --input-width/--input-height, or write .mov)")
        rate = Fraction(self.fps).limit_denominator(1001)
        self._container = av.open(str(self.partial), mode="w")
        stream = self._container.add_stream(self.encoder, rate=rate, options=dict(self._options))
        stream.width, stream.height, stream.pix_fmt = width, height, self.pixel_format
        stream.codec_context.time_base = 1 / rate
        self._stream, self._size = stream, (width, height)
        if self.audio_from is not None:
            self._audio = _AudioCopy.attach(self._container, Path(self.audio_from), self.suffix)

    def close(self) -> None:
        if self._container is None:
            self.partial.unlink(missing_ok=True)
            return
        try:
            for packet in self._stream.encode(None):  # flush the encoder's delayed frames
                self._container.mux(packet)
            if self._audio is not None:
                self._audio.finish(float((self._last_pts + 1) * self._stream.codec_context.time_base))
        finally:
            self._container.close()  # writes the index/cues: without it the file does not play
            self._container = None
        os.replace(self.partial, self.path)

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(codec=self.encoder, pixel_format=self.pixel_format, fps=self.fps,
                    size=list(self._size) if self._size else None, audio=self._audio is not None)
        return info


class _AudioCopy:
    """Copy (or re-encode) a source's first audio stream into an output container, in step with the video."""

    def __init__(self, source: Any, in_stream: Any, out_stream: Any, encoder: Any | None) -> None:
        self.source, self.in_stream, self.out_stream, self.encoder = source, in_stream, out_stream, encoder
        self.container: Any = None
        self._packets = source.demux(in_stream)
        self._pending: Any = None

    @classmethod
    def attach(cls, container: Any, path: Path, suffix: str) -> _AudioCopy | None:
        """Add the audio stream to `container` (before its header is written); None if `path` has no audio."""
        av = _av()
        try:
            source = av.open(str(path))
        except (av.FFmpegError, OSError):
            return None
        if not source.streams.audio:
            source.close()
            return None
        in_stream = source.streams.audio[0]
        if in_stream.codec_context.name in _AUDIO_OK[suffix]:
            copy = cls(source, in_stream, container.add_stream_from_template(in_stream), None)
        else:  # e.g. AAC into WebM: re-encode to the container's first audio codec
            codec = {"opus": "libopus"}.get(_AUDIO_OK[suffix][0], _AUDIO_OK[suffix][0])
            rate = 48000 if codec == "libopus" else in_stream.codec_context.sample_rate
            out = container.add_stream(codec, rate=rate, layout=in_stream.codec_context.layout.name)
            copy = cls(source, in_stream, out, av.AudioResampler(format=out.codec_context.format.name,
                                                                 layout=out.codec_context.layout.name, rate=rate))
        copy.container = container
        return copy

    def copy_until(self, seconds: float) -> None:
        """Mux audio up to `seconds` of presentation time (keeps the file interleaved)."""
        while True:
            packet, self._pending = self._pending or self._next(), None
            if packet is None:
                return
            if packet.pts is not None and float(packet.pts * packet.time_base) >= seconds:
                self._pending = packet  # later than the video so far: wait for the next frame
                return
            self._mux(packet)

    def _next(self) -> Any:
        for packet in self._packets:
            if packet.size:  # the demuxer ends with an empty flush packet
                return packet
        return None

    def _mux(self, packet: Any) -> None:
        if self.encoder is None:
            packet.stream = self.out_stream  # mux rescales the time stamps to the output stream
            self.container.mux(packet)
            return
        for frame in self.in_stream.codec_context.decode(packet):
            for resampled in self.encoder.resample(frame):
                for out in self.out_stream.encode(resampled):
                    self.container.mux(out)

    def finish(self, seconds: float) -> None:
        """Audio up to the video's end, then flush the encoder and close the source."""
        self.copy_until(seconds)
        if self.encoder is not None:
            for out in self.out_stream.encode(None):
                self.container.mux(out)
        self.source.close()


def read_video_rgba(path: str | os.PathLike) -> tuple[list[np.ndarray], float, bool]:
    """Decode a video back to RGBA frames (alpha included for VP9 WebM and ProRes 4444), its rate, and audio presence.

    FFmpeg's native VP9 decoder drops the alpha that WebM stores beside the colour; libvpx keeps it.
    """
    av = _av()
    frames = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or stream.base_rate or 0)
        has_audio = bool(container.streams.audio)
        context = av.CodecContext.create("libvpx-vp9", "r") if stream.codec_context.name == "vp9" else stream.codec_context
        for packet in container.demux(stream):
            for frame in context.decode(packet):
                frames.append(frame.to_ndarray(format="rgba"))
    return frames, rate, has_audio

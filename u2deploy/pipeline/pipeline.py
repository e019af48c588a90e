"""`Pipeline`: capture, inference and output running concurrently, with bounded queues.

Three stages overlap so a frame is decoded while the previous one is in the network and the one
before is being written:

* capture (a thread) reads the source. A live source feeds a one-slot mailbox that always holds
  the newest frame (an unread older frame is dropped and counted): latency stays at one frame
  however slow the model is. A file source feeds a bounded FIFO and waits when it is full: every
  frame is processed, in order.
* inference (a thread) takes frames in batches (files only, where the artifact allows) and calls
  `Runtime.predict`, then smooths the mask over time if asked.
* output runs in the thread that called `run()`: it applies the effect and writes to the sinks.
  OpenCV's window functions must stay on one thread (the main one on some platforms), and Python
  delivers Ctrl-C to the main thread, so this is where both are handled.

Stopping: end of stream, `--max-frames`, Ctrl-C/SIGTERM (the first one stops capture and drains
what is queued, a second one abandons the queue), or a closed window. In every case the sinks are
closed, which finalises video files. An error in any stage stops the others and is raised by
`run()` (or by the iterator) in the caller's thread; a source that fails mid-stream still has its
queued frames written first. Every wait has a timeout, so no thread can hang the caller.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError, U2DeployError, UnsupportedOptionError
from ..refine import RefineOptions, refine_full
from .effects import Effect, adapt_for_sink, parse_effect
from .sinks import NullSink, Sink, sink_from_uri
from .sources import Source, source_from_uri

if TYPE_CHECKING:
    from ..runtimes.runtime import Runtime

__all__ = ["Pipeline", "PipelineStats", "StageTimer", "MaskSmoother", "choose_batch"]

_END = object()  # end of a channel: sent once, after the last item
_POLL_S = 0.1  # how often blocked stages look at stop/abort flags
_OBJECT_ONLY_EFFECTS = ("cutout", "matte", "replace", "color")  # effects that never show the old background


# --------------------------------------------------------------------------------------------
# Statistics


@dataclass
class StageTimer:
    """Total seconds spent in one stage and the number of frames it covered."""

    frames: int = 0
    seconds: float = 0.0

    def add(self, seconds: float, frames: int = 1) -> None:
        self.frames += frames
        self.seconds += seconds

    @property
    def ms_per_frame(self) -> float:
        return 1000.0 * self.seconds / self.frames if self.frames else 0.0


def _stages() -> dict[str, StageTimer]:
    return {name: StageTimer() for name in ("capture", "inference", "effect", "write")}


@dataclass
class PipelineStats:
    """What a run did. Stage times are per frame; `capture` includes waiting for a live camera.

    Attributes:
        frames_read: frames taken from the source.
        frames_out: frames written to the sinks (or yielded by the iterator).
        dropped: live sources: frames replaced by a newer one before inference took them.
        elapsed_s: wall time from the start of capture to the last output.
        stopped_by: ``end of stream``, ``max frames``, ``interrupted``, ``window closed``, ``error``...
        latency: capture to output, per frame.
    """

    source: str = ""
    sinks: list[str] = field(default_factory=list)
    batch: int = 1
    frames_read: int = 0
    frames_inferred: int = 0
    frames_out: int = 0
    dropped: int = 0
    elapsed_s: float = 0.0
    stopped_by: str = ""
    stages: dict[str, StageTimer] = field(default_factory=_stages)
    latency: StageTimer = field(default_factory=StageTimer)
    warnings: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames_out / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def line(self) -> str:
        """One status line (printed with --stats, drawn on the display)."""
        parts = [f"{self.frames_out} frames {self.fps:5.1f} fps"]
        parts += [f"{name} {timer.ms_per_frame:.1f} ms" for name, timer in self.stages.items()]
        parts.append(f"latency {self.latency.ms_per_frame:.0f} ms")
        if self.dropped:
            parts.append(f"dropped {self.dropped}")
        return " | ".join(parts)

    def summary(self) -> str:
        """A short report for the end of a run."""
        head = (f"{self.frames_read} frame(s) read from {self.source}, {self.frames_out} written to "
                f"{', '.join(self.sinks) or 'the caller'} in {self.elapsed_s:.1f} s ({self.fps:.1f} fps, batch "
                f"{self.batch}); stopped by {self.stopped_by}")
        lines = [head, "  " + self.line()] + [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["fps"] = self.fps
        data["stages_ms"] = {name: timer.ms_per_frame for name, timer in self.stages.items()}
        data["latency_ms"] = self.latency.ms_per_frame
        return data


# --------------------------------------------------------------------------------------------
# Building blocks


@dataclass
class _Packet:
    index: int
    frame: np.ndarray
    captured: float
    saliency: np.ndarray | None = None


class _Channel:
    """A bounded queue between two stages, with an end marker and an abort switch.

    `latest_only` makes it a mailbox: a put on a full channel replaces the oldest item and
    counts it as dropped, so the producer never waits (live sources). Otherwise a put waits for
    room (files: nothing is lost). `close` lets the consumer drain what is queued before `_END`;
    `abort` makes every waiting put and get return at once.
    """

    def __init__(self, capacity: int, latest_only: bool = False) -> None:
        self.capacity, self.latest_only = max(1, capacity), latest_only
        self.dropped = 0
        self._items: deque[Any] = deque()
        self._cond = threading.Condition()
        self._closed = self._aborted = False

    def put(self, item: Any) -> bool:
        """Queue `item`; False if the channel was aborted (the item is discarded)."""
        with self._cond:
            while not self._aborted:
                if self.latest_only and len(self._items) >= self.capacity:
                    self._items.popleft()
                    self.dropped += 1
                if len(self._items) < self.capacity:
                    self._items.append(item)
                    self._cond.notify_all()
                    return True
                self._cond.wait(_POLL_S)
            return False

    def get(self, timeout: float) -> Any:
        """The next item, `_END` once closed and drained (or aborted), or None after `timeout`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self._aborted:
                    return _END
                if self._items:
                    item = self._items.popleft()
                    self._cond.notify_all()
                    return item
                if self._closed:
                    return _END
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(min(remaining, _POLL_S))

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def abort(self) -> None:
        with self._cond:
            self._aborted = True
            self._items.clear()
            self._cond.notify_all()


class MaskSmoother:
    """Exponential moving average of the mask over time, to calm flicker on video.

    ``m_t = (1 - w) * s_t + w * m_{t-1}``: weight 0 is off, 0.5 is light, 0.8 is heavy. Given the
    frames, it does not lag behind what moves: where the picture changed since the last frame the
    new map is taken as it is (the weight fades to 0 with the local change), and after a scene cut
    or a camera move (mean change above `reset`) the average restarts. It restarts when the frame
    size changes too.

    Args:
        weight: weight of the previous average, in [0, 1).
        reset: mean absolute grey-level change (0..1) between frames that counts as a new scene;
            0 never restarts.
        motion: local grey-level change (0..1) at which a pixel stops being averaged.
    """

    _SMALL = 64  # the change is measured on a small grey copy: cheap, and blind to sensor noise

    def __init__(self, weight: float = 0.0, reset: float = 0.15, motion: float = 0.08) -> None:
        if not 0.0 <= weight < 1.0:
            raise InputError(f"smoothing {weight}: must be at least 0 and below 1 (0 = off, 0.5 = light, 0.8 = heavy)")
        if not 0.0 <= reset <= 1.0:
            raise InputError(f"--smooth-reset {reset}: must be from 0 (never) to 1 (mean grey change of a scene cut)")
        self.weight, self.reset, self.motion = float(weight), float(reset), float(motion)
        self.resets = 0
        self._previous: np.ndarray | None = None
        self._frame: np.ndarray | None = None

    def __call__(self, saliency: np.ndarray, frame: np.ndarray | None = None) -> np.ndarray:
        if self.weight == 0.0:
            return saliency
        weight: float | np.ndarray = self.weight
        if frame is not None:
            change = self._change(frame, saliency.shape)
            if change is None:
                self._previous = None
            else:
                # full weight below half the threshold (noise), none above it (motion)
                weight = self.weight * np.clip(2.0 - 2.0 * change / self.motion, 0.0, 1.0)
        if self._previous is None or self._previous.shape != saliency.shape:
            self._previous = saliency
        else:
            self._previous = (1.0 - weight) * saliency + weight * self._previous
        return self._previous.astype(np.float32, copy=False)

    def _change(self, frame: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
        """Per-pixel grey change since the last frame (full size), or None for a new scene."""
        import cv2

        grey = frame if frame.ndim == 2 else cv2.cvtColor(frame[:, :, :3], cv2.COLOR_BGR2GRAY)
        height, width = grey.shape
        scale = self._SMALL / max(height, width)
        small = cv2.resize(grey, (max(1, round(width * scale)), max(1, round(height * scale))),
                           interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        small = cv2.GaussianBlur(small, (5, 5), 0)  # before the difference, so sensor noise averages out
        previous, self._frame = self._frame, small
        if previous is None or previous.shape != small.shape:
            return None
        change = np.abs(small - previous)
        if self.reset > 0 and float(change.mean()) > self.reset:
            self.resets += 1
            return None
        return cv2.resize(change, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def choose_batch(artifact_batch: int | None, requested: int | None, live: bool) -> int:
    """Frames per inference call: files batch where the artifact allows; live sources run one at a time.

    Args:
        artifact_batch: `Runtime.batch_size` (None: any batch).
        requested: ``--batch`` (None: the artifact's static batch, else 1).
        live: the source is a camera or stream.
    """
    if requested is not None and requested < 1:
        raise InputError(f"--batch {requested}: must be at least 1")
    if live:
        if requested and requested > 1:
            raise UnsupportedOptionError(f"--batch {requested}: live sources run the newest frame, one at a time "
                                         "(batching would add latency); batching is for files")
        return 1
    if artifact_batch is None:
        return requested or 1
    if requested is not None and requested != artifact_batch:
        raise UnsupportedOptionError(f"--batch {requested}: the model was exported with a fixed batch of "
                                     f"{artifact_batch}; use --batch {artifact_batch}, or re-export with a dynamic batch")
    return artifact_batch


def _as_sinks(sink: Sink | str | Sequence[Sink | str] | None) -> list[Sink]:
    if sink is None:
        return []
    items = [sink] if isinstance(sink, (Sink, str)) else list(sink)
    return [s if isinstance(s, Sink) else sink_from_uri(s) for s in items]


def _give_audio(sink: Sink, source: Source) -> None:
    """A PyAV video sink copies the audio of a video file source (an image sequence has none)."""
    from .sources import VideoFileSource
    from .uri import is_pattern

    if getattr(sink, "audio_from", False) is None and isinstance(source, VideoFileSource) and not is_pattern(source.name):
        sink.audio_from = source.name


def _check_frame(frame: Any, source: Source) -> None:
    if not (isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3):
        shape = getattr(frame, "shape", type(frame).__name__)
        raise InputError(f"{source.name}: read() returned {shape} {getattr(frame, 'dtype', '')}; "
                         "a source must return HxWx3 BGR uint8 frames, or None at the end")


# --------------------------------------------------------------------------------------------
# The pipeline


class Pipeline:
    """Run a `Runtime` on a stream of frames.

    Example:
        >>> with Runtime("u2netp.onnx") as rt:
        ...     stats = Pipeline(rt, "video.mp4", "out.mp4", "blur").run()
        ...     for frame, saliency in Pipeline(rt, "csi://0"):   # custom application
        ...         ...

    Args:
        runtime: any `Runtime`; only `predict` and `batch_size` are used.
        source: a `Source` or a source URI.
        sink: a `Sink`, a sink URI, a list of them, or None (`run()` then discards the frames).
        effect: an `Effect` or an effect name (``mask``, ``blur:25``, ``replace:beach.jpg``...).
        batch: frames per inference call for file sources (None: the artifact's batch, else 1).
        smoothing: weight of the previous mask in the temporal average (0 = off).
        smooth_reset: mean grey change between frames that restarts the average (a scene cut; 0 never).
        refine: edge refinement of each map (``guided``, ``matting`` or a `RefineOptions`).
        max_frames: stop after reading this many frames.
        stall_timeout: a live source that delivers no frame for this long is an error.
        show_stats: draw the status line on sinks that show frames (the display).
        on_stats: called about once a second, from the thread running `run()`, with the current stats.
        join_timeout: seconds to wait for each thread when stopping; one blocked in a driver call
            is then left behind (it is a daemon) and reported in `stats.warnings`.
    """

    def __init__(self, runtime: Runtime, source: Source | str | int, sink: Sink | str | Sequence[Sink | str] | None = None,
                 effect: Effect | str = "mask", *, batch: int | None = None, smoothing: float = 0.0,
                 smooth_reset: float = 0.15, refine: RefineOptions | str | None = None,
                 max_frames: int | None = None, stall_timeout: float = 10.0, show_stats: bool = False,
                 on_stats: Callable[[PipelineStats], None] | None = None, join_timeout: float = 5.0) -> None:
        if max_frames is not None and max_frames < 1:
            raise InputError(f"--max-frames {max_frames}: must be at least 1")
        self.runtime = runtime
        self.source = source if isinstance(source, Source) else source_from_uri(source)
        self.sinks = _as_sinks(sink)
        self.effect = parse_effect(effect)
        self.batch = choose_batch(runtime.batch_size, batch, self.source.live)
        self.smoother = MaskSmoother(smoothing, reset=smooth_reset)
        self.refine = refine if isinstance(refine, RefineOptions) else RefineOptions(refine or "none")
        self.max_frames, self.stall_timeout, self.join_timeout = max_frames, stall_timeout, join_timeout
        self.show_stats, self.on_stats = show_stats, on_stats
        self.stats = PipelineStats(source=self.source.name, sinks=[s.name for s in self.sinks], batch=self.batch)
        live = self.source.live
        self._frames = _Channel(1 if live else 2 * self.batch, latest_only=live)
        self._results = _Channel(2 if live else 2 * self.batch)
        self._stop = threading.Event()
        self._error: tuple[str, BaseException] | None = None
        self._error_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._used = False
        self._last_frame = self._last_report = 0.0
        self._started = 0.0

    # -- public ------------------------------------------------------------------------------
    def run(self, handle_signals: bool = True) -> PipelineStats:
        """Stream until the source ends, `max_frames`, `stop()`, Ctrl-C or a closed window.

        Args:
            handle_signals: while running in the main thread, the first SIGINT/SIGTERM stops
                capture and drains the queue (the output file is finalised), a second abandons
                the queue and raises KeyboardInterrupt (outputs are still closed).

        Returns:
            The run's statistics.
        """
        sinks = self.sinks or [NullSink()]
        self.stats.sinks = [s.name for s in sinks]
        with contextlib.ExitStack() as stack:  # unwinds in reverse: threads, sinks, signal handlers, source
            self._open_source(stack)
            stack.enter_context(self._signals(handle_signals))  # still ours while the sinks finalise
            for sink in sinks:
                _give_audio(sink, self.source)
                sink.open(self.source.fps)
                stack.callback(sink.close)
            stream = stack.enter_context(contextlib.closing(self._stream()))
            for packet in stream:
                self._emit(packet, sinks)
        return self.stats

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (BGR frame, float32 saliency map in [0, 1]) for custom applications; no sinks are used.

        Leaving the loop early (break, an exception) stops the pipeline and releases the source.
        """
        with contextlib.ExitStack() as stack:
            self._open_source(stack)
            stream = stack.enter_context(contextlib.closing(self._stream()))
            for packet in stream:
                self._count_out(packet)
                yield packet.frame, packet.saliency

    def stop(self, reason: str = "stop()") -> None:
        """Ask the pipeline to finish: capture stops, what is queued is still processed. Thread-safe."""
        if not self._stop.is_set():
            self.stats.stopped_by = self.stats.stopped_by or reason
            self._stop.set()

    # -- stages ------------------------------------------------------------------------------
    def _open_source(self, stack: contextlib.ExitStack) -> None:
        if self._used:
            raise RuntimeError("a Pipeline runs once; build a new one (sources cannot always be reopened)")
        self._used = True
        self.source.open()
        stack.callback(self._close_source)

    def _close_source(self) -> None:
        capture = next((t for t in self._threads if t.name == "u2deploy-capture"), None)
        if capture is not None and capture.is_alive():
            return  # still inside read(): releasing the capture under it could crash the process
        self.source.close()

    def _capture_loop(self) -> None:
        try:
            while not self._stop.is_set():
                if self.max_frames is not None and self.stats.frames_read >= self.max_frames:
                    self.stop("max frames")
                    break
                start = time.perf_counter()
                frame = self.source.read()
                if frame is None:
                    self.stats.stopped_by = self.stats.stopped_by or "end of stream"
                    break
                _check_frame(frame, self.source)
                self._last_frame = now = time.perf_counter()
                self.stats.stages["capture"].add(now - start)
                packet = _Packet(self.stats.frames_read, frame, now)
                self.stats.frames_read += 1
                if not self._frames.put(packet):
                    break
        except BaseException as exc:
            self._fail("capture", exc, abort=False)  # what was read is still processed and written
        finally:
            self.stats.dropped = self._frames.dropped
            self._frames.close()

    def _inference_loop(self) -> None:
        try:
            ended = False
            while not ended:
                batch, ended = self._collect_batch()
                if batch:
                    self._infer(batch)
        except BaseException as exc:
            self._fail("inference", exc)
        finally:
            self.stats.dropped = self._frames.dropped
            self._results.close()

    def _collect_batch(self) -> tuple[list[_Packet], bool]:
        """Up to `batch` frames, in order; True once the source has ended and the queue is empty."""
        batch: list[_Packet] = []
        while len(batch) < self.batch:
            item = self._frames.get(_POLL_S)
            if item is _END:
                return batch, True
            if item is not None:
                batch.append(item)
        return batch, False

    def _infer(self, batch: list[_Packet]) -> None:
        start = time.perf_counter()
        maps = self.runtime.predict([p.frame for p in batch], channel_order="bgr")
        self.stats.stages["inference"].add(time.perf_counter() - start, len(batch))
        self.stats.frames_inferred += len(batch)
        for packet, saliency in zip(batch, maps, strict=True):
            packet.saliency = self._refine(packet, self.smoother(saliency, packet.frame))
            if not self._results.put(packet):
                return

    def _refine(self, packet: _Packet, saliency: np.ndarray) -> np.ndarray:
        """Edge refinement after the temporal smoothing (edges follow this frame, not the average).

        Matting also estimates the object's colours; effects that show only the object (cutout,
        matte, replace, color) then use them, so no halo of the old background remains.
        """
        if not self.refine.active:
            return saliency
        clean = self.refine.mode == "matting" and self.refine.foreground and self.effect.name in _OBJECT_ONLY_EFFECTS
        refined = refine_full(saliency, packet.frame, self.refine, foreground=clean, channel_order="bgr")
        if refined.foreground is not None:
            packet.frame = np.ascontiguousarray(refined.foreground[:, :, ::-1])
        return refined.alpha

    def _emit(self, packet: _Packet, sinks: list[Sink]) -> None:
        """Output stage: effect, then every sink; runs in the caller's thread."""
        start = time.perf_counter()
        image = self.effect(packet.frame, packet.saliency)
        effect_done = time.perf_counter()
        for sink in sinks:
            sink.write(adapt_for_sink(image, self.effect, alpha=sink.supports_alpha, grey=sink.supports_grey),
                       packet.index)
        self.stats.stages["effect"].add(effect_done - start)
        self.stats.stages["write"].add(time.perf_counter() - effect_done)
        self._count_out(packet)
        if any(sink.stop_requested for sink in sinks):
            self.stop("window closed")
        self._report(sinks)

    def _count_out(self, packet: _Packet) -> None:
        self.stats.frames_out += 1
        self.stats.latency.add(time.perf_counter() - packet.captured)
        self.stats.elapsed_s = time.perf_counter() - self._started

    def _report(self, sinks: list[Sink]) -> None:
        now = time.perf_counter()
        if now - self._last_report < 1.0:
            return
        self._last_report = now
        self.stats.dropped = self._frames.dropped
        if self.show_stats:
            for sink in sinks:
                sink.annotate(self.stats.line())
        if self.on_stats is not None:
            self.on_stats(self.stats)

    # -- control -----------------------------------------------------------------------------
    def _stream(self) -> Iterator[_Packet]:
        """Start capture and inference, yield inferred packets in order, always stop the threads."""
        self._started = self._last_frame = self._last_report = time.perf_counter()
        self._threads = [threading.Thread(target=self._capture_loop, name="u2deploy-capture", daemon=True),
                         threading.Thread(target=self._inference_loop, name="u2deploy-inference", daemon=True)]
        for thread in self._threads:
            thread.start()
        finished = False
        try:
            while True:
                packet = self._results.get(_POLL_S)
                if packet is _END:
                    finished = True
                    break
                if packet is None:
                    self._watch()
                    continue
                yield packet
        finally:
            self._shutdown(abandon=not finished)
        self._raise_error()

    def _watch(self) -> None:
        """A live source that stops delivering would otherwise leave the stream waiting forever."""
        stalled = time.perf_counter() - self._last_frame
        if self.source.live and not self._stop.is_set() and stalled > self.stall_timeout:
            self._fail("capture", InputError(f"{self.source.name}: no frame for {stalled:.0f} s; the camera or "
                                             "stream stopped delivering (check the cable, network or sender)"))

    def _shutdown(self, abandon: bool) -> None:
        self.stop("stopped by the caller" if abandon else "end of stream")
        if abandon:
            self._frames.abort()
            self._results.abort()
        for thread in self._threads:
            thread.join(self.join_timeout)
        stuck = [t.name for t in self._threads if t.is_alive()]
        if stuck:
            self.stats.warnings.append(f"{', '.join(stuck)} did not stop within {self.join_timeout:g} s and was left "
                                       "behind (its source call is blocked)")
        self.stats.elapsed_s = time.perf_counter() - self._started

    def _fail(self, stage: str, exc: BaseException, abort: bool = True) -> None:
        """Record the first error of any stage; stop capture, and unless `abort` is False drop the queues."""
        with self._error_lock:
            if self._error is None:
                self._error = (stage, exc)
                self.stats.stopped_by = f"error in {stage}"
        self._stop.set()
        if abort:
            self._frames.abort()
            self._results.abort()

    def _raise_error(self) -> None:
        if self._error is None:
            return
        stage, exc = self._error
        if hasattr(exc, "add_note") and not isinstance(exc, U2DeployError):  # a bug keeps its traceback: say where
            exc.add_note(f"(raised in the u2deploy pipeline's {stage} thread)")
        raise exc

    @contextlib.contextmanager
    def _signals(self, enabled: bool) -> Iterator[None]:
        """First Ctrl-C/SIGTERM: graceful stop; second: KeyboardInterrupt (sinks still close)."""
        if not enabled or threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, _frame: Any) -> None:
            if self._stop.is_set():
                raise KeyboardInterrupt
            self.stop("interrupted" if signum == signal.SIGINT else "terminated")

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

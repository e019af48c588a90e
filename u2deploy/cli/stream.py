"""Run a model on a camera, network stream, video file or image folder, live.

  u2deploy stream u2netp.onnx --source csi://0 --effect blur                  # Jetson CSI camera, window
  u2deploy stream u2netp.onnx --source /dev/video0 --sink out.mp4 --headless  # USB camera to a file
  u2deploy stream u2net.xml --source talk.mp4 --sink cut/ --effect cutout     # RGBA PNG per frame
  u2deploy stream u2netp.engine --source rtsp://cam/live --sink rtp://10.0.0.2:5000 --effect replace:beach.jpg

Sources: csi://N, v4l2:///dev/videoN or an index, rtsp://..., file://PATH or a path (video, image
folder, glob, %d pattern), gst://PIPELINE. Sinks: a video (.mp4 .avi .mkv .mov .webm), a folder or
image pattern, display://0, rtp://host:port, rtsp://server/path, gst://PIPELINE, null. Give --sink
more than once to write several. Without --sink the output is shown in a window, or discarded
with --headless.

Ctrl-C stops capture, writes what is queued, finalises the files and prints a summary (exit 0);
a second Ctrl-C stops without draining (the files are still finalised).
"""

from __future__ import annotations

import argparse
import sys

from ._common import add_max_pixels_argument, add_runtime_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_runtime_arguments(parser)
    parser.add_argument("--source", required=True, help="camera, stream, video file or image folder URI (see above)")
    parser.add_argument("--sink", "-o", action="append", default=None,
                        help="output URI; repeat for several (default display://0, or null with --headless)")
    parser.add_argument("--effect", default="mask",
                        help="mask, matte, cutout[:checker|green|R,G,B], blur[:SIGMA], replace:IMAGE, color:R,G,B")
    _add_input_arguments(parser.add_argument_group("input"))
    _add_output_arguments(parser.add_argument_group("output"))
    run_group = parser.add_argument_group("pipeline")
    run_group.add_argument("--batch", type=int, default=None,
                           help="frames per inference call, file sources only (default: the model's batch, else 1)")
    run_group.add_argument("--smooth", type=float, default=0.0,
                           help="temporal smoothing of the mask, weight of the previous one: 0 off (default), 0.5, 0.8")
    run_group.add_argument("--smooth-reset", type=float, default=0.15,
                           help="--smooth: mean grey change (0..1) between frames that restarts the average, "
                                "i.e. a scene cut (default 0.15; 0 never)")
    from ._predict_io import add_refine_arguments

    add_refine_arguments(parser.add_argument_group("edges"))
    run_group.add_argument("--max-frames", type=int, default=None, help="stop after reading N frames")
    run_group.add_argument("--headless", action="store_true", help="no window (the default sink becomes null)")
    run_group.add_argument("--stats", action="store_true", help="print FPS and per-stage times every second")
    add_max_pixels_argument(run_group)


def _add_input_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--input-width", type=int, default=None, help="capture width (cameras) or scaling (streams, files)")
    group.add_argument("--input-height", type=int, default=None, help="capture height (cameras) or scaling")
    group.add_argument("--input-rate", type=float, default=None, help="camera frame rate (csi, v4l2; rtsp via GStreamer)")
    group.add_argument("--input-codec", default=None, help="v4l2: raw or mjpeg; rtsp through GStreamer: h264 or h265")
    group.add_argument("--input-api", default="auto", choices=("auto", "opencv", "gstreamer"),
                       help="capture through OpenCV's own backends or a GStreamer pipeline (v4l2, rtsp)")
    group.add_argument("--input-flip", default="none", help="csi: none, rotate-180, clockwise, counterclockwise, "
                                                            "horizontal, vertical, ...")
    group.add_argument("--sensor-size", default=None, help="csi: sensor mode to ask for, WIDTHxHEIGHT (default: the output size)")
    group.add_argument("--input-loop", type=int, default=0, help="files: play N more times after the first, -1 forever")
    group.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a camera or stream (default 10)")


def _add_output_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--output-codec", default=None,
                       help="video files: FOURCC or name (mp4v, h264, MJPG, FFV1...); rtp/rtsp: h264 or h265")
    group.add_argument("--output-rate", type=float, default=None, help="frame rate written to files and streams "
                                                                       "(default: the source's)")
    group.add_argument("--bitrate", type=int, default=4000, help="rtp/rtsp bit rate in kbit/s (default 4000)")


def _sensor_size(text: str | None) -> tuple[int, int] | None:
    from ..errors import InputError

    if text is None:
        return None
    width, _, height = text.lower().partition("x")
    if not (width.isdigit() and height.isdigit()):
        raise InputError(f"--sensor-size {text}: expected WIDTHxHEIGHT, e.g. 1920x1080")
    return int(width), int(height)


def _sinks(args: argparse.Namespace) -> list:
    from ..errors import UnsupportedOptionError
    from ..pipeline import parse_sink, sink_from_uri

    texts = args.sink or (["null"] if args.headless else ["display://0"])
    uris = [parse_sink(text) for text in texts]
    if args.headless and any(uri.scheme == "display" for uri in uris):
        raise UnsupportedOptionError("--headless with a display:// sink: drop one of them")
    return [sink_from_uri(uri, fps=args.output_rate, codec=args.output_codec, bitrate_kbps=args.bitrate) for uri in uris]


def _print_stats(stats) -> None:
    print(f"stream: {stats.line()}", file=sys.stderr, flush=True)


def _check_numbers(args: argparse.Namespace) -> None:
    """Values that make no sense are refused up front, never silently accepted."""
    from ..errors import InputError
    from ._common import at_least

    at_least(args.input_width, 1, "--input-width")
    at_least(args.input_height, 1, "--input-height")
    at_least(args.input_loop, -1, "--input-loop", "-1 plays forever")
    if args.timeout <= 0:
        raise InputError(f"--timeout {args.timeout:g}: must be more than 0 seconds")
    if args.input_rate is not None and args.input_rate <= 0:
        raise InputError(f"--input-rate {args.input_rate:g}: must be more than 0")
    at_least(args.bitrate, 1, "--bitrate")


def _source_files(source) -> tuple[list, set]:
    """(files a file source reads, folders of images it reads), for the overwrite check."""
    from pathlib import Path

    images = [Path(p) for p in getattr(source, "paths", None) or []]
    location = getattr(source, "target", None)
    video = [Path(location)] if isinstance(location, str) and Path(location).is_file() else []
    return images + video, {p.parent for p in images}


def refuse_overwriting_source(source, sinks) -> None:
    """A sink that is the source file (via a link or another spelling), or frames into an image source's folder."""
    from pathlib import Path

    from .._io import same_file
    from ..errors import OutputError

    files, folders = _source_files(source)
    for sink in sinks:
        path, pattern = getattr(sink, "path", None), getattr(sink, "pattern", None)
        clash = next((item for item in files if path is not None and same_file(path, item)), None)
        if clash is not None:
            raise OutputError(f"--sink {sink.name}: is the source {clash}; writing it would destroy the input: "
                              "give another file")
        folder = next((f for f in folders if pattern is not None and same_file(Path(pattern).parent, f)), None)
        if folder is not None:
            raise OutputError(f"--sink {sink.name}: writes into the folder the source reads ({folder}); "
                              "give another folder")


def run(args: argparse.Namespace) -> int:
    from ..pipeline import Pipeline, parse_effect, source_from_uri
    from ._common import apply_max_pixels, runtime_from_args

    # Everything that can be checked without the model is checked first: a typo fails in milliseconds.
    _check_numbers(args)
    apply_max_pixels(args)
    source = source_from_uri(args.source, width=args.input_width, height=args.input_height, fps=args.input_rate,
                             api=args.input_api, codec=args.input_codec, flip=args.input_flip,
                             sensor_size=_sensor_size(args.sensor_size), loop=args.input_loop, timeout=args.timeout)
    sinks = _sinks(args)
    refuse_overwriting_source(source, sinks)
    effect = parse_effect(args.effect)
    from ._predict_io import refine_options

    refine = refine_options(args)
    for part in (source, *sinks):  # GStreamer, a GUI: fail before the model loads
        part.check()
    with runtime_from_args(args) as runtime:
        pipeline = Pipeline(runtime, source, sinks, effect, batch=args.batch, smoothing=args.smooth,
                            smooth_reset=args.smooth_reset, refine=refine,
                            max_frames=args.max_frames, stall_timeout=max(args.timeout, 1.0), show_stats=args.stats,
                            on_stats=_print_stats if args.stats else None)
        print(f"stream: {source.name} -> {', '.join(s.name for s in sinks)} (effect {args.effect}, batch "
              f"{pipeline.batch}, {runtime.backend}); Ctrl-C to stop", file=sys.stderr, flush=True)
        stats = pipeline.run()
    print(stats.summary())
    return 0

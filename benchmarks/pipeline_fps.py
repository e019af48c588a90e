"""What the streaming pipeline costs: pipeline FPS vs bare `Runtime.predict` FPS, batch 1.

  python benchmarks/pipeline_fps.py --threads 1                      # seeded u2net_test, 320x320, CPU
  python benchmarks/pipeline_fps.py --model u2netp.onnx --frames 200 # any artifact Runtime opens
  python benchmarks/pipeline_fps.py --arch u2netp --size 192 --threads 4

Four ways to process the same 640x480 clip, one frame per `predict` call, all ending in the mask:

* ``predict``: frames decoded into memory first, then `predict` + `to_mask_u8` in a loop on the
  calling thread (inference only: the ceiling).
* ``loop``: the hand-written OpenCV loop users write today: `cap.read()`, `predict`, `to_mask_u8`.
* ``pipeline-memory``: `Pipeline` over the pre-decoded frames (a `Source` that hands them out), so
  it does exactly the work of ``predict``: the difference is the pipeline's own cost (threads,
  queues, stats).
* ``pipeline-file``: `Pipeline(runtime, "clip.avi", "null", "mask").run()`, the same work as
  ``loop``, with decoding in its own thread.

FPS is frames over the wall time of the whole call (opening the file and starting threads
included). The target is a pipeline cost under 10%: pipeline-memory vs predict, and
pipeline-file vs loop. The four run alternately, `--repeats` times each, and medians are
compared, because on a shared machine the load changes from one second to the next.

Results go to benchmarks/results/pipeline_fps.json and .md, with the machine description and the
load average before and after (a loaded machine makes every number noisier).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine_info  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def make_video(path: Path, frames: int, width: int, height: int) -> Path:
    """A moving, textured scene (MJPG .avi): decoding costs what a real clip costs."""
    import cv2

    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (width, height))
    for i in range(frames):
        frame = np.roll(texture, 4 * i, axis=1) // 2
        cv2.circle(frame, (width // 4 + (3 * i) % (width // 2), height // 2), height // 5, (40, 200, 240), -1)
        writer.write(frame)
    writer.release()
    return path


def decode_all(path: Path) -> list[np.ndarray]:
    import cv2

    capture, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


def seeded_checkpoint(arch: str, folder: Path) -> Path:
    """Random weights: speed does not depend on the values, and nothing is downloaded."""
    import torch

    from u2deploy.model import create_model, save_checkpoint
    from u2deploy.spec import spec_for_task

    torch.manual_seed(0)
    return save_checkpoint(create_model(arch).eval(), folder / f"{arch}.pth", spec_for_task("sod", arch=arch),
                           {"source": "seeded random weights (benchmark)"})


def predict_fps(runtime, frames: list[np.ndarray]) -> float:
    from u2deploy.processing import to_mask_u8

    start = time.perf_counter()
    for frame in frames:
        to_mask_u8(runtime.predict(frame, channel_order="bgr"))
    return len(frames) / (time.perf_counter() - start)


def loop_fps(runtime, video: Path) -> float:
    import cv2

    from u2deploy.processing import to_mask_u8

    start, count = time.perf_counter(), 0
    capture = cv2.VideoCapture(str(video))
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        to_mask_u8(runtime.predict(frame, channel_order="bgr"))
        count += 1
    capture.release()
    return count / (time.perf_counter() - start)


def pipeline_fps(runtime, source, sink: str = "null", effect: str = "mask") -> tuple[float, dict]:
    from u2deploy.pipeline import Pipeline

    start = time.perf_counter()
    stats = Pipeline(runtime, source, sink, effect, batch=1).run(handle_signals=False)
    return stats.frames_out / (time.perf_counter() - start), stats.to_dict()


def memory_source(frames: list[np.ndarray]):
    from u2deploy.pipeline import Source

    class MemorySource(Source):
        """Pre-decoded frames, handed out in order (a file-like, non-live source)."""

        def __init__(self) -> None:
            super().__init__("memory")
            self.frames = iter(frames)

        def read(self):
            return next(self.frames, None)

    return MemorySource()


MODES = ("predict", "loop", "pipeline-memory", "pipeline-file")


def measure(args: argparse.Namespace, work: Path) -> dict:
    from u2deploy import Runtime

    model = args.model or seeded_checkpoint(args.arch, work)
    video = make_video(work / "clip.avi", args.frames, args.width, args.height)
    frames = decode_all(video)
    options = {"threads": args.threads} if args.threads else {}
    load_before = os.getloadavg()
    fps: dict[str, list[float]] = {mode: [] for mode in MODES}
    with Runtime(model, backend=args.backend, input_size=args.size, **options) as runtime:
        runtime.predict(frames[:2], channel_order="bgr")  # warm-up: first-call allocations
        for _ in range(args.repeats):  # alternate so a load spike hits every mode
            fps["predict"].append(predict_fps(runtime, frames))
            fps["loop"].append(loop_fps(runtime, video))
            fps["pipeline-memory"].append(pipeline_fps(runtime, memory_source(frames))[0])
            value, stats = pipeline_fps(runtime, str(video))
            fps["pipeline-file"].append(value)
        blur_fps, blur_stats = pipeline_fps(runtime, str(video), str(work / "out.mp4"), "blur")
        describe = runtime.describe()
    median = {mode: statistics.median(values) for mode, values in fps.items()}
    return {
        "machine": machine_info(), "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "model": str(args.model or f"{args.arch} (seeded random weights)"), "backend": describe["backend"],
        "device": describe.get("device"), "input_size": describe["input_size"], "threads": args.threads,
        "video": {"frames": len(frames), "width": args.width, "height": args.height, "codec": "MJPG"},
        "fps": fps, "fps_median": median,
        "overhead_memory_vs_predict": 1.0 - median["pipeline-memory"] / median["predict"],
        "overhead_file_vs_loop": 1.0 - median["pipeline-file"] / median["loop"],
        "overhead_file_vs_predict": 1.0 - median["pipeline-file"] / median["predict"],
        "target_overhead": 0.10, "last_pipeline_file_stats": stats,
        "blur_to_mp4_fps": blur_fps, "blur_to_mp4_stats": blur_stats,
    }


def markdown(result: dict) -> str:
    m = result["machine"]
    target = result["target_overhead"]
    stages = result["last_pipeline_file_stats"]["stages_ms"]
    rows = {"predict": "`predict` on pre-decoded frames (inference only)",
            "loop": "hand-written loop: `cap.read()` + `predict`",
            "pipeline-memory": "`Pipeline` over pre-decoded frames (same work as `predict`)",
            "pipeline-file": "`Pipeline` over the file (same work as the loop)"}

    def verdict(value: float) -> str:
        return f"**{100 * value:+.1f}%** ({'meets' if value < target else 'MISSES'} the < {100 * target:.0f}% target)"

    return "\n".join([
        f"# Pipeline FPS vs bare Runtime.predict ({time.strftime('%Y-%m-%d')})",
        "",
        f"- Machine: {m.get('cpu')}, {m['cores']} cores, {m['platform']}; Python {m['python']}; "
        + ", ".join(f"{k} {v}" for k, v in m["packages"].items()),
        f"- Load average before/after: {result['load_average_before'][0]:.2f} / {result['load_average_after'][0]:.2f} "
        "(1 min; the benchmark itself adds about 1, more means other jobs shared the CPU; every repeat is listed)",
        f"- Model: {result['model']}, backend {result['backend']} ({result['device']}), input "
        f"{result['input_size'][0]}x{result['input_size'][1]}, threads {result['threads'] or 'default'}",
        f"- Clip: {result['video']['frames']} frames {result['video']['width']}x{result['video']['height']} MJPG .avi; "
        "batch 1, effect mask, sink null",
        "",
        "| mode | FPS (median) | repeats |",
        "|---|---|---|",
        *(f"| {rows[mode]} | {result['fps_median'][mode]:.2f} | {', '.join(f'{v:.2f}' for v in values)} |"
          for mode, values in result["fps"].items()),
        "",
        f"- Pipeline cost, same work (pipeline-memory vs predict): {verdict(result['overhead_memory_vs_predict'])}",
        f"- Pipeline cost on a file (pipeline-file vs loop): {verdict(result['overhead_file_vs_loop'])}",
        f"- Pipeline on a file vs inference alone (decoding included): {100 * result['overhead_file_vs_predict']:+.1f}%",
        "",
        "A negative cost means the pipeline was faster: its capture, pre/post-processing and effect run in "
        "their own threads, beside inference, so with inference on fewer threads than cores they overlap.",
        "",
        "Per-stage ms/frame in the last pipeline-file run: " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items())
        + f". With `--effect blur` into an mp4 file: {result['blur_to_mp4_fps']:.2f} FPS.",
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="an artifact Runtime opens (default: seeded --arch weights)")
    parser.add_argument("--arch", default="u2net_test", choices=("u2net_test", "u2netp", "u2net"))
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--size", type=int, default=320, help="network input size (default 320)")
    parser.add_argument("--threads", type=int, default=None, help="inference threads (default: the backend's)")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS / "pipeline_fps"), help="result path without suffix "
                        "(default benchmarks/results/pipeline_fps)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(args, Path(tmp))
    text = markdown(result)
    print(text)
    stem = Path(args.out)
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    stem.with_suffix(".md").write_text(text)
    print(f"wrote {stem}.json and .md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Temporal stability of video masks: frame-to-frame change with and without ``--smooth``.

A static-camera clip is generated (seeded): a still object from the synthetic matting set over
its background, with per-frame sensor noise (sigma 3 grey levels) and a 1 % brightness flicker,
then a scene cut to another object at the middle. The maps come from the pretrained U2-Net
(ONNX Runtime FP32); the same maps go through each smoother setting, so only the smoothing differs.

Reported per setting: flicker (mean |m_t - m_{t-1}| over the frames that are not a cut, in
grey levels 0..255, and the share of pixels whose 0.5-thresholded mask flips), alpha MSE against
the truth (smoothing must not cost accuracy), and the MSE of the first frame after the cut (the
reset must make the new scene's mask appear at once instead of a ghost of the old one).

    python benchmarks/temporal.py              # 2 x 15 frames at 384x288, writes results/temporal.{json,md}
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine_info  # noqa: E402
from matting import make_sample  # noqa: E402

from u2deploy import Runtime, weights  # noqa: E402
from u2deploy.pipeline import MaskSmoother  # noqa: E402

RESULTS = Path(__file__).parent / "results"
SETTINGS = {"off": {"weight": 0.0}, "--smooth 0.5": {"weight": 0.5}, "--smooth 0.8": {"weight": 0.8},
            "--smooth 0.8 --smooth-reset 0": {"weight": 0.8, "reset": 0.0}}


def make_clip(frames_per_scene: int, width: int, height: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(BGR frames, true alphas): two still scenes, each with sensor noise and flicker, cut in the middle."""
    import cv2

    rng = np.random.default_rng(7)
    frames, alphas = [], []
    for seed in (3, 5):  # two objects over two different backgrounds
        image, alpha, _ = make_sample(seed, 512)
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32)
        alpha = cv2.resize(alpha, (width, height), interpolation=cv2.INTER_AREA)
        for _ in range(frames_per_scene):
            noisy = image * rng.uniform(0.99, 1.01) + rng.normal(0, 3, image.shape)
            frames.append(np.clip(np.rint(noisy), 0, 255).astype(np.uint8)[:, :, ::-1].copy())
            alphas.append(alpha)
    return frames, alphas


def evaluate(maps: list[np.ndarray], frames: list[np.ndarray], alphas: list[np.ndarray], cut: int,
             options: dict[str, float]) -> dict[str, float]:
    smoother = MaskSmoother(**options)
    out = [smoother(m, f) for m, f in zip(maps, frames, strict=True)]
    pairs = [(a, b) for i, (a, b) in enumerate(zip(out, out[1:], strict=False)) if i + 1 != cut]
    return {"flicker_grey": float(np.mean([np.abs(a - b).mean() for a, b in pairs]) * 255),
            "flipped_pct": float(np.mean([((a > 0.5) != (b > 0.5)).mean() for a, b in pairs]) * 100),
            "mse": float(np.mean([np.mean((m - t) ** 2) for m, t in zip(out, alphas, strict=True)])),
            "mse_after_cut": float(np.mean((out[cut] - alphas[cut]) ** 2)), "resets": smoother.resets}  # fmt: skip


def run(frames_per_scene: int, width: int, height: int) -> dict[str, object]:
    frames, alphas = make_clip(frames_per_scene, width, height)
    source = weights.download_path("u2net") or weights.resolve_weights("u2net")
    with Runtime(source, backend="onnxruntime" if str(source).endswith(".onnx") else "auto") as runtime:
        maps = [runtime.predict(frame, channel_order="bgr") for frame in frames]
    rows = [{"setting": name, **evaluate(maps, frames, alphas, frames_per_scene, options)}
            for name, options in SETTINGS.items()]
    return {"frames": len(frames), "size": f"{width}x{height}", "cut_at": frames_per_scene, "rows": rows,
            "machine": machine_info()}


def markdown(result: dict[str, object]) -> str:
    lines = [f"# Temporal stability on a static-camera clip ({result['frames']} frames, {result['size']}, "
             f"scene cut at frame {result['cut_at']})", "",
             "Maps: pretrained U2-Net, ONNX Runtime FP32; the same maps through each setting.", "",
             "| setting | flicker (grey levels / frame) | pixels flipping at 0.5 (% / frame) | alpha MSE | "
             "MSE of the first frame after the cut | resets |", "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['setting']} | {r['flicker_grey']:.3f} | {r['flipped_pct']:.3f} | {r['mse']:.5f} | "
                     f"{r['mse_after_cut']:.5f} | {r['resets']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=15, help="frames per scene")
    parser.add_argument("--width", type=int, default=384)
    parser.add_argument("--height", type=int, default=288)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    result = run(args.frames, args.width, args.height)
    text = markdown(result)
    print(text)
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "temporal.json").write_text(json.dumps(result, indent=1) + "\n")
        (RESULTS / "temporal.md").write_text(text)


if __name__ == "__main__":
    main()

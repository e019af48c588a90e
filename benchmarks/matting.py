"""Edge refinement judged by numbers: alpha error of none / guided / matting on a synthetic matting set.

The set is generated here (seeded, so every run sees the same images): objects with soft and
thin structures — a feathered body, hair-like strands, a motion-blurred variant — drawn at 4x and
area-downsampled so their true alpha is fractional, and composited over varied backgrounds (real
photos from scikit-image, smooth gradients, noise, stripes). The maps come from the pretrained
U2-Net through `Runtime` (ONNX Runtime FP32), i.e. what a user of ``u2deploy predict`` gets.

Metrics (matting literature conventions, Rhemann et al. 2009): SAD = sum |a - a*| / 1000, MSE =
mean (a - a*)^2, gradient error = sum (|grad a| - |grad a*|)^2 / 1000 with Gaussian derivatives
(sigma 1.4); each over the whole image, plus MSE over the edge band (true alpha strictly between 0
and 1, dilated by 10 px) where refinement acts. Time is the refinement alone, per image.

    python benchmarks/matting.py                   # 10 images at 512x512, writes results/matting.{json,md}
    python benchmarks/matting.py --count 4 --no-save
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine_info  # noqa: E402

from u2deploy import Runtime, weights  # noqa: E402
from u2deploy.refine import RefineOptions, refine_full  # noqa: E402
from u2deploy.samples import sample_photo  # noqa: E402

RESULTS = Path(__file__).parent / "results"
MODES = {"none": RefineOptions("none"), "smooth (rembg -ppm)": RefineOptions("none", post="smooth"),
         "guided": RefineOptions("guided"), "matting": RefineOptions("matting")}
#: photos are blurred (a shallow depth of field, as behind a portrait or a product) so they do not
#: compete with the object for saliency; textures stay sharp (a busy background near the edges)
BACKGROUND_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle")
BACKGROUND_TEXTURES = ("grass", "gravel", "brick")
SCALE = 4  # supersampling of the drawing: fractional alpha along every edge and strand


# --------------------------------------------------------------------------------------------
# The synthetic set


def _body_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random blob (radial function with a few harmonics), filled at 4x."""
    import cv2

    big = size * SCALE
    angles = np.linspace(0, 2 * np.pi, 180, endpoint=False)
    radius = 0.22 + sum(rng.uniform(0, 0.04) * np.cos(k * angles + rng.uniform(0, 6)) for k in (2, 3, 5))
    centre = rng.uniform(0.42, 0.58, 2)
    points = np.stack([centre[0] + radius * np.cos(angles), centre[1] + radius * 1.15 * np.sin(angles)], 1) * big
    mask = np.zeros((big, big), np.uint8)
    cv2.fillPoly(mask, [points.astype(np.int32)], 255, lineType=cv2.LINE_AA)
    return mask, points


def _strands(rng: np.random.Generator, mask: np.ndarray, points: np.ndarray, count: int) -> np.ndarray:
    """Hair-like strands: thin curved polylines growing outwards from the body's outline."""
    import cv2

    strands = np.zeros_like(mask)
    centre = points.mean(0)
    for index in rng.choice(len(points), count, replace=False):
        start = points[index]
        direction = (start - centre) / np.linalg.norm(start - centre)
        length, curl = rng.uniform(0.06, 0.16) * mask.shape[0], rng.uniform(-0.03, 0.03)
        path = [start]
        for _ in range(12):
            direction = direction @ np.array([[np.cos(curl), -np.sin(curl)], [np.sin(curl), np.cos(curl)]])
            path.append(path[-1] + direction * length / 12)
        thickness = int(rng.integers(2, 5))  # 0.5..1.25 px at the final size: partial coverage
        cv2.polylines(strands, [np.array(path, np.int32)], False, 255, thickness, cv2.LINE_AA)
    return np.maximum(mask, strands)


def _background(rng: np.random.Generator, kind: int, size: int) -> np.ndarray:
    import cv2

    names = BACKGROUND_PHOTOS + BACKGROUND_TEXTURES
    if kind < len(names):
        photo = sample_photo(names[kind])
        photo = np.repeat(photo[:, :, None], 3, 2) if photo.ndim == 2 else photo[:, :, :3]
        photo = cv2.resize(photo, (size, size), interpolation=cv2.INTER_AREA).astype(np.float64)
        return cv2.GaussianBlur(photo, (0, 0), size / 64) if kind < len(BACKGROUND_PHOTOS) else photo
    yy, xx = np.mgrid[:size, :size] / size
    colours = rng.uniform(0, 255, (2, 3))
    ramp = (xx * 0.6 + yy * 0.4)[:, :, None]
    return colours[0] * (1 - ramp) + colours[1] * ramp + rng.normal(0, 6, (size, size, 3))


def _foreground(rng: np.random.Generator, size: int) -> np.ndarray:
    """Object colours: a saturated base colour with shading and a little texture."""
    yy, xx = np.mgrid[:size, :size] / size
    base = rng.uniform(40, 230, 3)
    shade = 0.75 + 0.35 * (1 - np.hypot(xx - 0.45, yy - 0.4))
    return np.clip(base * shade[:, :, None] + rng.normal(0, 5, (size, size, 3)), 0, 255)


def make_sample(seed: int, size: int = 512) -> tuple[np.ndarray, np.ndarray, str]:
    """(RGB uint8 image, true alpha float32, description) for one seed."""
    import cv2

    rng = np.random.default_rng(seed)
    mask, points = _body_mask(rng, size)
    kind = "strands"
    if seed % 3 != 2:
        mask = _strands(rng, mask, points, int(rng.integers(25, 60)))
    alpha = cv2.resize(mask.astype(np.float32) / 255, (size, size), interpolation=cv2.INTER_AREA)
    if seed % 3 == 1:  # motion blur: the whole object smeared along a line
        kind = "strands + motion blur"
        length = int(rng.integers(9, 17))
        kernel = np.zeros((length, length), np.float32)
        kernel[length // 2, :] = 1.0 / length
        kernel = cv2.warpAffine(kernel, cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), rng.uniform(0, 180), 1),
                                (length, length))
        alpha = cv2.filter2D(alpha, -1, kernel / kernel.sum())
    elif seed % 3 == 2:
        kind = "feathered body"
        alpha = cv2.GaussianBlur(alpha, (0, 0), rng.uniform(1.5, 3.0))
    alpha = np.clip(alpha, 0, 1)
    background = _background(rng, seed % (len(BACKGROUND_PHOTOS) + len(BACKGROUND_TEXTURES) + 2), size)
    image = alpha[:, :, None] * _foreground(rng, size) + (1 - alpha[:, :, None]) * background
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), alpha.astype(np.float32), kind


# --------------------------------------------------------------------------------------------
# Metrics


def _gradient_magnitude(alpha: np.ndarray) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    alpha = alpha.astype(np.float64)
    return np.hypot(gaussian_filter(alpha, 1.4, order=(0, 1)), gaussian_filter(alpha, 1.4, order=(1, 0)))


def metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    import cv2

    diff = pred.astype(np.float64) - truth
    band = cv2.dilate(((truth > 0) & (truth < 1)).astype(np.uint8), np.ones((21, 21), np.uint8)).astype(bool)
    return {"sad": float(np.abs(diff).sum() / 1000), "mse": float(np.mean(diff**2)),
            "grad": float(((_gradient_magnitude(pred) - _gradient_magnitude(truth)) ** 2).sum() / 1000),
            "mse_band": float(np.mean(diff[band] ** 2))}  # fmt: skip


# --------------------------------------------------------------------------------------------
# Run


def run(count: int, size: int) -> dict[str, object]:
    source = weights.download_path("u2net") or weights.resolve_weights("u2net")
    rows = []
    with Runtime(source, backend="onnxruntime" if str(source).endswith(".onnx") else "auto") as runtime:
        for seed in range(count):
            image, truth, kind = make_sample(seed, size)
            saliency = runtime.predict(image)
            for mode, options in MODES.items():
                start = time.perf_counter()
                refined = refine_full(saliency, image, options, foreground=False)
                seconds = time.perf_counter() - start
                rows.append({"seed": seed, "kind": kind, "mode": mode, "ms": seconds * 1e3, **metrics(refined.alpha, truth)})
            print(f"seed {seed} ({kind}): " + ", ".join(f"{r['mode']} mse {r['mse']:.5f}" for r in rows[-len(MODES):]),
                  flush=True)
    return {"count": count, "size": size, "rows": rows, "summary": summarise(rows), "machine": machine_info()}


def summarise(rows: list[dict[str, object]]) -> list[dict[str, float | str]]:
    summary = []
    base = np.mean([r["mse"] for r in rows if r["mode"] == "none"])
    for mode in MODES:
        picked = [r for r in rows if r["mode"] == mode]
        entry = {"mode": mode, **{k: float(np.mean([r[k] for r in picked])) for k in ("sad", "mse", "grad", "mse_band", "ms")}}
        entry["mse_vs_none"] = entry["mse"] / base - 1.0
        summary.append(entry)
    return summary


def markdown(result: dict[str, object]) -> str:
    machine = result["machine"]
    lines = [f"# Edge refinement on the synthetic matting set ({result['count']} images, {result['size']}x{result['size']})",
             "", "Maps: pretrained U2-Net, ONNX Runtime FP32. Mean over the images; time is the refinement alone "
             "(mean ms per image; the 2-core machine was shared with other jobs while this ran, so times are noisy).",
             "", "| refine | SAD | MSE | MSE vs none | gradient | MSE in edge band | ms / image |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for s in result["summary"]:
        lines.append(f"| {s['mode']} | {s['sad']:.2f} | {s['mse']:.5f} | {s['mse_vs_none']:+.0%} | {s['grad']:.2f} | "
                     f"{s['mse_band']:.5f} | {s['ms']:.0f} |")
    lines += ["", f"Machine: {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores (shared). "
              "Defaults: guided radius 4, eps 1e-4; matting trimap fg >= 240, bg <= 10, erode 10, solve <= 1024 px."]
    return "\n".join(lines) + "\n"


def guided_timing(repeat: int = 50) -> dict[str, float]:
    """`guided_filter` on a 1280x720 frame, one OpenCV thread; a 5x5 Gaussian blur of the frame beside it as a yardstick."""
    import cv2

    cv2.setNumThreads(1)
    from u2deploy.refine import guided_filter

    image, _, _ = make_sample(0, 720)
    frame = np.ascontiguousarray(cv2.resize(image, (1280, 720)))
    saliency = np.random.default_rng(0).random((720, 1280)).astype(np.float32)
    times: dict[str, list[float]] = {"guided": [], "gaussian_5x5": []}
    for _ in range(repeat):  # interleaved, so both see the same load
        for name, call in (("guided", lambda: guided_filter(frame, saliency)),
                           ("gaussian_5x5", lambda: cv2.GaussianBlur(frame, (5, 5), 0))):
            start = time.perf_counter()
            call()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {f"{name}_{stat}_ms": float(fn(values)) for name, values in times.items()
            for stat, fn in (("min", np.min), ("median", np.median))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("--guided-timing", action="store_true", help="only time guided at 1280x720 (one thread)")
    args = parser.parse_args()
    if args.guided_timing:
        timing = {**guided_timing(), "machine": machine_info()}
        print(json.dumps(timing, indent=1))
        if not args.no_save:
            (RESULTS / "guided_720p.json").write_text(json.dumps(timing, indent=1) + "\n")
        return
    result = run(args.count, args.size)
    text = markdown(result)
    print(text)
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "matting.json").write_text(json.dumps(result, indent=1) + "\n")
        (RESULTS / "matting.md").write_text(text)


if __name__ == "__main__":
    main()

"""Fast (OpenCV) vs reference (upstream-exact) pre/post-processing on real photos.

Same network and weights (ONNX Runtime FP32 on the pretrained u2net), only the processing
differs. Prints the map difference per photo and the processing time per mode on a small and a
large photo, and records them in benchmarks/results/processing_modes.{json,md}.

    python benchmarks/processing_modes.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine_info  # noqa: E402

from u2deploy import Runtime, processing, weights  # noqa: E402
from u2deploy.samples import PARITY_PHOTOS, sample_photos  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def _time(fn, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def map_differences(runtime: Runtime) -> list[dict[str, object]]:
    rows = []
    spec = runtime.spec
    for name, image in sample_photos(PARITY_PHOTOS).items():
        maps = {}
        for mode in processing.MODES:
            x, size = processing.preprocess(image, spec, mode)
            maps[mode] = processing.postprocess(runtime.infer(x)[0], spec, size, mode)
        fast, ref = maps["fast"], maps["reference"]
        union = np.logical_or(fast > 0.5, ref > 0.5).sum()
        iou = np.logical_and(fast > 0.5, ref > 0.5).sum() / union if union else 1.0
        rows.append({"photo": name, "size": f"{image.shape[1]}x{image.shape[0]}", "mae": float(np.abs(fast - ref).mean()),
                     "max_abs": float(np.abs(fast - ref).max()), "iou": float(iou)})  # fmt: skip
    return rows


def processing_times(spec) -> list[dict[str, object]]:
    rows = []
    photo = sample_photos(("astronaut",))["astronaut"]
    large = np.ascontiguousarray(np.tile(photo, (6, 8, 1)))  # 3072x4096, a phone photo
    fused = np.random.default_rng(0).random((1, 1, 320, 320)).astype(np.float32)
    for label, image in (("512x512", photo), ("4096x3072", large)):
        for mode in processing.MODES:
            pre = _time(lambda image=image, mode=mode: processing.preprocess(image, spec, mode))
            post = _time(lambda image=image, mode=mode: processing.postprocess(fused, spec, image.shape[:2], mode))
            rows.append({"image": label, "mode": mode, "preprocess_ms": round(pre, 2), "postprocess_ms": round(post, 2)})
    return rows


def main() -> None:
    source = weights.download_path("u2net") or weights.resolve_weights("u2net")
    runtime = Runtime(source, backend="onnxruntime" if str(source).endswith(".onnx") else "auto")
    differences = map_differences(runtime)
    times = processing_times(runtime.spec)
    result = {"machine": machine_info(), "model": str(Path(source).name), "map_differences": differences, "times": times}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "processing_modes.json").write_text(json.dumps(result, indent=2))
    lines = ["| photo | size | MAE fast vs reference | max abs | IoU@0.5 |", "|---|---|---|---|---|"]
    lines += [f"| {r['photo']} | {r['size']} | {r['mae']:.4f} | {r['max_abs']:.3f} | {r['iou']:.4f} |" for r in differences]
    lines += ["", "| image | mode | preprocess ms | postprocess ms |", "|---|---|---|---|"]
    lines += [f"| {r['image']} | {r['mode']} | {r['preprocess_ms']} | {r['postprocess_ms']} |" for r in times]
    text = "\n".join(lines)
    (RESULTS / "processing_modes.md").write_text(f"Machine: {result['machine'].get('cpu')}, {result['machine']['cores']} cores\n\n{text}\n")
    print(text)


if __name__ == "__main__":
    main()

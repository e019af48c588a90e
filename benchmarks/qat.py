"""What N minutes of quantization-aware fine-tuning on this CPU buy, against the PTQ Q/DQ graph it starts from.

    python benchmarks/qat.py                                   # pretrained u2net, 320, budgets 2 5 10 min
    python benchmarks/qat.py --minutes 2 5 --crop 160 --batch 2

Pretrained U2-Net at 320x320. The fp32 ONNX and the TensorRT-form Q/DQ ONNX are made by
`u2deploy.export` (calibrated on the 12 bundled stand-in photos, `write_sample_images`; the
calibration cache makes a rerun skip it). Each budget is its own run from the PTQ graph (the cosine
decay fits the budget), distilled from the fp32 graph on the same 12 stand-in photos, then judged
per held-out photo (`sensitivity.held_out_photos`: the parity photos plus scikit-learn's and
matplotlib's, never trained on) in exact INT8 emulation (ONNX Runtime, graph optimisation off)
against the fp32 graph's maps: mask IoU at 0.5 and map MAE, both maps min-max normalised as the
export gate does. Writes benchmarks/results/qat.{json,md} with the machine and its load average.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _graphs(folder: Path, images: Path) -> tuple[Any, Any]:
    import onnx

    from u2deploy.export import CalibrationOptions, export

    fp32 = export("u2net", f"{folder}/", fmt="onnx", verify=False, progress=False).path
    qdq = export("u2net", f"{folder}/", fmt="onnx", precision="int8", verify=False, progress=False,
                 calibration=CalibrationOptions(str(images), count=12, seed=0)).path
    return onnx.load(str(fp32)), onnx.load(str(qdq))


def _row(label: str, score: Any, extra: dict[str, Any]) -> dict[str, Any]:
    return {"variant": label, **score.summary(), "iou": score.iou, "map_mae": score.map_mae, **extra}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[2, 5, 10])
    parser.add_argument("--crop", type=int, default=160, help="training crop (default 160: 4x cheaper than 320)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "qat"))
    args = parser.parse_args()

    from u2deploy.calibration.qat_train import DistillImages, QatOptions, fine_tune
    from u2deploy.calibration.sensitivity import Emulator, held_out_photos
    from u2deploy.calibration.source import write_sample_images
    from u2deploy.processing import load_image

    folder = Path(tempfile.mkdtemp(prefix="u2deploy-qat-"))
    images = write_sample_images(folder / "stand_in")
    fp32, qdq = _graphs(folder / "graphs", images)
    emulator = Emulator(fp32, held_out_photos())
    spec = emulator.spec
    arrays = [load_image(p) for p in sorted(images.glob("*.png"))]
    rows = [_row("PTQ (NNCF, mse)", emulator.score(qdq), {"minutes": 0, "iterations": 0})]
    print(_line(rows[-1]), flush=True)
    for minutes in args.minutes:
        pool = DistillImages(arrays, spec, crop=args.crop, seed=0)
        options = QatOptions(minutes=minutes, batch=args.batch, crop=args.crop)
        run = fine_tune(fp32, qdq, pool, options, log=lambda line: print(line, file=sys.stderr, flush=True))
        rows.append(_row(f"QAT {minutes:g} min", emulator.score(run.model), run.summary()))
        print(_line(rows[-1]), flush=True)
    _write(Path(args.out), rows, emulator.names, args)
    return 0


def _line(row: dict[str, Any]) -> str:
    return (f"{row['variant']}: mean IoU {row['mean_iou']:.4f}, worst {row['worst_iou']:.4f} ({row['worst_image']}), "
            f"mean map MAE {row['mean_map_mae']:.5f}, {row['iterations']} steps")


def _write(out: Path, rows: list[dict[str, Any]], names: list[str], args: argparse.Namespace) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"model": "u2net (pretrained), 320x320", "calibration": "12 bundled stand-in photos",
              "training_images": "the same 12 stand-in photos", "crop": args.crop, "batch": args.batch,
              "judged_on": names, "machine": machine_info(), "rows": rows, "when": time.strftime("%Y-%m-%d %H:%M")}
    out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    lines = [f"QAT against PTQ, pretrained U2-Net 320x320, exact INT8 emulation vs the fp32 graph on {len(names)} "
             f"held-out photos (crop {args.crop}, batch {args.batch}; load average at the end "
             f"{record['machine'].get('load_average')}).", "",
             "| variant | steps | mean IoU | worst IoU | mean map MAE | " + " | ".join(names) + " |",
             "|---|---|---|---|---|" + "---|" * len(names)]
    for row in rows:
        cells = [f"{row['iou'][n]:.3f} / {row['map_mae'][n]:.4f}" for n in names]
        lines.append(f"| {row['variant']} | {row['iterations']} | {row['mean_iou']:.4f} | {row['worst_iou']:.4f} "
                     f"| {row['mean_map_mae']:.5f} | " + " | ".join(cells) + " |")
    lines += ["", "Per photo: mask IoU at 0.5 / map MAE."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())

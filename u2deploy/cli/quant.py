"""INT8 tools: which layers INT8 hurts, a mixed INT8 + FP16 Q/DQ ONNX that meets a quality target, and
quantization-aware fine-tuning of the Q/DQ ONNX without labels.

  u2deploy quant sensitivity u2net --calib photos/ -o sens/        # ranked table (md/csv/json) + plot
  u2deploy quant mixed u2net --calib photos/ -o u2net_320_mixed.onnx  # --keep-float auto, default target
  u2deploy quant mixed u2net --calib photos/ --target-mean 0.99 --target-worst 0.97
  u2deploy quant qat u2net --calib photos/ --minutes 10 -o u2net_320_qat.onnx  # distilled from the fp32 maps

All calibrate (or reuse the calibration cache) exactly as `u2deploy export --fmt onnx --int8`
does, then judge graphs in exact INT8 emulation (ONNX Runtime, graph optimisation off) against the
fp32 maps on held-out photos (the five parity photos plus scikit-learn's and matplotlib's sample
photos when installed). `--fp32 F --qdq Q` starts from graphs made earlier. docs/int8.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    sens = sub.add_parser("sensitivity", help="per block/conv mask-quality drop, alone INT8 and alone float")
    _common(sens)
    sens.add_argument("-o", "--out", default="sensitivity", help="folder for sensitivity.{md,csv,json,png}")
    sens.add_argument("--refine", type=int, default=1, help="worst blocks also measured conv by conv (default 1)")
    sens.add_argument("--float-only", action="store_true", help="skip the alone-INT8 pass (half the time)")
    sens.add_argument("--rank-photos", type=int, default=3, metavar="N",
                      help="measure each variant on the N photos full INT8 scores worst on (default 3; 0: all)")
    mixed = sub.add_parser("mixed", help="keep the fewest MACs float (fp16) that meet a quality target")
    _common(mixed)
    mixed.add_argument("-o", "--out", required=True, help="the mixed Q/DQ ONNX to write (+ .json manifest)")
    mixed.add_argument("--target-mean", type=float, default=0.985, help="mean mask IoU vs FP32 (default 0.985)")
    mixed.add_argument("--target-worst", type=float, default=0.95, help="worst photo's IoU vs FP32 (default 0.95)")
    qat = sub.add_parser("qat", help="fine-tune the Q/DQ ONNX with fake INT8, distilled from the FP32 maps (no labels)")
    _common(qat)
    qat.add_argument("-o", "--out", required=True, help="the fine-tuned Q/DQ ONNX to write (+ .json record)")
    qat.add_argument("--images", default=None, metavar="DIR|GLOB", help="training images (default: the --calib ones)")
    qat.add_argument("--minutes", type=float, default=None, help="wall-clock budget (with or instead of --iters)")
    qat.add_argument("--iters", type=int, default=None, metavar="N", help="optimizer steps")
    qat.add_argument("--batch", type=int, default=2, help="crops per step (default 2)")
    qat.add_argument("--crop", type=int, default=None, metavar="PX",
                     help="training crop side: the input size / 2, 4, ... (default: the input size)")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="weights name (u2net, u2netp, ...) or .pth checkpoint")
    parser.add_argument("--calib", default=None, metavar="DIR|GLOB", help="calibration images")
    parser.add_argument("--calib-count", type=int, default=64, metavar="N", help="images to use (default 64)")
    parser.add_argument("--calib-seed", type=int, default=0, metavar="S")
    parser.add_argument("--size", default=None, help="input size (default: the checkpoint's)")
    parser.add_argument("--fp32", default=None, help="an fp32 ONNX made earlier (with --qdq)")
    parser.add_argument("--qdq", default=None, help="its Q/DQ ONNX made earlier (with --fp32)")
    parser.add_argument("--no-extra-photos", action="store_true", help="judge on the five parity photos only")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def run(args: argparse.Namespace) -> int:
    from ..calibration.sensitivity import Emulator, held_out_photos, load_models, measure_sensitivity

    if args.action == "qat":
        from ._qat import run_qat

        return run_qat(args)
    fp32_path, qdq_path = _graphs(args)
    fp32, qdq = load_models(fp32_path, qdq_path)
    log = None if args.quiet else _say
    emulator = Emulator(fp32, held_out_photos(extra=not args.no_extra_photos))
    _say(f"judging on {len(emulator.names)} held-out photos: {', '.join(emulator.names)}", args.quiet)
    if args.action == "mixed":
        from ..calibration.autokeep import block_report

        return _write_mixed(args, block_report(fp32, qdq, emulator), fp32, qdq, emulator, Path(qdq_path))
    report = measure_sensitivity(fp32, qdq, emulator=emulator, refine=args.refine, both=not args.float_only, log=log,
                                 rank_photos=args.rank_photos or None)
    return _write_sensitivity(report, Path(args.out))


def _say(line: str, quiet: bool = False) -> None:
    if not quiet:
        print(line, file=sys.stderr, flush=True)


def _graphs(args: argparse.Namespace) -> tuple[Path, Path]:
    """The fp32 and Q/DQ ONNX: given, or exported (the Q/DQ one through the calibration cache)."""
    from ..errors import InputError
    from ..export import CalibrationOptions, export
    from ..spec import parse_size
    from ..weights import cache_dir

    if (args.fp32 is None) != (args.qdq is None):
        raise InputError("--fp32 and --qdq go together: the fp32 ONNX and the Q/DQ ONNX calibrated from it")
    if args.fp32 is not None:
        return Path(args.fp32), Path(args.qdq)
    if not args.calib:
        raise InputError("quant needs calibration images: add --calib DIR|GLOB (or --fp32 F --qdq Q made earlier)")
    size = parse_size(args.size) if args.size else None
    folder = cache_dir() / "quant" / Path(str(args.model)).stem
    folder.mkdir(parents=True, exist_ok=True)
    fields = {"input_size": size, "verify": False, "progress": not args.quiet}
    fp32 = export(args.model, f"{folder}/", fmt="onnx", **fields).path
    calibration = CalibrationOptions(args.calib, count=args.calib_count, seed=args.calib_seed)
    qdq = export(args.model, f"{folder}/", fmt="onnx", precision="int8", calibration=calibration, **fields).path
    return Path(fp32), Path(qdq)


def _write_sensitivity(report, out: Path) -> int:
    from ..calibration.sensitivity import markdown, write_report

    files = write_report(report, out)
    print(markdown(report))
    _say(f"wrote {', '.join(str(f) for f in files)}")
    return 0


def _write_mixed(args: argparse.Namespace, report, fp32, qdq, emulator, qdq_path: Path) -> int:
    import json

    from .._io import atomic_write_bytes, atomic_write_text
    from ..calibration.autokeep import Target, choose_float
    from ..calibration.mixed import float_convs, to_mixed_fp16
    from ..calibration.qdq import check_tensorrt_form
    from ..errors import ParityError

    target = Target(args.target_mean, args.target_worst)
    choice = choose_float(report, fp32, qdq, emulator, target, log=None if args.quiet else _say)
    if not choice.met:
        raise ParityError(f"no float set found that meets {target.describe()}: best mean IoU "
                          f"{choice.score.mean_iou:.4f}, worst {choice.score.worst[1]:.4f} (nothing was written)")
    mixed = to_mixed_fp16(float_convs(qdq, fp32, choice.nodes), choice.nodes)
    form = check_tensorrt_form(mixed)
    score = emulator.score(mixed)  # judged as written: the float part in fp16
    if not target.met(score):
        raise ParityError(f"the float set meets {target.describe()} in fp32 but not in fp16: mean IoU "
                          f"{score.mean_iou:.4f}, worst {score.worst[1]:.4f} (nothing was written)")
    out = Path(args.out)
    atomic_write_bytes(out, mixed.SerializeToString())
    record = {"source_qdq": str(qdq_path), "keep_float": "auto", "auto": choice.to_dict(), "graph": form,
              "score_fp16_float_part": score.summary(), "photos": emulator.names,
              "verified_with": "onnxruntime, graph optimisation disabled (Q/DQ computed literally, as TensorRT)"}
    atomic_write_text(out.with_name(out.name + ".json"), json.dumps({"mixed_precision": record}, indent=2) + "\n")
    print(f"{out}: {len(choice.nodes)} nodes float (fp16, {choice.macs_percent:.1f}% of the MACs; "
          f"{', '.join(choice.groups)}); mean IoU {score.mean_iou:.4f}, worst {score.worst[1]:.4f} "
          f"({score.worst[0]}) vs FP32")
    return 0

"""Export to ONNX, OpenVINO IR or a TensorRT engine, parity-checked against PyTorch FP32.

  u2deploy export u2net --fmt onnx                       # u2net_320_fp32.onnx + .onnx.json
  u2deploy export u2net --fmt onnx --fp16 --dynamic      # fp16 graph, dynamic batch
  u2deploy export my_run/best.pth --fmt openvino --fp16 -o models/
  u2deploy export u2net --fmt openvino --int8 --calib photos/ --calib-count 64
  u2deploy export u2net.onnx --fmt trt --fp16 --dynamic 1:4:8 --workspace 4

Every export runs the artifact on five real photos and compares it with the PyTorch model
(max/mean abs error, mask IoU at 0.5, MAE, max F-beta); beyond the limits for its precision
(docs/export.md) nothing is written and the command exits with 1. --no-verify skips the check.
The manifest <artifact>.json beside the file records how it was made and the parity report.
"""

from __future__ import annotations

import argparse

FORMATS = ("onnx", "openvino", "trt")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="weights name (u2net, u2netp, ...), .pth/.pt checkpoint or U2-Net .onnx")
    parser.add_argument("--fmt", required=True, help=f"output format: {', '.join(FORMATS)}")
    parser.add_argument("-o", "--out", default=None,
                        help="output file or folder (default: e.g. u2net_320_fp16.onnx in the current folder)")
    precision = parser.add_argument_group("precision")
    precision.add_argument("--fp16", action="store_true", help="fp16 weights and compute (fp32 input/output)")
    precision.add_argument("--int8", action="store_true", help="INT8, calibrated on --calib images")
    precision.add_argument("--bf16", action="store_true",
                           help="--fmt openvino: fp32 weights computed in bf16 on CPUs with AVX512_BF16/AMX")
    shape = parser.add_argument_group("shape and outputs")
    shape.add_argument("--size", default=None, help="input size, e.g. 320 or 320x288 (default: the model's)")
    shape.add_argument("--batch", type=int, default=None, help="static batch size (default 1)")
    shape.add_argument("--dynamic", nargs="?", const="batch", default=None, metavar="AXES|MIN:OPT:MAX",
                       help="dynamic axes: batch (the default), hw, all; for --fmt trt a batch profile MIN:OPT:MAX")
    shape.add_argument("--outputs", default="fused", choices=("fused", "all"),
                       help="the fused map only (default) or all 7 maps")
    shape.add_argument("--opset", type=int, default=17, help="ONNX opset, 17..20 (default 17)")
    shape.add_argument("--task", default=None, choices=("sod", "human", "portrait"),
                       help="task for checkpoints that carry none")
    parser.add_argument("--no-verify", action="store_true", help="skip the parity check against PyTorch")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    calib = parser.add_argument_group("INT8 calibration (with --int8)")
    calib.add_argument("--calib", default=None, metavar="DIR|GLOB", help="calibration images")
    calib.add_argument("--calib-count", type=int, default=None, metavar="N", help="number of images (default 64)")
    calib.add_argument("--calib-seed", type=int, default=None, metavar="S", help="seed for picking them (default 0)")
    calib.add_argument("--calib-method", default=None, choices=("minmax", "entropy", "percentile", "mse"),
                       help="activation range estimator (default mse; docs/int8.md compares them)")
    trt = parser.add_argument_group("TensorRT (with --fmt trt)")
    trt.add_argument("--workspace", type=float, default=None, metavar="GB", help="builder workspace limit")
    trt.add_argument("--opt-level", type=int, default=None, metavar="0-5", help="builder optimisation level")
    trt.add_argument("--timing-cache", default=None, metavar="PATH", help="timing cache file (read and updated)")
    trt.add_argument("--dla-core", type=int, default=None, metavar="N", help="build for DLA core N (Jetson)")
    trt.add_argument("--accept-unseen-precision", action="store_const", const=True, default=None,
                     help="keep an fp16/int8 engine whose layer precisions TensorRT hides (recorded in the manifest)")


def _precision(args: argparse.Namespace) -> str:
    from ..errors import UnsupportedOptionError

    chosen = [name for name in ("fp16", "int8", "bf16") if getattr(args, name, False)]
    if len(chosen) > 1:
        raise UnsupportedOptionError(f"--{' and --'.join(chosen)} exclude each other; pick one")
    return chosen[0] if chosen else "fp32"


def _group(cls: type, values: dict) -> object | None:
    """An options group from the flags the user gave, or None when none was given."""
    given = {key: value for key, value in values.items() if value is not None}
    return cls(**given) if given else None


def options_from_args(args: argparse.Namespace, command: str | None = None):
    """The `ExportOptions` the flags ask for, unvalidated and unchanged."""
    from ..export import CalibrationOptions, ExportOptions, TensorRTOptions
    from ..export.options import parse_dynamic
    from ..spec import parse_size

    dynamic, profile = parse_dynamic(args.dynamic)
    calibration = _group(CalibrationOptions, {"source": args.calib, "count": args.calib_count,
                                              "seed": args.calib_seed, "method": args.calib_method})  # fmt: skip
    tensorrt = _group(TensorRTOptions, {"workspace_gb": args.workspace, "opt_level": args.opt_level,
                                        "timing_cache": args.timing_cache, "dla_core": args.dla_core,
                                        "accept_unseen_precision": args.accept_unseen_precision})  # fmt: skip
    size = parse_size(args.size) if args.size else None
    return ExportOptions(fmt=args.fmt, precision=_precision(args), input_size=size, batch=args.batch, dynamic=dynamic,
                         profile=profile, outputs=args.outputs, opset=args.opset, verify=not args.no_verify,
                         task=args.task, calibration=calibration, tensorrt=tensorrt, command=command,
                         progress=not args.quiet)  # fmt: skip


def _summary(result) -> str:
    size = result.path.stat().st_size / 1e6
    extra = [f.name for f in result.files[1:]]
    line = f"wrote {result.path} ({size:.1f} MB) + {', '.join(extra)}"
    if result.parity is not None:
        line += f"\nparity {result.parity.precision} vs PyTorch FP32: {result.parity.describe()}"
    return line


def run(args: argparse.Namespace) -> int:
    import shlex
    import sys

    from ..export import export

    # sys.argv is this command line only when we were started as `u2deploy export ...` (not from tests)
    from_shell = sys.argv[1:2] == [args.command]
    command = "u2deploy " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if from_shell else None
    result = export(args.model, args.out, options=options_from_args(args, command))
    print(_summary(result))
    return 0

"""Export to ONNX, OpenVINO IR or a TensorRT engine, parity-checked against PyTorch FP32.

  u2deploy export u2net --fmt onnx                       # u2net_320_fp32.onnx + .onnx.json
  u2deploy export u2net --fmt onnx --fp16 --dynamic      # fp16 graph, dynamic batch
  u2deploy export my_run/best.pth --fmt openvino --fp16 -o models/
  u2deploy export u2net --fmt openvino --int8 --calib photos/ --calib-count 64
  u2deploy export u2net.onnx --fmt trt --fp16 --dynamic 1:4:8 --workspace 4
  u2deploy export u2net --fmt triton -o repo/ --backend onnxruntime --ensemble   # Triton model repository

Every export runs the artifact on five real photos and compares it with the PyTorch model
(max/mean abs error, mask IoU at 0.5, MAE, max F-beta); beyond the limits for its precision
(docs/export.md) nothing is written and the command exits with 1. --no-verify skips the check.
The manifest <artifact>.json beside the file records how it was made and the parity report.
"""

from __future__ import annotations

import argparse

FORMATS = ("onnx", "openvino", "trt", "triton")


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
    calib.add_argument("--keep-float", default=None, choices=("fuse", "heads", "none", "auto"),
                       help="what stays out of INT8 (default fuse: the output head); auto: the fewest MACs that "
                            "meet mean IoU >= 0.985, worst >= 0.95 (fp16 in the Q/DQ graph)")
    trt = parser.add_argument_group("TensorRT (with --fmt trt)")
    trt.add_argument("--workspace", type=float, default=None, metavar="GB", help="builder workspace limit")
    trt.add_argument("--opt-level", type=int, default=None, metavar="0-5", help="builder optimisation level")
    trt.add_argument("--timing-cache", default=None, metavar="PATH", help="timing cache file (read and updated)")
    trt.add_argument("--dla-core", type=int, default=None, metavar="N", help="build for DLA core N (Jetson)")
    trt.add_argument("--accept-unseen-precision", action="store_const", const=True, default=None,
                     help="keep an fp16/int8 engine whose layer precisions TensorRT hides (recorded in the manifest)")
    _add_triton_arguments(parser)


def _add_triton_arguments(parser: argparse.ArgumentParser) -> None:
    triton = parser.add_argument_group("Triton model repository (with --fmt triton; -o is the repository folder)")
    triton.add_argument("--backend", default=None, choices=("onnxruntime", "openvino", "tensorrt"),
                        help="Triton backend serving the network (default onnxruntime)")
    triton.add_argument("--name", default=None, help="model name (default <arch>_<precision>)")
    triton.add_argument("--model-version", type=int, default=None, metavar="N", help="version folder (default 1)")
    triton.add_argument("--max-batch", type=int, default=None, metavar="N", help="max_batch_size (default 8)")
    triton.add_argument("--preferred-batch", default=None, metavar="A,B",
                        help="dynamic batching's preferred sizes (default max/2,max)")
    triton.add_argument("--queue-delay", type=int, default=None, metavar="US",
                        help="max_queue_delay_microseconds (default 100)")
    triton.add_argument("--instances", type=int, default=None, metavar="N", help="instances per device (default 1)")
    triton.add_argument("--instance-kind", default=None, choices=("gpu", "cpu"),
                        help="default: cpu for openvino, gpu otherwise")
    triton.add_argument("--trt-accelerator", action="store_true", default=None,
                        help="onnxruntime on GPUs: run through its TensorRT accelerator at the export's precision")
    triton.add_argument("--ensemble", action="store_true", default=None,
                        help="add Python-backend pre/post models and an ensemble: image bytes in, PNG mask out")


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
                                              "seed": args.calib_seed, "method": args.calib_method,
                                              "keep_float": args.keep_float})  # fmt: skip
    tensorrt = _group(TensorRTOptions, {"workspace_gb": args.workspace, "opt_level": args.opt_level,
                                        "timing_cache": args.timing_cache, "dla_core": args.dla_core,
                                        "accept_unseen_precision": args.accept_unseen_precision})  # fmt: skip
    triton = _triton_options(args)
    size = parse_size(args.size) if args.size else None
    return ExportOptions(fmt=args.fmt, precision=_precision(args), input_size=size, batch=args.batch, dynamic=dynamic,
                         profile=profile, outputs=args.outputs, opset=args.opset, verify=not args.no_verify,
                         task=args.task, calibration=calibration, tensorrt=tensorrt, triton=triton, command=command,
                         progress=not args.quiet)  # fmt: skip


def _triton_options(args: argparse.Namespace):
    """The `TritonOptions` the Triton flags ask for; with --fmt triton a default one when none was given."""
    from ..errors import InputError
    from ..export import TritonOptions

    preferred = None
    if args.preferred_batch:
        try:
            preferred = tuple(int(part) for part in args.preferred_batch.split(","))
        except ValueError:
            raise InputError(f"--preferred-batch {args.preferred_batch}: use batch sizes like 4,8") from None
    triton = _group(TritonOptions, {"backend": args.backend, "name": args.name, "version": args.model_version,
                                    "max_batch": args.max_batch, "preferred": preferred,
                                    "queue_delay_us": args.queue_delay, "instances": args.instances,
                                    "kind": args.instance_kind, "accelerator": args.trt_accelerator,
                                    "ensemble": args.ensemble})  # fmt: skip
    return triton or (TritonOptions() if args.fmt == "triton" else None)


def _summary(result) -> str:
    """What was written (model and data files with their total size, then the manifest) and the parity, line by line."""
    manifest = [f for f in result.files if f.name.endswith(".json")]
    model = [f for f in result.files if f not in manifest]
    size = sum(f.stat().st_size for f in model) / 1e6
    line = f"wrote {' + '.join(str(f) if i == 0 or f.parent != model[0].parent else f.name for i, f in enumerate(model))} ({size:.1f} MB)"
    if manifest:
        line += f", manifest {manifest[0].name}"
    if result.parity is not None:
        line += f"\nparity {result.parity.precision} vs PyTorch FP32 on {len(result.parity.images)} photos:"
        line += "".join(f"\n  {item}" for item in result.parity.describe_lines())
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

"""Benchmark every backend and precision this machine can run, against PyTorch FP32, rembg and the paper.

  u2deploy bench                                    # pretrained u2net: export, time, compare; ./u2deploy_bench/
  u2deploy bench --formats onnx,openvino --precisions fp32,int8 --runs 30 --out results/
  u2deploy bench u2netp --batch 1,4 --seconds 60 --threads 2
  u2deploy bench --paper --out results/             # the paper's Fig. 4 blocks and model table

One table: status (ok / skipped / failed, with the reason), artifact size, load time, latency
p50/p90/p99, the pre/infer/post split, images/s (OpenVINO's THROUGHPUT hint where it applies),
peak memory, parity against PyTorch FP32 on real photos (max abs error, mask IoU, MAE, max
F-beta), achieved GFLOP/s as a share of the measured FP32 peak; then the upstream recipe and rembg
against the fastest row at equal quality. All rows are timed interleaved in one process, so their
ratios are free of the machine's drift. Artifacts are exported once and cached. Prints a
compact table and the verdict: the fastest row that reaches --quality-iou, its file (linked into
OUT/artifacts/ with a readable name, manifest beside it) and the commands that run it. Writes
bench.json, bench.csv, bench.md (the full table) and bench.png (paper.* with --paper) to --out.
"""

from __future__ import annotations

import argparse
import shutil
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", default="u2net", help="weights name or checkpoint (default u2net)")
    parser.add_argument("--formats", default="torch,onnx,openvino,trt", help="comma list (default all)")
    parser.add_argument("--precisions", default="fp32,fp16,bf16,int8",
                        help="comma list (default all; bf16 is an OpenVINO row, on CPUs with bf16 instructions)")
    parser.add_argument("--size", type=int, default=320, help="square input size (default 320)")
    parser.add_argument("--batch", default="1", help="comma list of batch sizes (default 1)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first (default 2)")
    timing = parser.add_mutually_exclusive_group()
    timing.add_argument("--runs", type=int, default=None, help="timed rounds per phase (default 10)")
    timing.add_argument("--seconds", type=float, default=None, help="time budget per timed phase instead of --runs")
    parser.add_argument("--threads", type=int, default=None, help="inference threads (default: each library's)")
    parser.add_argument("--mode", default="fast", choices=("fast", "reference"), help="pre/post-processing (fast)")
    parser.add_argument("--calib", default=None,
                        help="INT8 calibration images: folder or glob (default: 12 bundled stand-in photos)")
    parser.add_argument("--calib-count", type=int, default=None, help="INT8 calibration images to use")
    parser.add_argument("--quality-iou", type=float, default=0.97,
                        help="quality target: mean mask IoU vs PyTorch FP32 for the verdict and the peers (0.97)")
    parser.add_argument("--no-peers", action="store_true", help="skip the upstream recipe / rembg comparison")
    parser.add_argument("--no-peak", action="store_true", help="skip the FP32/INT8 peak measurement")
    parser.add_argument("--paper", action="store_true", help="the paper's block and model cost tables instead")
    parser.add_argument("--out", default="u2deploy_bench", help="folder for the results (default ./u2deploy_bench)")
    parser.add_argument("--note", default="", help="a line for the top of the report, e.g. 'provisional: shared machine'")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _calibration(args: argparse.Namespace):
    if args.calib is None and args.calib_count is None:
        return None
    from ..errors import InputError
    from ..export import CalibrationOptions

    if args.calib is None:
        raise InputError(f"--calib-count {args.calib_count} needs --calib DIR|GLOB (the bundled photos are all used)")

    fields = {"source": args.calib}
    if args.calib_count is not None:
        fields["count"] = args.calib_count
    return CalibrationOptions(**fields)


def _options(args: argparse.Namespace):
    from ..bench.matrix import FORMATS, PRECISIONS, parse_list
    from ..bench.run import BenchOptions
    from ..errors import InputError

    try:
        batches = tuple(int(b) for b in args.batch.split(",") if b.strip())
    except ValueError:
        raise InputError(f"--batch {args.batch}: use a comma list of integers, e.g. 1,4") from None
    runs = args.runs if args.runs is not None or args.seconds is not None else 10
    return BenchOptions(model=args.model, formats=parse_list(args.formats, FORMATS, "--formats"),
                        precisions=parse_list(args.precisions, PRECISIONS, "--precisions"), batches=batches,
                        size=args.size, warmup=args.warmup, runs=runs, seconds=args.seconds, threads=args.threads,
                        mode=args.mode, calibration=_calibration(args), peers=not args.no_peers,
                        peak=not args.no_peak, quality_iou=args.quality_iou, progress=not args.quiet,
                        note=args.note).validate()


def _print_written(written: dict) -> None:
    for kind, where in written.items():
        print(f"{kind:>4}: {where}", file=sys.stderr)


def _run_paper(args: argparse.Namespace, options) -> int:
    from ..bench.paper import run_paper
    from ..bench.report import paper_markdown, write_paper
    from ..bench.run import Progress

    result = run_paper(threads=options.threads, warmup=options.warmup, runs=options.runs, seconds=options.seconds,
                       size=options.size, progress=Progress(options.progress), note=options.note)  # fmt: skip
    print(paper_markdown(result, chart=None))
    _print_written(write_paper(result, args.out))
    return 0


def run(args: argparse.Namespace) -> int:
    options = _options(args)
    if args.paper:
        return _run_paper(args, options)
    from ..bench.report import write_bench
    from ..bench.run import run_bench
    from ..bench.terminal import terminal_report
    from ..bench.verdict import verdict_for

    result = run_bench(options)
    verdict_for(result, args.out)  # links the artifacts into OUT/artifacts/ and decides
    written = write_bench(result, args.out)
    print(terminal_report(result, width=shutil.get_terminal_size().columns), end="")
    _print_written(written)
    return 1 if any(row.status == "failed" for row in result.rows) else 0

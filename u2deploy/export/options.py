"""What an export may ask for: the options, the `CAPABILITIES` table, and validation up front.

Every option is checked against the table before any model is loaded, so an impossible request
(`--fp16 --int8`, `--workspace` for ONNX, a TensorRT profile for OpenVINO) fails in one line and
in milliseconds. Options are never rewritten: what cannot be done as asked raises.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..compare import TOLERANCES, Tolerance
from ..errors import InputError, UnsupportedOptionError
from ..spec import ModelSpec

__all__ = ["Capability", "CAPABILITIES", "CalibrationOptions", "TensorRTOptions", "TritonOptions", "ExportOptions",
           "CALIBRATION_METHODS", "KEEP_FLOAT", "BIAS_CORRECTIONS", "DYNAMIC_AXES", "bias_correction_for",
           "calibration_batch", "parse_dynamic", "default_output_path", "gate_tolerance"]

CALIBRATION_METHODS = ("minmax", "entropy", "percentile", "mse")
KEEP_FLOAT = ("fuse", "heads", "none", "auto")
BIAS_CORRECTIONS = ("full", "fast")
DYNAMIC_AXES = ("batch", "hw")
OPSETS = range(17, 21)  # the TorchScript exporter stops at opset 20


@dataclass(frozen=True)
class Capability:
    """What one format supports, and what checks it.

    Attributes:
        suffixes: file suffixes of the artifact, the default first.
        precisions: precisions it can be exported at.
        dynamic: axes that may be dynamic.
        requires: imports the conversion needs (checked before the model is loaded).
        verify_backend: runtime backend that runs the artifact for the parity gate.
        verify_options: backend options for that run (the file is judged, not a device's defaults).
        devices: where the artifact runs.
    """

    suffixes: tuple[str, ...]
    precisions: tuple[str, ...]
    dynamic: tuple[str, ...]
    requires: tuple[str, ...]
    verify_backend: str
    verify_options: dict[str, Any] = field(default_factory=dict)
    devices: tuple[str, ...] = ("cpu",)


CAPABILITIES: dict[str, Capability] = {
    "onnx": Capability((".onnx",), ("fp32", "fp16", "int8"), DYNAMIC_AXES, ("torch", "onnx", "onnxslim"),
                       "onnxruntime", {"device": "cpu"}, ("cpu", "cuda", "tensorrt")),
    # f32 inference precision and ACCURACY mode: some CPUs otherwise run bf16/f16 by default.
    "openvino": Capability((".xml",), ("fp32", "fp16", "bf16", "int8"), DYNAMIC_AXES,
                           ("torch", "onnx", "onnxslim", "openvino"),
                           "openvino", {"device": "CPU", "inference_precision": "f32", "execution_mode": "accuracy"},
                           ("CPU", "GPU", "NPU", "AUTO")),
    "trt": Capability((".engine", ".plan"), ("fp32", "fp16", "int8"), DYNAMIC_AXES,
                      ("torch", "onnx", "onnxslim", "tensorrt"), "tensorrt", {"device": "cuda"}, ("cuda", "dla")),
}  # fmt: skip


@dataclass(frozen=True)
class CalibrationOptions:
    """INT8 calibration: images from `source` (a folder or glob), `count` of them, drawn with `seed`.

    Attributes:
        source: folder (searched recursively) or glob of images like the ones the model will see.
        count: how many to use; the source must hold at least that many (and at least 8).
        seed: picks which ones when it holds more.
        method: activation range estimator, one of `CALIBRATION_METHODS` (docs/int8.md compares them).
        keep_float: what stays float besides the Sigmoids: `fuse` (the final fuse conv and its input),
            `heads` (also the six side convs), `none`, or `auto` (`fuse` plus the fewest MACs that meet
            mean IoU >= 0.985 and worst >= 0.95 vs FP32 on held-out photos, chosen by sensitivity;
            fp16 in the Q/DQ graph, float in the OpenVINO IR; `calibration/autokeep.py`).
        bias_correction: `full` (each layer's output shift measured with the layers before it already
            quantized; 2-3x slower), `fast` (each layer on its own) or None: full for OpenVINO (its
            gate needs it), fast for the Q/DQ ONNX (NNCF 3.4's full correction fails on U2-Net's ONNX
            graph: a KeyError in its subgraph extraction).
        cache: reuse (and store) the result in the calibration cache.
    """

    source: str | None = None
    count: int = 64
    seed: int = 0
    method: str = "mse"
    keep_float: str = "fuse"
    bias_correction: str | None = None
    cache: bool = True


@dataclass(frozen=True)
class TensorRTOptions:
    """TensorRT build knobs (DEPLOY_APIS.md section 5); `None` keeps TensorRT's default."""

    workspace_gb: float | None = None
    opt_level: int | None = None
    timing_cache: str | None = None
    dla_core: int | None = None
    #: keep an fp16/int8 engine whose layer precisions cannot be seen (refused otherwise; recorded)
    accept_unseen_precision: bool = False


@dataclass(frozen=True)
class TritonOptions:
    """A Triton model repository around the artifact (`--fmt triton`; export/triton.py writes it).

    Attributes:
        backend: Triton backend serving the network: `onnxruntime`, `openvino` or `tensorrt`.
        name: model name in the repository; None gives `<arch>_<precision>`.
        version: the version folder the artifact goes to.
        max_batch: `max_batch_size` of a dynamic-batch artifact (and the TensorRT profile's maximum).
        preferred: dynamic batching's preferred batch sizes; None gives (max_batch // 2, max_batch).
        queue_delay_us: `max_queue_delay_microseconds` of dynamic batching.
        instances: model instances per device (`instance_group.count`).
        kind: `gpu` or `cpu`; None: cpu for OpenVINO, gpu otherwise.
        accelerator: ONNX Runtime on GPUs: run through its TensorRT accelerator at the export's precision.
        ensemble: also write Python-backend pre/post models and an ensemble (image bytes in, PNG mask out).
        mode: pre/post-processing mode of the ensemble (`fast` or `reference`).
    """

    backend: str = "onnxruntime"
    name: str | None = None
    version: int = 1
    max_batch: int = 8
    preferred: tuple[int, ...] | None = None
    queue_delay_us: int = 100
    instances: int = 1
    kind: str | None = None
    accelerator: bool = False
    ensemble: bool = False
    mode: str = "fast"


@dataclass(frozen=True)
class ExportOptions:
    """One export request.

    Attributes:
        fmt: `onnx`, `openvino` or `trt`.
        precision: `fp32`, `fp16` or `int8`.
        input_size: (height, width); None keeps the checkpoint's.
        batch: static batch size; None is 1 unless the batch is dynamic.
        dynamic: dynamic axes, a subset of ("batch", "hw").
        profile: TensorRT batch profile (min, opt, max); implies a dynamic batch.
        outputs: `fused` (the map) or `all` (fused + the six side maps).
        opset: ONNX opset (17..20).
        verify: run the parity gate.
        tolerance: overrides `compare.TOLERANCES[precision]`.
        task: task for checkpoints that carry none.
        calibration: INT8 calibration data (only with precision int8).
        tensorrt: TensorRT build options (only with fmt trt).
        triton: the model repository around the artifact (only with fmt triton).
        command: the command line, for the manifest.
        progress: print step lines on stderr.
    """

    fmt: str = "onnx"
    precision: str = "fp32"
    input_size: tuple[int, int] | None = None
    batch: int | None = None
    dynamic: tuple[str, ...] = ()
    profile: tuple[int, int, int] | None = None
    outputs: str = "fused"
    opset: int = 17
    verify: bool = True
    tolerance: Tolerance | None = None
    task: str | None = None
    calibration: CalibrationOptions | None = None
    tensorrt: TensorRTOptions | None = None
    triton: TritonOptions | None = None
    command: str | None = None
    progress: bool = True

    @property
    def capability(self) -> Capability:
        return CAPABILITIES[self.fmt]

    @property
    def dynamic_batch(self) -> bool:
        return "batch" in self.dynamic

    @property
    def dynamic_hw(self) -> bool:
        return "hw" in self.dynamic

    def validate(self) -> ExportOptions:
        """Raise on anything the format cannot do as asked; return self for chaining."""
        if self.fmt not in CAPABILITIES:
            from .._registry import unknown_name
            from . import LAYOUTS

            raise unknown_name("export format", self.fmt, [*CAPABILITIES, *LAYOUTS], "--fmt")
        self._check_precision()
        self._check_shape()
        self._check_groups()
        return self

    def _check_precision(self) -> None:
        cap = self.capability
        if self.precision not in cap.precisions:
            raise UnsupportedOptionError(f"--fmt {self.fmt} cannot be exported at {self.precision}; "
                                         f"supported: {', '.join(cap.precisions)}")
        if self.precision not in TOLERANCES and self.verify and self.tolerance is None:
            raise UnsupportedOptionError(f"no parity tolerance for {self.precision}; pass one or --no-verify")
        if self.outputs not in ("fused", "all"):
            raise UnsupportedOptionError(f"--outputs {self.outputs}: use fused or all")
        if self.opset not in OPSETS:
            raise UnsupportedOptionError(f"--opset {self.opset}: use {OPSETS.start}..{OPSETS.stop - 1}")

    def _check_shape(self) -> None:
        unknown = [axis for axis in self.dynamic if axis not in self.capability.dynamic]
        if unknown:
            raise UnsupportedOptionError(f"--dynamic {','.join(unknown)}: --fmt {self.fmt} takes "
                                         f"{', '.join(self.capability.dynamic)} or all")
        if self.batch is not None and self.batch < 1:
            raise InputError(f"--batch {self.batch}: must be at least 1")
        if self.batch is not None and self.dynamic_batch:
            raise UnsupportedOptionError(f"--batch {self.batch} fixes the batch, --dynamic makes it dynamic; "
                                         "pick one")
        if self.profile is not None:
            if self.fmt != "trt":
                raise UnsupportedOptionError(f"--dynamic {':'.join(map(str, self.profile))} is a TensorRT profile; "
                                             f"for --fmt {self.fmt} use --dynamic batch")
            low, opt, high = self.profile
            if not 1 <= low <= opt <= high:
                raise InputError(f"--dynamic {low}:{opt}:{high}: need 1 <= MIN <= OPT <= MAX")

    def _check_groups(self) -> None:
        if self.calibration is not None and self.precision != "int8":
            raise UnsupportedOptionError("--calib, --calib-count, --calib-seed and --calib-method apply to --int8 "
                                         "only")
        if self.precision == "int8":
            self._check_calibration(self.calibration)
        if self.tensorrt is not None and self.fmt != "trt":
            raise UnsupportedOptionError(f"--workspace, --opt-level, --timing-cache, --dla-core and "
                                         f"--accept-unseen-precision apply to --fmt trt only, not --fmt {self.fmt}")
        if self.tensorrt is not None:
            self._check_tensorrt(self.tensorrt)
        if self.triton is not None:
            raise UnsupportedOptionError(f"--backend, --max-batch, --instances, --ensemble, ... apply to --fmt triton "
                                         f"only, not --fmt {self.fmt}")

    def _check_calibration(self, calibration: CalibrationOptions | None) -> None:
        from ..calibration.source import MIN_IMAGES

        if calibration is not None and calibration.method not in CALIBRATION_METHODS:
            raise UnsupportedOptionError(f"--calib-method {calibration.method}: use {', '.join(CALIBRATION_METHODS)}")
        if calibration is None or not calibration.source:
            raise InputError("--int8 needs calibration images: add --calib DIR|GLOB (64 or more photos like the ones "
                             "the model will see; docs/int8.md)")
        if calibration.count < MIN_IMAGES:
            raise InputError(f"--calib-count {calibration.count}: INT8 calibration needs at least {MIN_IMAGES} images "
                             "(64 or more representative ones are better)")
        if calibration.keep_float not in KEEP_FLOAT:
            raise UnsupportedOptionError(f"keep_float '{calibration.keep_float}': use {', '.join(KEEP_FLOAT)}")
        if calibration.bias_correction not in (None, *BIAS_CORRECTIONS):
            raise UnsupportedOptionError(f"bias_correction '{calibration.bias_correction}': use "
                                         f"{', '.join(BIAS_CORRECTIONS)}")

        if calibration.bias_correction == "full" and self.fmt != "openvino":
            raise UnsupportedOptionError(f"bias_correction 'full' is not available for the Q/DQ graph of --fmt "
                                         f"{self.fmt} (NNCF's ONNX backend fails on U2-Net); use fast")

    def _check_tensorrt(self, trt: TensorRTOptions) -> None:
        if trt.workspace_gb is not None and trt.workspace_gb <= 0:
            raise InputError(f"--workspace {trt.workspace_gb}: must be a positive number of GB")
        if trt.opt_level is not None and not 0 <= trt.opt_level <= 5:
            raise InputError(f"--opt-level {trt.opt_level}: use 0..5")
        if trt.dla_core is not None and trt.dla_core < 0:
            raise InputError(f"--dla-core {trt.dla_core}: must be 0 or more")
        if trt.dla_core is not None and (self.dynamic or self.profile):
            raise UnsupportedOptionError("DLA needs static shapes: drop --dynamic for --dla-core")
        if trt.dla_core is not None and self.precision == "fp32":
            raise UnsupportedOptionError("DLA runs FP16 or INT8 only: add --fp16 or --int8 to --dla-core")


def gate_tolerance(options: ExportOptions) -> Tolerance:
    """The limits an export's parity gate applies: `options.tolerance`, else its precision's row."""
    return options.tolerance or TOLERANCES[options.precision]


def bias_correction_for(fmt: str, calibration: CalibrationOptions) -> str:
    """The bias correction a quantizer runs: as asked, else full for OpenVINO and fast for the Q/DQ ONNX."""
    return calibration.bias_correction or ("full" if fmt == "openvino" else "fast")


def calibration_batch(options: ExportOptions) -> int:
    """Images per calibration batch: the artifact's static batch, or 1 when the batch is dynamic."""
    return 1 if options.dynamic_batch else (options.batch or 1)


def parse_dynamic(value: str | None) -> tuple[tuple[str, ...], tuple[int, int, int] | None]:
    """`--dynamic` value -> (axes, TensorRT batch profile).

    `batch` (the bare flag), `hw`, `all` or `batch,hw`; `MIN:OPT:MAX` is a TensorRT batch profile.
    """
    if value is None:
        return (), None
    if ":" in value:
        parts = value.split(":")
        if len(parts) != 3 or not all(p.strip().isdigit() for p in parts):
            raise InputError(f"--dynamic {value}: a profile is MIN:OPT:MAX batch sizes, e.g. 1:4:8")
        low, opt, high = (int(p) for p in parts)
        return ("batch",), (low, opt, high)
    axes = DYNAMIC_AXES if value == "all" else tuple(a.strip() for a in value.split(",") if a.strip())
    return axes, None


def default_output_path(spec: ModelSpec, options: ExportOptions, directory: str | Path = ".") -> Path:
    """`u2net_320_fp16.onnx`, `u2net_320x288_fp32_dynamic.xml`, `u2net_320_fp32_b4_all.onnx`, ...

    Every option that changes the artifact's contract is in the name, so two exports with
    different options never overwrite each other by default.
    """
    height, width = options.input_size or spec.input_size
    parts = [spec.arch, str(height) if height == width else f"{height}x{width}", options.precision]
    if options.dynamic:
        names = {("batch",): "dynamic", ("hw",): "dynamic_hw"}
        parts.append(names.get(tuple(sorted(options.dynamic)), "dynamic_batch_hw"))
    elif options.batch and options.batch > 1:
        parts.append(f"b{options.batch}")
    if options.outputs == "all":
        parts.append("all")
    return Path(directory) / ("_".join(parts) + options.capability.suffixes[0])

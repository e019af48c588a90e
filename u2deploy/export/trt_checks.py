"""TensorRT build decisions and checks that need no GPU: profiles, build mode, DLA, layer precisions.

`trt_build.py` calls TensorRT; what it decides or verifies lives here, as pure functions over plain
values, so the rules are unit-tested on machines without TensorRT:

* `profile_for`: the optimization profile an export asks for (static, a batch range, dynamic H/W);
* `network_precision` and `choose_build_mode`: strongly typed from the precision-encoded graph
  (TensorRT 11, and the forward-compatible choice on 10.x), or one of the 10.x builder-flag paths;
* `dla_preflight` and `dla_placement`: the DLA restrictions that hit U2-Net, said before and after;
* `layer_records` and `check_engine_precision`: read the engine inspector's JSON and refuse an
  engine whose convolutions silently stayed FP32 (TensorRT 11 turns a plain FP32 ONNX into an FP32
  engine without a word, rf-detr#1453; the 10.x FP16 flag only *allows* fp16 kernels).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ExportError, UnsupportedOptionError
from ..hardware import dla_expected
from ..runtimes.trt_support import Profile, TrtFeatures

__all__ = ["DEFAULT_BATCH_PROFILE", "MIN_REDUCED_SHARE", "BuildMode", "profile_for", "network_precision",
           "choose_build_mode", "dla_preflight", "dla_placement", "LayerRecord", "tensor_precision", "layer_records",
           "precision_summary", "check_engine_precision"]

#: batch profile of `--dynamic` without MIN:OPT:MAX (latency first: opt 1)
DEFAULT_BATCH_PROFILE = (1, 1, 4)
#: below this share of the convolution work in the requested precision, the engine is refused
MIN_REDUCED_SHARE = 0.5
#: DLA limits (DEPLOY_APIS section 6)
DLA_MAX_DIM, DLA_MAX_LOADABLES = 8192, 16

_RANK = {"int8": 0, "fp8": 0, "fp16": 1, "bf16": 1, "fp32": 2}
_FLOAT_TYPES = ("FLOAT", "HALF", "BF16")
_MOVEMENT = ("Reformat", "Shuffle", "NoOp", "Constant", "Identity", "Cast", "Slice")


def profile_for(spec: Any, options: Any) -> Profile:
    """The input profile of an export: its batch (or `--dynamic MIN:OPT:MAX`) and size (or H/W range).

    A dynamic H/W range is half to twice the export size (never below 32, U2-Net's minimum).
    """
    height, width = options.input_size or spec.input_size
    batch = options.batch or 1
    low_b, opt_b, high_b = (options.profile or DEFAULT_BATCH_PROFILE) if options.dynamic_batch else (batch,) * 3
    low_hw, high_hw = (height, width), (height, width)
    if options.dynamic_hw:
        low_hw, high_hw = (max(32, height // 2), max(32, width // 2)), (2 * height, 2 * width)
    return Profile(spec.input_name, (low_b, 3, *low_hw), (opt_b, 3, height, width), (high_b, 3, *high_hw))


def network_precision(layers: Iterable[tuple[str, Sequence[str]]]) -> str:
    """'int8' (Q/DQ layers), 'fp16' (most float tensors are half) or 'fp32', from (layer type, output dtypes)."""
    floats = half = 0
    for kind, dtypes in layers:
        if kind in ("QUANTIZE", "DEQUANTIZE"):
            return "int8"
        floats += sum(d in _FLOAT_TYPES for d in dtypes)
        half += sum(d in ("HALF", "BF16") for d in dtypes)
    return "fp16" if floats and half / floats > 0.5 else "fp32"


@dataclass(frozen=True)
class BuildMode:
    """How to build: network strongly typed or not, builder flags to set, legacy calibration, and why."""

    strongly_typed: bool
    flags: tuple[str, ...] = ()
    calibrate: bool = False
    note: str = ""
    hint: str = ""


def _dla_weak_mode(graph: str, precision: str, calibration: bool) -> BuildMode:
    """TensorRT <= 10 takes DLA precision from builder flags (`trtexec --useDLACore --fp16 --allowGPUFallback`)."""
    calibrate = precision == "int8" and graph != "int8"
    if calibrate and not calibration:
        raise ExportError("an INT8 DLA engine needs the Q/DQ ONNX or calibration data (--int8 --calib DIR)")
    flags = ("FP16",) if precision == "fp16" else ("INT8", "FP16")
    return BuildMode(False, (*flags, "GPU_FALLBACK"), calibrate,
                     f"weakly typed with BuilderFlag {'+'.join(flags)} and GPU fallback (DLA on TensorRT 10.x)",
                     "DLA layers run in fp16/int8 by construction; check the GPU-fallback layers")  # fmt: skip


def _fp32_graph_mode(features: TrtFeatures, precision: str, calibration: bool, extra: tuple[str, ...]) -> BuildMode:
    if features.strongly_typed_only:
        fix = ("an fp16 ONNX graph (u2deploy export --fmt onnx --fp16, or ModelOpt AutoCast)" if precision == "fp16"
               else "a Q/DQ ONNX graph (u2deploy export --int8 --calib DIR, or ModelOpt quantize)")
        raise ExportError(f"TensorRT {features.version} builds strongly typed networks only: a plain fp32 graph gives "
                          f"an fp32 engine (rf-detr#1453). Build the {precision} engine from {fix}")
    if precision == "fp16":
        return BuildMode(False, ("FP16", *extra), False, "weakly typed with BuilderFlag.FP16 (TensorRT 10.x)",
                         "the FP16 flag only allows fp16 kernels and TensorRT chose fp32 ones; build from the fp16 "
                         "ONNX instead (u2deploy export --fmt trt --fp16 does)")  # fmt: skip
    if not calibration:
        raise ExportError("an INT8 engine from an fp32 graph needs calibration data (TensorRT <= 10) or, better, "
                          "the Q/DQ ONNX (u2deploy export --fmt trt --int8 --calib DIR)")
    return BuildMode(False, ("INT8", "FP16", *extra), True,
                     "implicit INT8 with IInt8EntropyCalibrator2 (TensorRT <= 10; deprecated since 10.1)",
                     "TensorRT kept these layers above int8; calibrate with more representative images")  # fmt: skip


def choose_build_mode(features: TrtFeatures, graph: str, precision: str, *, calibration: bool = False,
                      dla: bool = False) -> BuildMode:
    """Pick the build path from what TensorRT can do, the graph's precision and the precision asked for.

    Args:
        features: the installed TensorRT's features.
        graph: `network_precision` of the parsed ONNX.
        precision: fp32, fp16 or int8.
        calibration: a legacy calibrator is available (TensorRT <= 10, fp32 graph, int8).
        dla: building for a DLA core.
    """
    if dla and precision == "fp32":
        raise UnsupportedOptionError("DLA runs FP16 or INT8 only: add --fp16 or --int8 to --dla-core")
    if dla and not features.strongly_typed_only:
        return _dla_weak_mode(graph, precision, calibration)
    extra = ("GPU_FALLBACK",) if dla else ()
    if graph == precision:
        return BuildMode(True, extra, False, f"strongly typed: the {graph} graph sets each layer's precision",
                         f"the engine was built strongly typed, so the ONNX decides: check that its convolutions "
                         f"were converted to {precision}")  # fmt: skip
    if graph == "fp32" and precision in ("fp16", "int8"):
        return _fp32_graph_mode(features, precision, calibration, extra)
    raise ExportError(f"the ONNX graph is {graph} but a {precision} engine was asked for; build it from the "
                      f"{precision} graph (or ask for {graph})")


def dla_preflight(features: TrtFeatures, core: int, cores: int, jetson: dict[str, Any] | None,
                  profile: Profile) -> None:
    """Raise before building when this machine cannot build for DLA core `core`, with the reason."""
    if core >= cores:
        reasons = []
        model = (jetson or {}).get("model")
        if jetson is None:
            reasons.append("DLA exists only on Jetson AGX Orin, Orin NX and Xavier")
        elif model and dla_expected(model) is False:
            reasons.append(f"{model} has no DLA")
        if features.strongly_typed_only:
            reasons.append("TensorRT 11 supports DLA only from 11.4.1 on JetPack 7.2.2+ (AGX Orin); JetPack 6 "
                           "keeps TensorRT 10.x")
        found = f"DLA cores 0..{cores - 1}" if cores else "no DLA core"
        why = "; ".join(["", *reasons]) if reasons else ""
        raise UnsupportedOptionError(f"--dla-core {core}: TensorRT {features.version} on this machine reports "
                                     f"{found}{why}; drop --dla-core to build for the GPU")
    too_big = [d for d in profile.max[1:] if d > DLA_MAX_DIM]
    if too_big:
        raise UnsupportedOptionError(f"--dla-core: DLA takes dimensions up to {DLA_MAX_DIM}, the input is "
                                     f"{'x'.join(map(str, profile.max))}; use a smaller --size")


def _segments(flags: Sequence[bool]) -> int:
    return sum(1 for i, on in enumerate(flags) if on and (i == 0 or not flags[i - 1]))


def dla_placement(layers: Sequence[tuple[str, str, bool]]) -> dict[str, Any]:
    """Where DLA layers go, from (name, type, `config.can_run_on_DLA`) per network layer, and what to know."""
    off = [(name, kind) for name, kind, on in layers if not on]
    segments = _segments([on for _, _, on in layers])
    types = Counter(kind for _, kind in off)
    notes = []
    if off:
        summary = ", ".join(f"{kind} x{n}" for kind, n in types.most_common())
        notes.append(f"{len(off)} of {len(layers)} layers fall back to the GPU ({summary})")
    if any("RESIZE" in kind.upper() for kind in types):
        notes.append("DLA takes bilinear Resize only with the half_pixel transform; PyTorch's align_corners=False "
                     "exports pytorch_half_pixel, so those Resize layers run on the GPU")
    if segments > DLA_MAX_LOADABLES:
        notes.append(f"the network splits into {segments} DLA segments; TensorRT allows {DLA_MAX_LOADABLES} "
                     "loadables per DLA core, the rest run on the GPU")
    return {"layers": len(layers), "on_dla": len(layers) - len(off), "on_gpu": len(off), "dla_segments": segments,
            "gpu_layer_types": dict(types), "gpu_layers": [name for name, _ in off[:20]], "notes": notes}


@dataclass(frozen=True)
class LayerRecord:
    """One engine layer as the inspector describes it."""

    name: str
    kind: str
    precision: str | None
    macs: int = 0
    conv: bool = False
    opaque: bool = False


def tensor_precision(text: str) -> str | None:
    """'Channel major FP16 format where channel % 8 == 0' -> 'fp16'; 'Float' -> 'fp32'; 'N/A ...' -> None."""
    lowered = text.lower()
    if not lowered or lowered.startswith("n/a") or "uint8" in lowered:
        return None  # UInt8 is an image I/O format, not INT8 compute
    for token, name in (("int8", "int8"), ("fp8", "fp8"), ("bf16", "bf16"), ("bfloat", "bf16"), ("fp16", "fp16"),
                        ("half", "fp16"), ("fp32", "fp32"), ("float", "fp32")):
        if token in lowered:
            return name
    return None  # Int32, Bool, ...: not a compute precision


_TACTIC_TOKENS = (("int8", ("i8i8", "imma", "int8")), ("fp16", ("f16f16", "hmma", "h884", "h1688", "fp16")),
                  ("fp32", ("f32f32", "sgemm", "scudnn", "fp32")))  # fmt: skip


def _formats(tensors: Any) -> list[str]:
    return [str(t.get("Format/Datatype", "")) for t in tensors or () if isinstance(t, dict)]


def _layer_precision(layer: dict[str, Any]) -> str | None:
    """The narrowest type among a layer's inputs and weights (outputs, then the tactic name, as fallbacks)."""
    weights = layer.get("Weights") if isinstance(layer.get("Weights"), dict) else {}
    for texts in (_formats(layer.get("Inputs")) + [str(weights.get("Type", ""))], _formats(layer.get("Outputs"))):
        known = [p for p in map(tensor_precision, texts) if p]
        if known:
            return min(known, key=_RANK.__getitem__)
    tactic = str(layer.get("TacticName", "")).lower()
    return next((name for name, tokens in _TACTIC_TOKENS if any(t in tactic for t in tokens)), None)


def _record(layer: dict[str, Any]) -> LayerRecord:
    kind, name = str(layer.get("LayerType", "")), str(layer.get("Name", ""))
    weights = layer.get("Weights") if isinstance(layer.get("Weights"), dict) else {}
    conv = bool(weights.get("Count")) or str(layer.get("ParameterType", "")) in (
        "Convolution", "Deconvolution", "MatrixMultiply", "FullyConnected")
    outputs = [t for t in layer.get("Outputs") or () if isinstance(t, dict)]
    dims = outputs[0].get("Dimensions", []) if outputs else []
    spatial = 1
    for d in dims[2:] if len(dims) >= 4 else ():
        spatial *= max(int(d), 1)
    opaque = kind in ("Myelin", "DLA") or name.startswith("{ForeignNode")
    return LayerRecord(name, kind, _layer_precision(layer), int(weights.get("Count", 0)) * spatial, conv, opaque)


def layer_records(info: str | dict[str, Any]) -> list[LayerRecord] | None:
    """Records from `IEngineInspector.get_engine_information(JSON)`; None when it holds names only."""
    data = json.loads(info) if isinstance(info, str) else info
    layers = data.get("Layers", []) if isinstance(data, dict) else []
    if not layers or not all(isinstance(layer, dict) for layer in layers):
        return None  # built without ProfilingVerbosity.DETAILED
    return [_record(layer) for layer in layers]


def precision_summary(records: Sequence[LayerRecord], requested: str) -> dict[str, Any]:
    """How much work runs at `requested` precision: convolution MACs, or compute layers if no conv is visible."""
    convs = [r for r in records if r.conv and r.precision and not r.opaque]
    # with no convolution visible, pointwise layers beside opaque (Myelin/DLA) ones prove nothing: share None
    hidden = any(r.opaque for r in records)
    pool = convs or ([] if hidden else [r for r in records if r.kind not in _MOVEMENT and r.precision])
    weight = (lambda r: r.macs or 1) if convs else (lambda r: 1)
    total = sum(weight(r) for r in pool)
    reduced = sum(weight(r) for r in pool if _RANK.get(r.precision, 2) <= _RANK.get(requested, 2))
    wide = [r.name for r in pool if _RANK.get(r.precision, 2) > _RANK.get(requested, 2)]
    compute = [r for r in records if r.kind not in _MOVEMENT]
    return {"requested": requested, "basis": "convolution MACs" if convs else "compute layers",
            "share": round(reduced / total, 4) if total else None, "layers": len(records),
            "by_precision": dict(Counter(r.precision or "unknown" for r in compute)),
            "opaque_layers": sum(r.opaque for r in records), "wider_layers": wide[:10]}  # fmt: skip


def _unseen(requested: str, artifact: str, why: str, accept: bool) -> str:
    """The verdict for an engine whose layer precisions cannot be seen; ExportError unless `accept`."""
    if not accept:
        raise ExportError(f"{artifact}: {requested} cannot be confirmed: {why}; pass --accept-unseen-precision to "
                          "keep it (recorded in the manifest)")
    return f"not visible: {why} (accepted with --accept-unseen-precision)"


def check_engine_precision(info: str | dict[str, Any], requested: str, artifact: str, hint: str,
                           accept_unseen: bool = False) -> dict[str, Any]:
    """The precision summary of a built engine; ExportError when FP16/INT8 was asked and it mostly stayed wider.

    An engine whose layer precisions cannot be seen (names-only inspector output; every compute
    layer fused into Myelin/ForeignNode or placed on DLA) is refused too, unless `accept_unseen`
    (`--accept-unseen-precision`, recorded in the manifest's options): "fp16" would otherwise be
    a claim nobody checked. An fp32 request needs no such proof.
    """
    records = layer_records(info)
    if records is None:
        if requested == "fp32":
            return {"requested": requested, "verdict": "not judged for fp32"}
        return {"requested": requested, "verdict": _unseen(requested, artifact, "the inspector gave layer names only",
                                                           accept_unseen)}  # fmt: skip
    summary = precision_summary(records, requested)
    if requested == "fp32":
        return {**summary, "verdict": "not judged for fp32"}
    if summary["share"] is None:
        why = "TensorRT hides the convolutions in opaque Myelin/DLA nodes"
        return {**summary, "verdict": _unseen(requested, artifact, why, accept_unseen)}
    if summary["share"] < MIN_REDUCED_SHARE:
        names = ", ".join(f"'{n}'" for n in summary["wider_layers"][:3])
        raise ExportError(f"{artifact}: {requested} was asked for, but only {summary['share']:.0%} of the "
                          f"{summary['basis']} run in {requested} (wider layers include {names}); {hint}; nothing "
                          "was written")
    return {**summary, "verdict": "ok"}

"""ONNX -> TensorRT engine on TensorRT 10.x and 11.x: a raw plan plus a manifest record.

`onnx_to_tensorrt` builds from a precision-encoded ONNX (the fp32 graph, the fp16 graph of
`fp16.py`, or the Q/DQ graph of the INT8 quantizer): TensorRT 11 is strongly typed only, and on
10.x the same strongly typed build is the forward-compatible choice (DEPLOY_APIS.md sections 2-3).
`export_tensorrt` is `EXPORTERS["trt"]`: it writes that ONNX in the staging folder, then builds.

Named steps: parse -> choose the build mode from the parsed graph (`trt_checks`) -> configure
(profile, workspace, optimisation level, timing cache, DLA) -> build (a None plan becomes the
logger's errors) -> save the timing cache atomically -> inspect the engine's layer precisions and
refuse one that stayed FP32 -> write the plan atomically. The plan file is TensorRT's own bytes,
with no header, so trtexec and Polygraphy load it as-is; everything else goes to the sidecar.
"""

from __future__ import annotations

import hashlib
import re
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import hardware
from .._deps import require
from .._io import atomic_write_bytes, sha256_file
from ..errors import ExportError, MissingDependencyError
from ..runtimes.trt_support import (
    Profile,
    TrtFeatures,
    capturing_logger,
    detect_features,
    require_supported,
    shape_text,
)
from ..spec import ModelSpec
from .options import ExportOptions, TensorRTOptions

if TYPE_CHECKING:  # NVIDIA's API, for mypy with tensorrt-stubs (tests/trt/test_typecheck.py); never imported
    import tensorrt as trt_api

from .trt_checks import (
    BuildMode,
    check_engine_precision,
    choose_build_mode,
    dla_placement,
    dla_preflight,
    network_precision,
    profile_for,
)

__all__ = ["onnx_to_tensorrt", "export_tensorrt", "default_timing_cache"]


def _name(value: Any) -> str:
    """`LayerType.CONVOLUTION` -> 'CONVOLUTION' for pybind enums (and plain strings)."""
    return str(getattr(value, "name", value)).split(".")[-1]


def _say(progress: bool, text: str) -> None:
    if progress:
        print(f"      {text}", file=sys.stderr, flush=True)


def _parse(trt: Any, builder: trt_api.Builder, logger: Any, onnx_path: Path, strongly_typed: bool,
           features: TrtFeatures) -> tuple[Any, Any]:
    """(network, parser); the parser owns the weights and must outlive the build."""
    flags = 0  # TensorRT 11 networks are always strongly typed; on 10.x it is an opt-in creation flag
    if strongly_typed and not features.strongly_typed_only:
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)).strip() for i in range(parser.num_errors)] or [logger.error_text()]
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ExportError(f"{onnx_path.name}: TensorRT {features.version} cannot parse it: {errors[0]}{more}")
    return network, parser


def _layer_types(network: trt_api.INetworkDefinition) -> Iterable[tuple[str, list[str]]]:
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        yield _name(layer.type), [_name(layer.get_output(j).dtype) for j in range(layer.num_outputs)]


def _parse_and_choose(trt: Any, builder: trt_api.Builder, logger: Any, onnx_path: Path, features: TrtFeatures, precision: str,
                      calibration: bool, dla: bool) -> tuple[Any, Any, str, BuildMode]:
    """Parse strongly typed where possible, read the graph's precision, re-parse if the mode needs weak typing."""
    provisional = features.strongly_typed_only or features.strongly_typed_flag
    network, parser = _parse(trt, builder, logger, onnx_path, provisional, features)
    graph = network_precision(_layer_types(network))
    mode = choose_build_mode(features, graph, precision, calibration=calibration, dla=dla)
    if mode.strongly_typed != provisional and not features.strongly_typed_only:
        network, parser = _parse(trt, builder, logger, onnx_path, mode.strongly_typed, features)
    return network, parser, graph, mode


def _network_profile(network: trt_api.INetworkDefinition, profile: Profile | None, onnx_path: Path) -> tuple[Profile, bool]:
    """(the profile to build, whether the network input is dynamic), checked against the parsed input."""
    if network.num_inputs != 1:
        raise ExportError(f"{onnx_path.name}: a U2-Net graph has one input, this one has {network.num_inputs}")
    tensor = network.get_input(0)
    shape = tuple(int(d) for d in tensor.shape)
    dynamic = -1 in shape
    if profile is None:
        if dynamic:
            raise ExportError(f"{onnx_path.name}: input '{tensor.name}' is {shape_text(shape)}; a dynamic input "
                              "needs a profile (min, opt, max shapes)")
        return Profile.static(tensor.name, shape), False
    fits = len(shape) == len(profile.min) and all(d < 0 or lo == d == hi for d, lo, hi in
                                                   zip(shape, profile.min, profile.max, strict=True))
    if profile.name != tensor.name or not fits:
        raise ExportError(f"{onnx_path.name}: input '{tensor.name}' is {shape_text(shape)}, which the profile "
                          f"'{profile.name}' ({profile.describe()}) does not fit; export the ONNX with --dynamic")
    return profile, dynamic


def default_timing_cache(features: TrtFeatures, host: dict[str, Any]) -> Path:
    """One cache per TensorRT version and GPU under the u2deploy cache (a cache is valid only there)."""
    from ..weights import cache_dir

    gpu = re.sub(r"[^a-z0-9]+", "-", (host.get("gpu") or "gpu").lower()).strip("-")
    capability = host.get("compute_capability") or "x"
    return cache_dir() / "tensorrt" / f"timing_trt{features.version}_sm{capability}_{gpu}.cache"


def _timing_cache(config: trt_api.IBuilderConfig, path: Path) -> tuple[Any, str]:
    """Load the cache at `path` into `config` (a new one when absent or made elsewhere); (cache, state)."""
    data = path.read_bytes() if path.is_file() else b""
    state = "reused" if data else "new"
    try:
        cache = config.create_timing_cache(data)
        accepted = cache is not None and config.set_timing_cache(cache, ignore_mismatch=False)
    except (RuntimeError, TypeError, ValueError):
        accepted = False
    if not accepted:  # built by another TensorRT, GPU or flags (DEPLOY_APIS section 5): start over
        cache, state = config.create_timing_cache(b""), "replaced (it was made with another TensorRT or GPU)"
        config.set_timing_cache(cache, ignore_mismatch=False)
    return cache, state


def _configure(trt: Any, builder: trt_api.Builder, mode: BuildMode, profile: Profile, dynamic: bool, precision: str,
               knobs: TensorRTOptions) -> Any:
    config = builder.create_builder_config()
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # the layer-precision check reads it
    if knobs.workspace_gb is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(knobs.workspace_gb * 2**30))
    if knobs.opt_level is not None:
        config.builder_optimization_level = knobs.opt_level
    for flag in mode.flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # an fp32 engine computes in fp32 (TF32 has a 10-bit mantissa)
    if dynamic:
        shapes = builder.create_optimization_profile()
        shapes.set_shape(profile.name, profile.min, profile.opt, profile.max)
        config.add_optimization_profile(shapes)
    return config


def _dla(trt: Any, config: trt_api.IBuilderConfig, network: trt_api.INetworkDefinition, core: int) -> dict[str, Any]:
    """Target DLA core `core` with GPU fallback; report which layers DLA can take."""
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = core
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    return dla_placement([(layer.name, _name(layer.type), bool(config.can_run_on_DLA(layer))) for layer in layers])


def _build(builder: trt_api.Builder, network: trt_api.INetworkDefinition, config: trt_api.IBuilderConfig, logger: Any, onnx_path: Path, features: TrtFeatures) -> bytes:
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:  # the builder does not raise; it logs and returns None
        raise ExportError(f"{onnx_path.name}: TensorRT {features.version} could not build an engine: "
                          f"{logger.error_text() or 'no error was logged'}")
    return bytes(serialized)


def _inspect(trt: Any, logger: Any, plan: bytes, profile: Profile, dla_core: int | None) -> str:
    """The engine inspector's JSON at the profile's opt shape (formats are hidden while a shape is dynamic)."""
    runtime = trt.Runtime(logger)
    if dla_core is not None:
        runtime.DLA_core = dla_core
    engine: trt_api.ICudaEngine | None = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        raise ExportError(f"the engine just built does not deserialize: {logger.error_text() or 'no error logged'}")
    context: trt_api.IExecutionContext = engine.create_execution_context()
    if not profile.is_static:
        context.set_input_shape(profile.name, profile.opt)
    inspector: trt_api.EngineInspector = engine.create_engine_inspector()
    setattr(inspector, "execution_context" if hasattr(inspector, "execution_context") else "context", context)
    return inspector.get_engine_information(trt.LayerInformationFormat.JSON)


def _calibrator(calibration: Iterable[np.ndarray] | None, input_name: str, out: Path) -> Any:
    from ..calibration.trt_legacy import entropy_calibrator

    return entropy_calibrator(calibration, input_name, cache=out.with_name(out.name + ".calibration.cache"))


def _setup(trt: Any, builder: trt_api.Builder, network: trt_api.INetworkDefinition, features: TrtFeatures, mode: BuildMode, profile: Profile,
           dynamic: bool, precision: str, knobs: TensorRTOptions, host: dict[str, Any],
           calibration: Iterable[np.ndarray] | None, out: Path) -> tuple[Any, dict[str, Any]]:
    """The builder config with every knob, DLA and the timing cache; (config, what was set up).

    The returned dict also holds the timing cache and calibrator objects: the config only points at
    them, so they must stay referenced until the build is done.
    """
    if knobs.dla_core is not None:
        dla_preflight(features, knobs.dla_core, int(builder.num_DLA_cores), host["jetson"], profile)
    config = _configure(trt, builder, mode, profile, dynamic, precision, knobs)
    cache_path = Path(knobs.timing_cache) if knobs.timing_cache else default_timing_cache(features, host)
    cache, cache_state = _timing_cache(config, cache_path)
    placement = _dla(trt, config, network, knobs.dla_core) if knobs.dla_core is not None else None
    calibrator = _calibrator(calibration, profile.name, out) if mode.calibrate else None
    if calibrator is not None:
        config.int8_calibrator = calibrator
    return config, {"cache_path": cache_path, "cache_state": cache_state, "dla": placement, "keep": (cache, calibrator)}


def _record(features: TrtFeatures, host: dict[str, Any], graph: str, mode: BuildMode, profile: Profile,
            knobs: TensorRTOptions, setup: dict[str, Any], layers: dict[str, Any], onnx_path: Path,
            plan: bytes) -> dict[str, Any]:
    """The manifest's `tensorrt` section: what the engine is, where and how it was built."""
    return {"version": features.version, "built_on": host, "precision": layers["requested"], "graph_precision": graph,
            "build_mode": mode.note, "strongly_typed": mode.strongly_typed, "builder_flags": list(mode.flags),
            "profiles": [profile.to_dict()], "workspace_gb": knobs.workspace_gb, "opt_level": knobs.opt_level,
            "timing_cache": {"path": str(setup["cache_path"]), "state": setup["cache_state"]},
            "dla_core": knobs.dla_core, "dla": setup["dla"], "layers": layers,
            "onnx": {"file": onnx_path.name, "sha256": sha256_file(onnx_path)},
            "plan_sha256": hashlib.sha256(plan).hexdigest()}  # fmt: skip


def onnx_to_tensorrt(onnx_path: str | Path, out: str | Path, *, precision: str = "fp16",
                     profile: Profile | None = None, calibration: Iterable[np.ndarray] | None = None,
                     workspace_gb: float | None = None, opt_level: int | None = None,
                     timing_cache: str | Path | None = None, dla_core: int | None = None,
                     write_manifest: bool = True, progress: bool = False,
                     accept_unseen_precision: bool = False) -> dict[str, Any]:
    """Build `out`, a raw TensorRT plan, from a precision-encoded ONNX; return the manifest's `tensorrt` record.

    Args:
        onnx_path: fp32, fp16 (mixed-precision) or Q/DQ INT8 ONNX.
        out: the plan file (`.engine` or `.plan`), written atomically after every check passed.
        precision: fp32, fp16 or int8; must match the graph, except on TensorRT 10.x where an fp32
            graph may become fp16 (builder flag) or int8 (with `calibration`).
        profile: input shapes; None takes the graph's static shape.
        calibration: float32 NCHW batches for the legacy INT8 calibrator (TensorRT <= 10 only).
        workspace_gb, opt_level: builder workspace limit and optimisation level (0-5).
        timing_cache: cache file, read and updated atomically; None uses one per TensorRT version
            and GPU in the u2deploy cache.
        dla_core: build for this DLA core with GPU fallback (FP16/INT8, static shapes).
        write_manifest: also write `<out>.json` (the export pipeline writes a fuller one itself).
        progress: print what was decided on stderr.
        accept_unseen_precision: keep an fp16/int8 engine whose layer precisions the inspector hides
            (recorded in the manifest as the verdict) instead of refusing it.
    """
    trt = require("tensorrt", "building TensorRT engines")
    features = detect_features(trt)
    require_supported(features)
    onnx_path, out, started = Path(onnx_path), Path(out), time.perf_counter()
    logger = capturing_logger(trt)
    builder = trt.Builder(logger)
    network, _parser, graph, mode = _parse_and_choose(trt, builder, logger, onnx_path, features, precision,
                                                      calibration is not None, dla_core is not None)  # fmt: skip
    profile, dynamic = _network_profile(network, profile, onnx_path)
    host = hardware.host_record()
    knobs = TensorRTOptions(workspace_gb, opt_level, str(timing_cache) if timing_cache else None, dla_core)
    config, setup = _setup(trt, builder, network, features, mode, profile, dynamic, precision, knobs, host,
                           calibration, out)  # fmt: skip
    _say(progress, f"TensorRT {features.version}: {mode.note}; profile {profile.describe()}; "
                   f"timing cache {setup['cache_state']}")  # fmt: skip
    plan = _build(builder, network, config, logger, onnx_path, features)
    atomic_write_bytes(setup["cache_path"], bytes(config.get_timing_cache().serialize()))
    layers = check_engine_precision(_inspect(trt, logger, plan, profile, dla_core), precision, out.name, mode.hint,
                                    accept_unseen_precision)
    _say(progress, f"engine layers by precision {layers.get('by_precision', {})}: {layers['verdict']}")
    atomic_write_bytes(out, plan)
    record = _record(features, host, graph, mode, profile, knobs, setup, layers, onnx_path, plan)
    record["build_seconds"] = round(time.perf_counter() - started, 2)
    if write_manifest:
        _write_standalone_manifest(onnx_path, out, record)
    return record


def _embedded_spec(onnx_path: Path) -> dict[str, Any] | None:
    """The ModelSpec u2deploy embedded in the ONNX, when the onnx package is there to read it."""
    try:
        import onnx
    except ImportError:
        return None
    from ..spec import METADATA_KEY

    props = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
    return ModelSpec.from_json(props[METADATA_KEY]).to_dict() if METADATA_KEY in props else None


def _write_standalone_manifest(onnx_path: Path, out: Path, record: dict[str, Any]) -> None:
    from .._io import file_checksums
    from ..runtimes.base import sidecar_path
    from .manifest import MANIFEST_FORMAT, library_versions, write_manifest

    manifest = {"format": MANIFEST_FORMAT, "format_version": 1,
                "artifact": {"file": out.name, "format": "trt", "precision": record["precision"]},
                "files": file_checksums([out]), "source": {"path": str(onnx_path), "sha256": record["onnx"]["sha256"]},
                "created": {"command": None, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
                "versions": library_versions(), "tensorrt": record,
                "parity": {"skipped": True, "reason": "built by onnx_to_tensorrt; run benchmarks/gpu_check.py"}}
    spec = _embedded_spec(onnx_path)
    if spec:
        manifest["spec"] = spec
    write_manifest(sidecar_path(out), manifest)


def _precision_onnx(loaded: Any, path: Path, spec: ModelSpec,
                    options: ExportOptions) -> tuple[Path, list[Path], dict[str, Any]]:
    """(the graph to build from, every temporary file, the quantizer's manifest sections).

    fp32/fp16: the ONNX at that precision; int8: the INT8 quantizer's Q/DQ ONNX from the fp32 one.
    """
    from .onnx_export import to_onnx

    onnx_precision = "fp32" if options.precision == "int8" else options.precision
    onnx_path = path.with_name(f"{path.stem}.{onnx_precision}.onnx")
    to_onnx(loaded.model, onnx_path, spec=spec, precision=onnx_precision, source_sha256=loaded.sha256,
            outputs=options.outputs, batch=options.batch or 1, dynamic=options.dynamic, opset=options.opset)
    if options.precision != "int8":
        return onnx_path, [onnx_path], {}
    from . import quantizer_for

    quantized = quantizer_for(options.fmt)(onnx_path, path.with_name(f"{path.stem}.int8.onnx"), spec, options)
    return Path(quantized[0]), [onnx_path, *map(Path, quantized)], dict(getattr(quantized, "sections", {}))


def export_tensorrt(loaded: Any, path: Path, spec: ModelSpec, options: ExportOptions) -> list[Path]:
    """`EXPORTERS["trt"]`: the precision-encoded ONNX in the staging folder, then the engine at `path`."""
    from ..runtimes._cuda import provider_name
    from .manifest import ArtifactFiles

    require("tensorrt", "--fmt trt")
    if options.verify and provider_name() is None:
        raise MissingDependencyError("the parity check of --fmt trt runs the engine and needs cuda-python or a CUDA "
                                     "build of PyTorch; fix: pip install cuda-python (or pass --no-verify)")
    knobs = options.tensorrt or TensorRTOptions()
    onnx_path, temporary, sections = _precision_onnx(loaded, path, spec, options)
    try:
        record = onnx_to_tensorrt(onnx_path, path, precision=options.precision, profile=profile_for(spec, options),
                                  workspace_gb=knobs.workspace_gb, opt_level=knobs.opt_level,
                                  timing_cache=knobs.timing_cache, dla_core=knobs.dla_core, write_manifest=False,
                                  progress=options.progress,
                                  accept_unseen_precision=knobs.accept_unseen_precision)  # fmt: skip
    finally:
        for temp in temporary:
            temp.unlink(missing_ok=True)
    return ArtifactFiles([path], {**sections, "tensorrt": record})  # e.g. the INT8 calibration record

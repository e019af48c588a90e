"""A hand-written stand-in for the `tensorrt` module, for testing u2deploy's *own* control flow.

It proves nothing about TensorRT. It implements only the documented calls u2deploy makes
(DEPLOY_APIS.md sections 2-5), with TensorRT's conventions: the builder and the runtime return
None and log an error instead of raising, precision flags disappear on 11.x, inspector formats are
hidden for dynamic shapes until an execution context is set. "Building" stores the ONNX bytes
behind a magic tag as the plan, and the "engine" runs that ONNX with ONNX Runtime on the bytes in
`FakeMemory`, so export -> parity gate -> manifest -> Runtime can run end to end on a CPU.

Every fake object accepts only the attribute names the real class has in the imitated version
(`_Strict`): 11.x has no `int8_calibrator` and no `BuilderFlag.FP16/INT8`, the 10.3 inspector
calls its context `context` and 10.13+ `execution_context`. A misspelt or removed name in
u2deploy's TensorRT code therefore fails the fake-flow tests instead of passing them.

`Behaviour` switches make the parser fail, the builder return None, deserialization fail, the
inspector report every layer in FP32, or the timing cache be rejected.
"""

from __future__ import annotations

import enum
import itertools
import json
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = b"FAKE-TRT-PLAN\n"
BLOCKS: dict[int, bytearray] = {}
_NEXT_PTR = itertools.count(0x10000, 0x10000)


@dataclass
class Behaviour:
    fail_parse: bool = False
    fail_build: bool = False
    fail_deserialize: bool = False
    silent_fp32: bool = False
    reject_cache: bool = False
    dla_cores: int = 0


class Severity(enum.Enum):
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


class FakeMemory:
    """`runtimes._cuda` look-alike: host bytearrays stand in for device memory."""

    name = "fake"

    def __init__(self) -> None:
        self.stream_handle, self.captures, self.replays, self.ptrs = 7, 0, 0, []

    def alloc(self, nbytes: int) -> int:
        ptr = next(_NEXT_PTR)
        BLOCKS[ptr] = bytearray(max(nbytes, 1))
        self.ptrs.append(ptr)
        return ptr

    def upload(self, ptr: int, array: np.ndarray) -> None:
        data = np.ascontiguousarray(array).tobytes()
        BLOCKS[ptr][: len(data)] = data

    def download(self, array: np.ndarray, ptr: int) -> None:
        array.reshape(-1).view(np.uint8)[:] = np.frombuffer(bytes(BLOCKS[ptr][: array.nbytes]), np.uint8)

    def synchronize(self) -> None:
        pass

    def capture(self, enqueue):
        self.captures += 1  # a real capture records the launches; replay runs them

        def replay() -> None:
            self.replays += 1
            enqueue()

        return replay

    def close(self) -> None:
        for ptr in self.ptrs:
            BLOCKS.pop(ptr, None)


_OPS = {"Conv": "CONVOLUTION", "Relu": "ACTIVATION", "Sigmoid": "ACTIVATION", "MaxPool": "POOLING",
        "Resize": "RESIZE", "Concat": "CONCATENATION", "Add": "ELEMENTWISE", "Cast": "CAST", "Constant": "CONSTANT",
        "QuantizeLinear": "QUANTIZE", "DequantizeLinear": "DEQUANTIZE"}
_ONNX_TYPES = {1: "FLOAT", 10: "HALF", 3: "INT8", 6: "INT32", 7: "INT64", 9: "BOOL"}
_FORMATS = {"fp16": ("Channel major FP16 format where channel % 8 == 0", "Half"),
            "fp32": ("Row major linear FP32", "Float"), "int8": ("Thirty-two wide channel vectorized row major Int8 "
                                                               "format.", "Int8")}  # fmt: skip


def make_module(version: str = "10.3.0", behaviour: Behaviour | None = None) -> types.ModuleType:
    """A fresh fake `tensorrt` module; `version` >= 11 drops the precision flags and the calibrator."""
    behaviour = behaviour or Behaviour()
    v11 = int(version.split(".")[0]) >= 11
    trt = types.ModuleType("tensorrt")
    trt.__version__, trt.behaviour, trt.builds = version, behaviour, []
    flags = ["TF32", "GPU_FALLBACK", "REFIT"] + ([] if v11 else ["FP16", "INT8", "OBEY_PRECISION_CONSTRAINTS"])
    trt.BuilderFlag = enum.Enum("BuilderFlag", flags)
    trt.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", {"STRONGLY_TYPED": 5})
    for name, members in (("MemoryPoolType", ["WORKSPACE"]), ("ProfilingVerbosity", ["LAYER_NAMES_ONLY", "DETAILED"]),
                          ("DeviceType", ["GPU", "DLA"]), ("LayerInformationFormat", ["ONELINE", "JSON"]),
                          ("TensorIOMode", ["NONE", "INPUT", "OUTPUT"]),
                          ("DataType", ["FLOAT", "HALF", "INT8", "INT32", "INT64", "BOOL"]),
                          ("LayerType", sorted(set(_OPS.values()) | {"SHUFFLE"}))):  # fmt: skip
        setattr(trt, name, enum.Enum(name, members))
    _add_classes(trt, behaviour, v11)
    return trt


def _add_classes(trt: types.ModuleType, behaviour: Behaviour, v11: bool) -> None:
    class ILogger:
        Severity = Severity

        def __init__(self) -> None:
            pass

    class Logger(ILogger):
        ERROR, WARNING = Severity.ERROR, Severity.WARNING

        def __init__(self, level=None) -> None:
            pass

        def log(self, severity, message) -> None:
            pass

    trt.ILogger, trt.Logger = ILogger, Logger
    trt.nptype = lambda dtype: {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32}[dtype.name]
    trt.Builder = lambda logger: _Builder(trt, logger)
    trt.OnnxParser = lambda network, logger: _Parser(trt, network, logger)
    trt.Runtime = lambda logger: _Runtime(trt, logger)
    if not v11:
        class IInt8EntropyCalibrator2:
            def __init__(self) -> None:
                pass

        trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2


class _Strict:
    """Attribute access as on the real pybind11 objects: only the names the imitated version has.

    Methods are ordinary class attributes (each named as in TensorRT); data attributes live in
    `_fields`, built per version, so reading or writing a name the real class lacks (a typo in
    u2deploy, `int8_calibrator` on 11.x, the inspector's `context` on 10.13) raises AttributeError
    as TensorRT does. Fake-only state is kept under names starting with an underscore.
    """

    def __init__(self, version: tuple[int, int], **fields) -> None:
        object.__setattr__(self, "_version", version)
        object.__setattr__(self, "_fields", dict(fields))

    def __getattr__(self, name: str):
        fields = object.__getattribute__(self, "_fields")
        if name in fields:
            return fields[name]
        raise AttributeError(self._missing(name))

    def __setattr__(self, name: str, value) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        elif name in self._fields:
            self._fields[name] = value
        else:
            raise AttributeError(self._missing(name))

    def _missing(self, name: str) -> str:
        version = ".".join(map(str, object.__getattribute__(self, "_version")))
        return f"'{type(self).__name__.lstrip('_')}' object has no attribute '{name}' (fake TensorRT {version})"


def _version(trt) -> tuple[int, int]:
    major, minor = trt.__version__.split(".")[:2]
    return int(major), int(minor)


class _Tensor(_Strict):
    def __init__(self, trt, name, dtype, shape=()) -> None:
        super().__init__(_version(trt), name=name, dtype=dtype, shape=shape)


class _Layer(_Strict):
    def __init__(self, trt, name, kind, outputs, weights=0) -> None:
        super().__init__(_version(trt), name=name, type=kind, num_outputs=len(outputs))
        self._outputs, self._weights = outputs, weights

    def get_output(self, index):
        return self._outputs[index]


class _Network(_Strict):
    def __init__(self, trt, strongly_typed: bool) -> None:
        super().__init__(_version(trt))
        self._strongly_typed, self._layers, self._inputs, self._onnx_bytes = strongly_typed, [], [], b""

    num_layers = property(lambda self: len(self._layers))
    num_inputs = property(lambda self: len(self._inputs))

    def get_layer(self, index):
        return self._layers[index]

    def get_input(self, index):
        return self._inputs[index]


class _Parser(_Strict):
    def __init__(self, trt, network, logger) -> None:
        super().__init__(_version(trt))
        self._trt, self._network, self._errors = trt, network, []

    num_errors = property(lambda self: len(self._errors))

    def get_error(self, index):
        return self._errors[index]

    def parse_from_file(self, path) -> bool:
        import onnx

        if self._trt.behaviour.fail_parse:
            self._errors.append("In node 12 (parseGraph): INVALID_NODE: Invalid Node - /stage1/Resize: unsupported mode")
            return False
        model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
        self._network._onnx_bytes = Path(path).read_bytes()
        _fill_network(self._trt, self._network, model)
        return True


def _fill_network(trt, network: _Network, model) -> None:
    graph = model.graph
    types_ = {v.name: v.type.tensor_type.elem_type for v in [*graph.input, *graph.output, *graph.value_info]}
    types_.update({t.name: t.data_type for t in graph.initializer})
    sizes = {t.name: int(np.prod(t.dims)) for t in graph.initializer}
    for value in graph.input:
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim)
        network._inputs.append(_Tensor(trt, value.name, trt.DataType.FLOAT, dims))
    for index, node in enumerate(graph.node):
        outputs = [_Tensor(trt, o, getattr(trt.DataType, _ONNX_TYPES.get(types_.get(o, 1), "FLOAT")))
                   for o in node.output]  # fmt: skip
        weights = sizes.get(node.input[1], 0) if node.op_type == "Conv" and len(node.input) > 1 else 0
        kind = getattr(trt.LayerType, _OPS.get(node.op_type, "SHUFFLE"))
        network._layers.append(_Layer(trt, node.name or f"node{index}", kind, outputs, weights))


class _TimingCache(_Strict):
    def __init__(self, trt, data: bytes) -> None:
        super().__init__(_version(trt))
        self._data = bytes(data)

    def serialize(self) -> bytes:
        return self._data


class _Profile(_Strict):
    def __init__(self, trt) -> None:
        super().__init__(_version(trt))
        self._shapes = {}

    def set_shape(self, name, low, opt, high) -> None:
        self._shapes[name] = [list(low), list(opt), list(high)]


class _Config(_Strict):
    def __init__(self, trt) -> None:
        fields = {"profiling_verbosity": None, "builder_optimization_level": 3, "default_device_type": trt.DeviceType.GPU,
                  "DLA_core": -1}  # fmt: skip
        if _version(trt) < (11, 0):
            fields["int8_calibrator"] = None  # removed in TensorRT 11 with implicit quantization
        super().__init__(_version(trt), **fields)
        self._trt, self._flags, self._profiles, self._limits, self._timing_cache = trt, set(), [], {}, None
        self._flags.add(trt.BuilderFlag.TF32)  # on by default, as in TensorRT

    def set_flag(self, flag) -> None:
        self._flags.add(flag)

    def clear_flag(self, flag) -> None:
        self._flags.discard(flag)

    def set_memory_pool_limit(self, pool, size) -> None:
        self._limits[pool.name] = size

    def add_optimization_profile(self, profile) -> int:
        self._profiles.append(profile)
        return len(self._profiles) - 1

    def create_timing_cache(self, data) -> _TimingCache:
        return _TimingCache(self._trt, data)

    def set_timing_cache(self, cache, ignore_mismatch) -> bool:
        if self._trt.behaviour.reject_cache and cache._data:
            return False
        self._timing_cache = cache
        return True

    def get_timing_cache(self):
        return self._timing_cache

    def can_run_on_DLA(self, layer) -> bool:
        return layer.type.name != "RESIZE"


class _Builder(_Strict):
    def __init__(self, trt, logger) -> None:
        super().__init__(_version(trt), num_DLA_cores=trt.behaviour.dla_cores)
        self._trt, self._logger = trt, logger

    def create_network(self, flags: int = 0) -> _Network:
        v11 = not hasattr(self._trt.BuilderFlag, "FP16")
        strongly_typed = v11 or bool(flags & (1 << int(self._trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)))
        return _Network(self._trt, strongly_typed)

    def create_builder_config(self) -> _Config:
        return _Config(self._trt)

    def create_optimization_profile(self) -> _Profile:
        return _Profile(self._trt)

    def build_serialized_network(self, network: _Network, config: _Config):
        if self._trt.behaviour.fail_build:
            self._logger.log(Severity.ERROR, "[fake] Error Code 4: Internal Error (could not find any implementation "
                                             "for node /stage1/rebnconvin/conv/Conv)")
            return None
        if config._timing_cache is not None:
            config._timing_cache._data += b"entry;"
        header = _header(self._trt, network, config)
        self._trt.builds.append(header)
        return MAGIC + json.dumps(header).encode() + b"\n" + network._onnx_bytes


def _layer_precision(trt, network: _Network, config: _Config, dtype_name: str) -> str:
    if trt.behaviour.silent_fp32:
        return "fp32"
    if any(layer.type.name in ("QUANTIZE", "DEQUANTIZE") for layer in network._layers):
        return "int8"
    if hasattr(trt.BuilderFlag, "INT8") and trt.BuilderFlag.INT8 in config._flags and config.int8_calibrator:
        return "int8"
    weak_fp16 = hasattr(trt.BuilderFlag, "FP16") and trt.BuilderFlag.FP16 in config._flags
    return "fp16" if dtype_name == "HALF" or weak_fp16 else "fp32"


def _header(trt, network: _Network, config: _Config) -> dict:
    profile = next(iter(config._profiles[0]._shapes.values())) if config._profiles else None
    layers = [{"Name": "Reformatting CopyNode for Input Tensor 0", "LayerType": "Reformat",
               "Inputs": [{"Format/Datatype": "Row major linear FP32"}], "Outputs": [{"Format/Datatype": "Half"}]}]
    for layer in network._layers:
        if layer.type.name in ("CONSTANT", "CAST"):
            continue
        precision = _layer_precision(trt, network, config, layer.get_output(0).dtype.name)
        fmt, weights_type = _FORMATS[precision]
        entry = {"Name": layer.name, "LayerType": "CaskConvolution" if layer._weights else "PointWiseV2",
                 "Inputs": [{"Format/Datatype": fmt}],
                 "Outputs": [{"Dimensions": [1, 8, 16, 16], "Format/Datatype": fmt}]}
        if layer._weights:
            entry.update({"ParameterType": "Convolution", "Weights": {"Type": weights_type, "Count": layer._weights}})
        layers.append(entry)
    return {"strongly_typed": network._strongly_typed, "flags": sorted(f.name for f in config._flags),
            "profile": profile, "dla_core": config.DLA_core if config.default_device_type.name == "DLA" else None,
            "layers": layers, "workspace": config._limits.get("WORKSPACE"),
            "opt_level": config.builder_optimization_level,
            "verbosity": getattr(config.profiling_verbosity, "name", None)}


class _Runtime(_Strict):
    def __init__(self, trt, logger) -> None:
        super().__init__(_version(trt), DLA_core=-1, num_DLA_cores=trt.behaviour.dla_cores)
        self._trt, self._logger = trt, logger

    def deserialize_cuda_engine(self, plan):
        data = bytes(plan)
        if self._trt.behaviour.fail_deserialize or not data.startswith(MAGIC):
            self._logger.log(Severity.ERROR, "1: [runtime.cpp::parsePlan::314] Error Code 1: Serialization "
                                             "(Serialization assertion plan->header.magicTag == rt::kPLAN_MAGIC_TAG "
                                             "failed.)")  # fmt: skip
            return None
        header, onnx_bytes = data[len(MAGIC):].split(b"\n", 1)
        return _Engine(self._trt, json.loads(header), onnx_bytes)


class _Engine(_Strict):
    def __init__(self, trt, header: dict, onnx_bytes: bytes) -> None:
        import onnxruntime

        session = onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
        inputs = {i.name: i for i in session.get_inputs()}
        outputs = {o.name: o for o in session.get_outputs()}
        super().__init__(_version(trt), num_io_tensors=len(inputs) + len(outputs))
        self._trt, self._header, self._session = trt, header, session
        self._inputs, self._outputs, self._names = inputs, outputs, [*inputs, *outputs]
        self._executions = 0

    def get_tensor_name(self, index: int) -> str:
        return self._names[index]

    def get_tensor_mode(self, name: str):
        return self._trt.TensorIOMode.INPUT if name in self._inputs else self._trt.TensorIOMode.OUTPUT

    def get_tensor_shape(self, name: str) -> tuple:
        arg = self._inputs.get(name) or self._outputs[name]
        return tuple(d if isinstance(d, int) else -1 for d in arg.shape)

    def get_tensor_dtype(self, name: str):
        arg = self._inputs.get(name) or self._outputs[name]
        return self._trt.DataType.HALF if arg.type == "tensor(float16)" else self._trt.DataType.FLOAT

    def get_tensor_profile_shape(self, name: str, index: int):
        return [tuple(s) for s in self._header["profile"]]

    def create_execution_context(self):
        return _Context(self)

    def create_engine_inspector(self):
        return _Inspector(self)


class _Context(_Strict):
    def __init__(self, engine: _Engine) -> None:
        super().__init__(_version(engine._trt))
        self._engine, self._addresses = engine, {}
        self._shapes = {name: engine.get_tensor_shape(name) for name in engine._inputs}

    def set_input_shape(self, name: str, shape) -> bool:
        low, _, high = self._engine._header["profile"] or (self._shapes[name],) * 3
        if not all(lo <= d <= hi for lo, d, hi in zip(low, shape, high, strict=True)):
            return False
        self._shapes[name] = tuple(int(d) for d in shape)
        return True

    def get_tensor_shape(self, name: str) -> tuple:
        if name in self._shapes:
            return self._shapes[name]
        batch, _, height, width = next(iter(self._shapes.values()))
        return (batch, 1, height, width)  # U2-Net maps have the input's size

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self._addresses[name] = ptr
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        feeds = {}
        for name in self._engine._inputs:
            shape, dtype = self._shapes[name], np.float32
            count = int(np.prod(shape)) * np.dtype(dtype).itemsize
            feeds[name] = np.frombuffer(bytes(BLOCKS[self._addresses[name]][:count]), dtype).reshape(shape)
        for name, value in zip(self._engine._outputs, self._engine._session.run(None, feeds), strict=True):
            data = np.ascontiguousarray(value, np.float32).tobytes()
            BLOCKS[self._addresses[name]][: len(data)] = data
        self._engine._executions += 1
        return True


#: the first release whose IEngineInspector calls its context `execution_context` (10.3 has `context`)
INSPECTOR_EXECUTION_CONTEXT = (10, 13)


class _Inspector(_Strict):
    def __init__(self, engine: _Engine) -> None:
        version = _version(engine._trt)
        name = "execution_context" if version >= INSPECTOR_EXECUTION_CONTEXT else "context"
        super().__init__(version, **{name: None})
        self._engine, self._context_name = engine, name

    def get_engine_information(self, fmt) -> str:
        header = self._engine._header
        dynamic = header["profile"] and header["profile"][0] != header["profile"][2]
        layers = header["layers"]
        if header["verbosity"] != "DETAILED":
            layers = [layer["Name"] for layer in layers]
        elif dynamic and self._fields[self._context_name] is None:  # formats need concrete shapes
            layers = [{**layer, "Inputs": [{"Format/Datatype": "N/A due to dynamic shapes"}],
                       "Outputs": [{"Format/Datatype": "N/A due to dynamic shapes"}]} for layer in layers]
        return json.dumps({"Layers": layers, "Bindings": self._engine._names})

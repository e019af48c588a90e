"""Triton Inference Server model repositories: `u2deploy export MODEL --fmt triton -o repo/`.

The network is exported, parity-gated and given its manifest by the ordinary pipeline (as ONNX,
OpenVINO IR or a TensorRT plan, by `--backend`), into `repo/<name>/<version>/model.<ext>`; then
`config.pbtxt` is written from the input/output names, dims and types the artifact itself reports
through its runtime backend. The config is built as Triton's own `ModelConfig` protobuf (the
schema `tritonclient` ships), so an invalid field cannot be written. With `ensemble`, two
Python-backend models (`u2deploy.scale.triton_python`: the same `processing` code as everywhere)
and an ensemble let clients send encoded image bytes and get a PNG mask back.

Everything is staged in a hidden folder inside the repository and moved into place at the end;
a failed export leaves the repository as it was.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .._deps import require
from ..errors import InputError, UnsupportedOptionError
from ..runtimes.base import sidecar_path
from .options import ExportOptions, TritonOptions

__all__ = ["TRITON_BACKENDS", "export_triton", "network_config", "ensemble_configs", "config_text",
           "tensor_entries", "IMAGE", "MASK", "ORIGINAL_SIZE"]

#: --backend -> (u2deploy format, file in the version folder, ModelConfig platform/backend fields)
TRITON_BACKENDS: dict[str, tuple[str, str, dict[str, str]]] = {
    "onnxruntime": ("onnx", "model.onnx", {"platform": "onnxruntime_onnx"}),
    "openvino": ("openvino", "model.xml", {"backend": "openvino"}),
    "tensorrt": ("trt", "model.plan", {"platform": "tensorrt_plan"}),
}
#: Triton's data types for the numpy dtypes the backends report
_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "uint8": "TYPE_UINT8", "int32": "TYPE_INT32",
          "int64": "TYPE_INT64", "bool": "TYPE_BOOL"}  # fmt: skip
#: tensor names of the ensemble's Python models
IMAGE, MASK, ORIGINAL_SIZE = "IMAGE", "MASK", "ORIGINAL_SIZE"


def _check(triton: TritonOptions, options: ExportOptions) -> None:
    """Reject what Triton or the chosen backend cannot serve, before anything is loaded."""
    if triton.backend not in TRITON_BACKENDS:
        from .._registry import unknown_name

        raise unknown_name("Triton backend", triton.backend, list(TRITON_BACKENDS), "--backend")
    if triton.max_batch < 1 or triton.instances < 1 or triton.version < 1:
        raise InputError("--max-batch, --instances and --model-version must be at least 1")
    if triton.kind not in (None, "gpu", "cpu"):
        raise UnsupportedOptionError(f"--instance-kind {triton.kind}: use gpu or cpu")
    kind = _kind(triton)
    if triton.backend == "openvino" and kind == "gpu":
        raise UnsupportedOptionError("Triton's OpenVINO backend runs on CPU instances only: use --instance-kind cpu")
    if triton.backend == "tensorrt" and kind == "cpu":
        raise UnsupportedOptionError("a TensorRT plan runs on GPU instances only: drop --instance-kind cpu")
    if triton.accelerator and (triton.backend != "onnxruntime" or kind != "gpu"):
        raise UnsupportedOptionError("--trt-accelerator is for --backend onnxruntime on GPU instances")
    if any(size < 1 or size > triton.max_batch for size in triton.preferred or ()):
        raise InputError(f"--preferred-batch {triton.preferred}: sizes must be 1..--max-batch ({triton.max_batch})")
    if triton.ensemble and (options.batch is not None or (options.dynamic and not options.dynamic_batch)):
        raise UnsupportedOptionError("--ensemble needs a dynamic batch: drop --batch, or add batch to --dynamic")
    if triton.name is not None and (not triton.name or "/" in triton.name or triton.name.startswith(".")):
        raise InputError(f"--name {triton.name!r}: a model name is one folder name")


def _kind(triton: TritonOptions) -> str:
    return triton.kind or ("cpu" if triton.backend == "openvino" else "gpu")


def _inner_options(options: ExportOptions) -> ExportOptions:
    """The artifact's own export options: a dynamic batch unless the user fixed one (Triton batches)."""
    triton = options.triton or TritonOptions()
    fmt = TRITON_BACKENDS[triton.backend][0]
    changes: dict[str, Any] = {"fmt": fmt, "triton": None}
    if options.batch is None and not options.dynamic and options.profile is None:
        changes["dynamic"] = ("batch",)
        if fmt == "trt":
            changes["profile"] = (1, max(1, triton.max_batch // 2), triton.max_batch)
    return dataclasses.replace(options, **changes)


def tensor_entries(tensors: list[dict[str, Any]], batched: bool) -> list[dict[str, Any]]:
    """Backend `describe()` tensors -> ModelConfig inputs/outputs (batch dim left out when batched)."""
    entries = []
    for tensor in tensors:
        dtype = tensor["dtype"]
        if dtype not in _TYPES:
            raise UnsupportedOptionError(f"tensor '{tensor['name']}' has dtype {dtype}, which Triton configs here "
                                         f"do not map; supported: {', '.join(_TYPES)}")  # fmt: skip
        shape = tensor["shape"][1:] if batched else tensor["shape"]
        entries.append({"name": tensor["name"], "data_type": _TYPES[dtype],
                        "dims": [-1 if dim is None else int(dim) for dim in shape]})  # fmt: skip
    return entries


def network_config(name: str, io: dict[str, Any], options: ExportOptions, triton: TritonOptions) -> dict[str, Any]:
    """The network model's ModelConfig (as a dict) from the artifact's I/O (backend `inputs`/`outputs`).

    Args:
        name: the model's name in the repository.
        io: {"inputs": [...], "outputs": [...]} of {name, shape (None: dynamic), dtype}.
        options: the artifact's export options (precision, TensorRT profile).
        triton: the repository options.
    """
    batched = io["inputs"][0]["shape"][0] is None
    max_batch = (options.profile[2] if options.profile else triton.max_batch) if batched else 0
    config: dict[str, Any] = {"name": name, **TRITON_BACKENDS[triton.backend][2], "max_batch_size": max_batch,
                              "input": tensor_entries(io["inputs"], batched),
                              "output": tensor_entries(io["outputs"], batched),
                              "instance_group": [{"count": triton.instances, "kind": f"KIND_{_kind(triton).upper()}"}],
                              "default_model_filename": TRITON_BACKENDS[triton.backend][1]}  # fmt: skip
    if batched:
        preferred = triton.preferred or sorted({max(1, max_batch // 2), max_batch})
        config["dynamic_batching"] = {"preferred_batch_size": list(preferred),
                                      "max_queue_delay_microseconds": triton.queue_delay_us}  # fmt: skip
    if triton.accelerator:
        precision = {"fp32": "FP32", "fp16": "FP16", "int8": "INT8"}[options.precision]
        config["optimization"] = {"execution_accelerators": {"gpu_execution_accelerator": [
            {"name": "tensorrt", "parameters": {"precision_mode": precision}}]}}  # fmt: skip
    return config


def _python_config(name: str, role: str, inputs: list[dict], outputs: list[dict], max_batch: int,
                   spec_json: str, mode: str) -> dict[str, Any]:
    return {"name": name, "backend": "python", "max_batch_size": max_batch, "input": inputs, "output": outputs,
            "instance_group": [{"count": 1, "kind": "KIND_CPU"}],
            "parameters": {"u2deploy_role": {"string_value": role}, "u2deploy_spec": {"string_value": spec_json},
                           "u2deploy_mode": {"string_value": mode}}}  # fmt: skip


def ensemble_configs(name: str, network: dict[str, Any], spec: Any, mode: str) -> dict[str, dict[str, Any]]:
    """Configs of `<name>_pre`, `<name>_post` (Python backend) and `<name>_ensemble` (bytes in, PNG out)."""
    max_batch = network["max_batch_size"]
    net_in, net_out = network["input"][0], network["output"][0]
    image = {"name": IMAGE, "data_type": "TYPE_STRING", "dims": [1]}
    mask = {"name": MASK, "data_type": "TYPE_STRING", "dims": [1]}
    size = {"name": ORIGINAL_SIZE, "data_type": "TYPE_INT32", "dims": [2]}
    height, width = spec.input_size
    tensor = {**net_in, "dims": [3, height, width]}
    fused = {**net_out, "dims": [1, height, width]}
    spec_json = spec.to_json()
    pre = _python_config(f"{name}_pre", "pre", [image], [tensor, size], max_batch, spec_json, mode)
    post = _python_config(f"{name}_post", "post", [fused, size], [mask], max_batch, spec_json, mode)
    steps = [
        {"model_name": f"{name}_pre", "model_version": -1, "input_map": {IMAGE: IMAGE},
         "output_map": {net_in["name"]: "network_input", ORIGINAL_SIZE: ORIGINAL_SIZE}},
        {"model_name": name, "model_version": -1, "input_map": {net_in["name"]: "network_input"},
         "output_map": {net_out["name"]: "network_output"}},
        {"model_name": f"{name}_post", "model_version": -1,
         "input_map": {net_out["name"]: "network_output", ORIGINAL_SIZE: ORIGINAL_SIZE}, "output_map": {MASK: MASK}},
    ]  # fmt: skip
    ensemble = {"name": f"{name}_ensemble", "platform": "ensemble", "max_batch_size": max_batch, "input": [image],
                "output": [mask], "ensemble_scheduling": {"step": steps}}  # fmt: skip
    return {pre["name"]: pre, post["name"]: post, ensemble["name"]: ensemble}


def config_text(config: dict[str, Any]) -> str:
    """A ModelConfig dict -> `config.pbtxt` text, through Triton's own schema (unknown fields raise)."""
    require("tritonclient", "--fmt triton (Triton's ModelConfig schema)")
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    message = json_format.ParseDict(config, model_config_pb2.ModelConfig())
    return text_format.MessageToString(message)


_MODEL_PY = '''"""Triton Python backend model written by u2deploy: {role}-processing of {name}.

Needs u2deploy (with Pillow and OpenCV) in the Python environment of Triton's Python backend.
"""

from u2deploy.scale.triton_python import {cls} as TritonPythonModel  # noqa: F401
'''


def _write_model(folder: Path, config: dict[str, Any], files: dict[str, str] | None = None, version: int = 1) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.pbtxt").write_text(config_text(config))
    for name, text in (files or {}).items():
        (folder / str(version)).mkdir(exist_ok=True)
        (folder / str(version) / name).write_text(text)


def _publish(stage: Path, repo: Path) -> list[Path]:
    """Move each staged model folder into the repository, replacing an older one of the same name."""
    placed = []
    for folder in sorted(stage.iterdir()):
        target = repo / folder.name
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=repo))
            os.replace(target, old / folder.name)
        os.replace(folder, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        placed.append(target)
    return placed


def _describe_io(artifact: Path) -> dict[str, Any]:
    """Input/output names, shapes and dtypes as the artifact's own runtime backend reports them."""
    from ..runtimes.registry import backend_class, backend_for_path

    with backend_class(backend_for_path(artifact))(artifact) as loaded:
        return {"inputs": [t.to_dict() for t in loaded.inputs], "outputs": [t.to_dict() for t in loaded.outputs]}


def export_triton(model: str | os.PathLike, options: ExportOptions, out: str | os.PathLike | None = None) -> Any:
    """`LAYOUTS["triton"]`: export, gate and write a model repository at `out` (default `triton_repo/`).

    Returns the inner `ExportResult`, its paths pointing into the repository (the model file first,
    then its data files and manifest, then every `config.pbtxt` and `model.py`).
    """
    from .pipeline import ExportResult, run_export

    triton = options.triton or TritonOptions()
    _check(triton, options)
    require("tritonclient", "--fmt triton (Triton's ModelConfig schema)")
    if out is not None and Path(out).suffix in (".onnx", ".xml", ".plan", ".engine"):
        raise InputError(f"-o {out}: --fmt triton writes a model repository folder; use e.g. -o triton_repo/")
    repo = Path(out or "triton_repo")
    repo.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".u2deploy-triton.", dir=repo))
    try:
        inner = _inner_options(options)
        version = stage / "network" / str(triton.version)
        result = run_export(model, inner, version / TRITON_BACKENDS[triton.backend][1])
        spec = _spec_of(result.manifest)
        name = triton.name or f"{spec.arch}_{options.precision}"
        network = network_config(name, _describe_io(result.path), inner, triton)
        _record(result.path, network)
        os.replace(stage / "network", stage / name)
        _write_model(stage / name, network)
        if triton.ensemble:
            _write_ensemble(stage, name, network, spec, triton.mode)
        placed = _publish(stage, repo)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    files = [repo / name / str(triton.version) / path.name for path in result.files]
    extra = sorted(path for folder in placed for path in folder.rglob("*") if path.is_file() and path not in files)
    return ExportResult(files[0], files + extra, result.manifest, result.parity, result.seconds)


def _spec_of(manifest: dict[str, Any]) -> Any:
    from ..spec import ModelSpec

    return ModelSpec.from_dict(manifest["spec"])


def _record(artifact: Path, network: dict[str, Any]) -> None:
    """Add the Triton model config to the artifact's manifest (still staged)."""
    from .manifest import write_manifest

    path = sidecar_path(artifact)
    manifest = json.loads(path.read_text())
    manifest["triton"] = {"model": network["name"], "config": network}
    write_manifest(path, manifest)


def _write_ensemble(stage: Path, name: str, network: dict[str, Any], spec: Any, mode: str) -> None:
    if spec.task == "portrait":
        raise UnsupportedOptionError("--ensemble serves saliency and person masks; a portrait model draws faces "
                                     "(export it without --ensemble)")
    configs = ensemble_configs(name, network, spec, mode)
    for model_name, config in configs.items():
        role = config.get("parameters", {}).get("u2deploy_role", {}).get("string_value")
        files = None
        if role:
            cls = "PreprocessModel" if role == "pre" else "PostprocessModel"
            files = {"model.py": _MODEL_PY.format(role=role, name=name, cls=cls)}
        else:  # an ensemble needs an (empty) version folder too
            (stage / model_name / "1").mkdir(parents=True)
        _write_model(stage / model_name, config, files)

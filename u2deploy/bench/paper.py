"""`u2deploy bench --paper`: the paper's cost comparison (Fig. 4) and model table, measured here.

Two tables:

* **Blocks**: PLN, RES, DSE, INC and RSU (`blocks.py` states and justifies the configuration),
  each 1x3x320x320 -> 1x64x320x320: parameters, conv GFLOPs (FlopCounterMode, 2 FLOPs per MAC,
  REFERENCE.md section 3) and latency on every CPU backend here (PyTorch eager, ONNX Runtime,
  OpenVINO), all interleaved in one process.
* **Models**: U2-Net and U2-Netp at 320x320: parameters, checkpoint size in the pre-1.6
  `torch.save` format the paper's 176.3 MB / 4.7 MB refer to, GFLOPs, and FPS per backend next to
  the paper's 30 / 40 FPS, which were measured on a GTX 1080 Ti GPU: different hardware, shown
  for scale, not as a comparison of like with like.

Each block and model is exported to ONNX with a small helper (the blocks are not U2-Nets, so the
artifact pipeline with its U2-Net checks does not apply; the models go through `build_onnx`, the
same trace/BN-fold/slim step as `u2deploy export`), and OpenVINO compiles the ONNX file directly.
Timing uses random weights: latency does not depend on weight values (no data-dependent paths;
default initialisation produces no denormals).
"""

from __future__ import annotations

import io
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._deps import available
from .harness import interleave, summarize

__all__ = ["PAPER_MODELS", "PAPER_HARDWARE", "PaperResult", "block_costs", "model_facts", "run_paper",
           "CPU_BACKENDS"]  # fmt: skip

#: the paper's numbers: checkpoint size (MB) and FPS on its GPU
PAPER_MODELS = {"u2net": {"file_mb": 176.3, "fps": 30}, "u2netp": {"file_mb": 4.7, "fps": 40}}
PAPER_HARDWARE = "GTX 1080 Ti GPU"
#: backends that time the blocks and models, in table order
CPU_BACKENDS = ("torch", "onnxruntime", "openvino")
_LIBRARY = {"torch": "torch", "onnxruntime": "onnxruntime", "openvino": "openvino"}


@dataclass
class PaperResult:
    """The two tables, the backends used, and what was skipped with why."""

    machine: dict[str, Any]
    backends: list[str]
    blocks: list[dict[str, Any]]
    models: list[dict[str, Any]]
    timing: str
    skipped: dict[str, str] = field(default_factory=dict)
    model_note: str = ""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "u2deploy bench --paper", "machine": self.machine, "backends": self.backends,
                "blocks": self.blocks, "models": self.models, "timing": self.timing, "skipped": self.skipped,
                "model_note": self.model_note, "notes": self.notes}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PaperResult:
        """A recorded `paper.json` back as a result."""
        return cls(data["machine"], data["backends"], data["blocks"], data["models"], data["timing"],
                   data.get("skipped", {}), data.get("model_note", ""), list(data.get("notes", [])))  # fmt: skip


# --------------------------------------------------------------------------------------------
# Costs


def block_costs(size: int = 320) -> list[dict[str, Any]]:
    """Name, configuration, parameters and conv GFLOPs of each block at size x size."""
    from ..model.info import conv_flops, count_parameters
    from .blocks import BLOCK_CONFIGS, make_block

    rows = []
    for name, config in BLOCK_CONFIGS.items():
        block = make_block(name)
        flops, _ = conv_flops(block, (1, 3, size, size))
        rows.append({"name": name, "config": config, "params": count_parameters(block), "flops": flops,
                     "gflop": flops / 1e9})  # fmt: skip
    return rows


def legacy_checkpoint_bytes(model: Any) -> int:
    """Size of `torch.save(state_dict)` in the pre-1.6 format, the one the paper's sizes match."""
    import torch

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer, _use_new_zipfile_serialization=False)
    return buffer.tell()


def model_facts(name: str, size: int = 320) -> dict[str, Any]:
    """Parameters, checkpoint MB (legacy format) and GFLOPs of an architecture, next to the paper's."""
    from ..model import create_model
    from ..model.info import model_cost

    model = create_model(name).eval()
    cost = model_cost(model, (size, size))
    paper = PAPER_MODELS.get(name, {})
    return {"name": name, "params": cost.params, "file_mb": legacy_checkpoint_bytes(model) / 1e6,
            "paper_file_mb": paper.get("file_mb"), "gflop": cost.gflops, "paper_fps": paper.get("fps"),
            "paper_hardware": PAPER_HARDWARE}  # fmt: skip


# --------------------------------------------------------------------------------------------
# Runners: one callable per (network, backend)


def export_module_onnx(module: Any, path: Path, shape: tuple[int, ...], opset: int = 17) -> Path:
    """torch.onnx.export of any module with one input and one output (TorchScript exporter, as `export`)."""
    import torch

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice on every call
        torch.onnx.export(module, (torch.zeros(shape),), str(path), opset_version=opset, input_names=["x"],
                          output_names=["y"], do_constant_folding=True, dynamo=False)  # fmt: skip
    return path


def _u2net_onnx(model: Any, path: Path, size: int) -> Path:
    """U2-Net through `build_onnx`: the same traced, BN-folded, slimmed graph `u2deploy export` writes."""
    import onnx

    from ..export.onnx_export import build_onnx
    from ..spec import spec_for_task

    onnx.save(build_onnx(model, spec_for_task("sod", arch=model.arch, input_size=size)), str(path))
    return path


def _torch_runner(module: Any, threads: int | None) -> Callable[[np.ndarray], Any]:
    import torch

    if threads:
        torch.set_num_threads(threads)

    def run(x: np.ndarray) -> Any:
        with torch.inference_mode():
            return module(torch.from_numpy(x))

    return run


def _ort_runner(path: Path, threads: int | None) -> Callable[[np.ndarray], Any]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})


def _ov_runner(path: Path, threads: int | None) -> Callable[[np.ndarray], Any]:
    import openvino as ov

    # f32: OpenVINO would otherwise compute in bf16 on CPUs that have it, and the table is about FP32 cost
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
              **({"INFERENCE_NUM_THREADS": str(threads)} if threads else {})}
    request = ov.Core().compile_model(str(path), "CPU", config).create_infer_request()
    return lambda x: request.infer({0: x})


def runners(module: Any, onnx_path: Path | None, backends: list[str], threads: int | None) -> dict[str, Callable]:
    """backend -> callable(x) for one network; ONNX-based backends need `onnx_path`."""
    made: dict[str, Callable] = {}
    for backend in backends:
        if backend == "torch":
            made[backend] = _torch_runner(module, threads)
        elif backend == "onnxruntime":
            made[backend] = _ort_runner(onnx_path, threads)
        elif backend == "openvino":
            made[backend] = _ov_runner(onnx_path, threads)
    return made


# --------------------------------------------------------------------------------------------


def available_cpu_backends() -> tuple[list[str], dict[str, str]]:
    """(CPU backends installed here, skipped backend -> reason)."""
    use = [b for b in CPU_BACKENDS if available(_LIBRARY[b])]
    skipped = {b: f"{_LIBRARY[b]} is not installed" for b in CPU_BACKENDS if b not in use}
    skipped["tensorrt"] = "TensorRT builds engines for NVIDIA GPUs; these tables are for the CPU backends here"
    return use, skipped


def _time(calls: dict[str, Callable[[int], Any]], warmup: int, runs: int | None, seconds: float | None,
          bar: Any) -> dict[str, float]:
    from .run import PAUSE

    timings = interleave(calls, warmup=warmup, runs=runs, seconds=seconds, pause=PAUSE,
                         on_round=lambda _: bar.update(1))  # fmt: skip
    return {name: summarize(t.total).p50 for name, t in timings.items()}


def _block_rows(workdir: Path, backends: list[str], threads: int | None, size: int,
                timing: dict[str, Any], progress: Any) -> list[dict[str, Any]]:
    from .blocks import make_block

    costs = block_costs(size)
    x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    calls = {}
    for cost in costs:
        block = make_block(cost["name"])
        path = export_module_onnx(block, workdir / f"{cost['name']}.onnx", x.shape)
        for backend, run in runners(block, path, backends, threads).items():
            calls[f"{cost['name']}|{backend}"] = lambda _, run=run: run(x)
    with progress.bar(timing["runs"], f"paper: {len(calls)} block x backend timings interleaved") as bar:
        p50 = _time(calls, bar=bar, **timing)
    for cost in costs:
        cost["latency_ms"] = {b: p50[f"{cost['name']}|{b}"] for b in backends}
    return costs


def _model_rows(workdir: Path, backends: list[str], threads: int | None, size: int,
                timing: dict[str, Any], progress: Any) -> list[dict[str, Any]]:
    from ..model import DeployHead, create_model

    x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    facts, calls = [], {}
    for name in PAPER_MODELS:
        facts.append(model_facts(name, size))
        model = create_model(name).eval()
        path = _u2net_onnx(model, workdir / f"{name}.onnx", size)
        for backend, run in runners(DeployHead(model).eval(), path, backends, threads).items():
            calls[f"{name}|{backend}"] = lambda _, run=run: run(x)
    with progress.bar(timing["runs"], f"paper: {len(calls)} model x backend timings interleaved") as bar:
        p50 = _time(calls, bar=bar, **timing)
    for fact in facts:
        fact["latency_ms"] = {b: p50[f"{fact['name']}|{b}"] for b in backends}
        fact["fps"] = {b: 1e3 / ms for b, ms in fact["latency_ms"].items()}
    return facts


def run_paper(*, threads: int | None = None, warmup: int = 2, runs: int | None = 10, seconds: float | None = None,
              size: int = 320, progress: Any = None, note: str = "") -> PaperResult:
    """Both tables, timed on every CPU backend installed here."""
    from .machine import machine_info
    from .run import Progress

    progress = progress or Progress(False)
    machine = machine_info()
    backends, skipped = available_cpu_backends()
    timing = {"warmup": warmup, "runs": runs, "seconds": seconds}
    with tempfile.TemporaryDirectory(prefix="u2deploy-paper-") as tmp:
        progress.note("paper: exporting the five blocks and the two models to ONNX")
        blocks = _block_rows(Path(tmp), backends, threads, size, timing, progress)
        models = _model_rows(Path(tmp), backends, threads, size, timing, progress)
    from .machine import load_average

    machine["load_average_after"] = load_average()
    models_note = (f"FPS = 1000 / inference p50 at batch 1 on this CPU ({', '.join(backends)}; threads "
            f"{threads or 'library default'}; random weights, which do not change the speed); the paper's FPS are "
            f"from a {PAPER_HARDWARE}, different hardware, shown for scale. File MB: the state_dict saved in the "
            "pre-1.6 torch.save format, which the paper's sizes match (REFERENCE.md section 2.4).")  # fmt: skip
    count = f"{runs} runs" if runs else f"{seconds} s"
    text = (f"Timing: {warmup} warm-up + {count} per network and backend, interleaved; inference only (1x3x{size}x"
            f"{size} float32 in), batch 1, threads {threads or 'library default'}")  # fmt: skip
    return PaperResult(machine, backends, blocks, models, text, skipped, models_note, [note] if note else [])

"""Fixtures for the TensorRT tests: the fake `tensorrt` module (control flow only) and a fake GPU.

`fake_trt(version, **behaviour)` puts a fresh fake module in `sys.modules["tensorrt"]`, gives the
backend `FakeMemory` instead of CUDA memory, makes the driver report one GPU, and points the
u2deploy cache (timing caches) at a temporary folder. None of this says anything about TensorRT
itself; `test_tensorrt_gpu.py` is the real check, and runs only where TensorRT and a GPU exist.
"""

from __future__ import annotations

import importlib.machinery
import sys

import pytest

from tests.trt import fake_tensorrt
from u2deploy import hardware

FAKE_GPU = hardware.GpuInfo(0, "NVIDIA Fake RTX 3000", "8.6", 12.0)


@pytest.fixture()
def fake_gpu(monkeypatch):
    """The driver reports `FAKE_GPU`; `fake_gpu(None)` makes it report none."""

    def set_gpu(gpu=FAKE_GPU, why="no NVIDIA driver (libcuda not found)"):
        monkeypatch.setattr(hardware, "cuda_devices", lambda: ([gpu], None) if gpu else ([], why))

    set_gpu()
    return set_gpu


@pytest.fixture()
def fake_trt(monkeypatch, tmp_path_factory, fake_gpu):
    memories: list[fake_tensorrt.FakeMemory] = []

    def memory(device=0, prefer=None):
        memories.append(fake_tensorrt.FakeMemory())
        return memories[-1]

    def install(version: str = "10.3.0", **behaviour):
        module = fake_tensorrt.make_module(version, fake_tensorrt.Behaviour(**behaviour))
        module.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
        module.memories = memories
        monkeypatch.setitem(sys.modules, "tensorrt", module)
        return module

    monkeypatch.setattr("u2deploy.runtimes.trt.cuda_memory", memory)
    monkeypatch.setattr("u2deploy.runtimes._cuda.provider_name", lambda prefer=None: "fake")
    monkeypatch.setenv("U2DEPLOY_HOME", str(tmp_path_factory.mktemp("u2deploy_home")))
    return install

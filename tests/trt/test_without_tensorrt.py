"""Without TensorRT (our machines and CI): everything else works, and asking for TensorRT is one clear line.

TensorRT is blocked explicitly (a meta-path finder, or None in sys.modules), so these tests mean
the same on a machine that has it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.test_import_hygiene import BLOCKER, assert_import_without_heavy_packages
from u2deploy.errors import MissingDependencyError

ROOT = Path(__file__).resolve().parents[2]
TRT_MODULES = ["u2deploy.hardware", "u2deploy.doctor", "u2deploy.cli.doctor", "u2deploy.runtimes.trt",
               "u2deploy.runtimes.trt_support", "u2deploy.runtimes._cuda", "u2deploy.export.trt_build",
               "u2deploy.export.trt_checks", "u2deploy.calibration.trt_legacy"]
ONLY_TENSORRT = textwrap.dedent("""
    import importlib.abc, sys
    BLOCKED = {"tensorrt", "cuda"}
    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"No module named {name!r}")
    sys.meta_path.insert(0, Blocker())
""")


def run_python(code: str, blocker: str = BLOCKER) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", blocker + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)  # fmt: skip


def test_the_tensorrt_modules_import_with_every_heavy_package_blocked():
    assert_import_without_heavy_packages(TRT_MODULES)


def test_export_fmt_trt_is_one_line_with_the_install_and_jetson_fix(tiny_checkpoint, tmp_path):
    result = run_python(f"""
        from u2deploy.cli import main
        sys.exit(main(["export", {str(tiny_checkpoint)!r}, "--fmt", "trt", "--fp16", "-o", {str(tmp_path)!r} + "/"]))
    """, ONLY_TENSORRT)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    from u2deploy import hardware

    if hardware.cuda_devices()[0]:
        assert lines[0].startswith("u2deploy export: error: 'tensorrt' is needed for --fmt trt but is not installed")
    else:  # no GPU: that comes first, with the install line for a machine that has one
        assert lines[0].startswith("u2deploy export: error: --fmt trt needs an NVIDIA GPU; none here (")
        assert len(lines[0]) <= 160
    assert "pip install 'u2deploy[tensorrt]'" in lines[0] and len(lines[0]) <= 160  # JetPack's way: with -v
    assert list(tmp_path.iterdir()) == []


def test_running_an_engine_is_one_line(tmp_path):
    engine, image = tmp_path / "m.engine", tmp_path / "photo.png"
    engine.write_bytes(b"a plan")
    from PIL import Image

    Image.new("RGB", (32, 32)).save(image)
    result = run_python(f"""
        from u2deploy.cli import main
        sys.exit(main(["predict", {str(engine)!r}, {str(image)!r}, "-o", {str(tmp_path / "out")!r}]))
    """, ONLY_TENSORRT)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "'tensorrt' is needed for the TensorRT backend" in lines[0] and "u2deploy[tensorrt]" in lines[0]
    assert len(lines[0]) <= 160


def test_the_python_api_raises_the_same_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` fail here too
    from u2deploy import Runtime
    from u2deploy.export.trt_build import onnx_to_tensorrt

    engine = tmp_path / "m.engine"
    engine.write_bytes(b"a plan")
    with pytest.raises(MissingDependencyError, match=r"'tensorrt' is needed for the TensorRT backend .*JetPack's, not pip \(sudo apt install "
                                                     r"python3-libnvinfer"):
        Runtime(engine)
    with pytest.raises(MissingDependencyError, match="'tensorrt' is needed for building TensorRT engines"):
        onnx_to_tensorrt(tmp_path / "m.onnx", tmp_path / "x.engine")


def test_no_cuda_memory_provider_is_one_clear_error(monkeypatch):
    from u2deploy.runtimes import _cuda

    monkeypatch.setattr(_cuda, "provider_name", lambda prefer=None: None)
    with pytest.raises(MissingDependencyError, match="needs cuda-python or a CUDA build of PyTorch to put data on the "
                                                     "GPU; fix: pip install cuda-python"):
        _cuda.cuda_memory(0)
    with pytest.raises(Exception, match="memory='numba' is not known"):
        _cuda.cuda_memory(0, "numba")


def test_gpu_check_script_help_and_missing_tensorrt():
    script = str(ROOT / "benchmarks" / "gpu_check.py")
    helped = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0 and "--precisions" in helped.stdout
    result = run_python(f"""
        import runpy
        sys.argv = [{script!r}, "--model", "u2net_test"]
        runpy.run_path(sys.argv[0], run_name="__main__")
    """, ONLY_TENSORRT)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[-1].startswith("gpu_check: error: 'tensorrt' is needed for benchmarks/gpu_check.py")

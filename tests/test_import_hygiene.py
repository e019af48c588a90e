"""`import u2deploy`, the CLI's --help and the non-torch modules work with no heavy package installed.

A meta-path finder makes torch, onnxruntime, openvino, tensorrt, cv2, nncf and pycuda unimportable
in a fresh interpreter, the way a minimal Jetson or NUC install looks.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

BLOCKER = textwrap.dedent("""
    import importlib.abc, sys
    BLOCKED = {"torch", "onnx", "onnxruntime", "openvino", "tensorrt", "cv2", "nncf", "pycuda", "cuda", "skimage",
               "onnxslim", "matplotlib", "py_sod_metrics", "av", "pymatting", "numba", "playwright", "ray",
               "tritonclient", "pyarrow", "fastapi", "uvicorn", "starlette", "prometheus_client"}
    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} blocked by the import-hygiene test")
    sys.meta_path.insert(0, Blocker())
""")

#: modules that must import without any heavy package (model/ and train/ need torch by design)
LIGHT_MODULES = ["u2deploy", "u2deploy.errors", "u2deploy.spec", "u2deploy.processing", "u2deploy.weights",
                 "u2deploy.samples", "u2deploy.runtimes", "u2deploy.runtimes.registry", "u2deploy.runtimes.runtime",
                 "u2deploy.runtimes.base", "u2deploy.runtimes.ort", "u2deploy.runtimes.ov",
                 "u2deploy.runtimes.torch_backend", "u2deploy.cli", "u2deploy.compare", "u2deploy.export",
                 "u2deploy.export.options", "u2deploy.export.pipeline", "u2deploy.tasks", "u2deploy.tasks.portrait"]  # fmt: skip


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKER + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def assert_import_without_heavy_packages(modules: list[str]) -> None:
    """Import `modules` in a fresh interpreter with the heavy packages blocked; none may be loaded."""
    result = _run(f"""
        import importlib
        for name in {modules!r}:
            importlib.import_module(name)
        heavy = [m for m in sys.modules if m.split(".")[0] in BLOCKED]
        assert not heavy, heavy
    """)
    assert result.returncode == 0, result.stderr


def test_light_modules_import_without_heavy_packages():
    assert_import_without_heavy_packages(LIGHT_MODULES)


def test_every_command_help_works_without_heavy_packages():
    from u2deploy.cli import COMMANDS

    result = _run(f"""
        import contextlib, io
        from u2deploy.cli import main
        for command in [None, *{list(COMMANDS)!r}]:
            out = io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
                main([command, "--help"] if command else ["--help"])
            assert "usage: u2deploy" in out.getvalue(), (command, out.getvalue())
    """)
    assert result.returncode == 0, result.stderr


def test_a_missing_backend_is_one_clear_error():
    result = _run("""
        from u2deploy.errors import MissingDependencyError
        from u2deploy.runtimes.ort import OrtBackend
        backend = OrtBackend("model.onnx")
        try:
            backend.load()
        except MissingDependencyError as exc:
            print(exc)
        else:
            raise SystemExit("no error")
    """)
    assert result.returncode == 0, result.stderr
    assert "'onnxruntime' is needed for the ONNX Runtime backend" in result.stdout
    assert "pip install 'u2deploy[onnx]'" in result.stdout


@pytest.mark.parametrize("module", ["u2deploy.model", "u2deploy.model.checkpoint"])
def test_torch_modules_import_with_torch(module):
    __import__(module)

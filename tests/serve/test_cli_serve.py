"""`u2deploy serve` on the command line: help, one-line errors, and import hygiene without the [serve] extra."""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCK = textwrap.dedent("""
    import importlib.abc, sys
    BLOCKED = {"torch", "onnxruntime", "openvino", "tensorrt", "cv2", "fastapi", "starlette", "uvicorn",
               "prometheus_client", "multipart", "python_multipart"}
    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} blocked by the test")
    sys.meta_path.insert(0, Blocker())
""")


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK + textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "u2deploy", "serve", *args], capture_output=True, text=True, timeout=120)


def test_serve_modules_import_without_the_serve_extra_or_heavy_packages():
    done = _python("""
        import contextlib, io
        import u2deploy.serve, u2deploy.serve.batcher, u2deploy.serve.codec, u2deploy.serve.settings
        import u2deploy.serve.app, u2deploy.serve.metrics, u2deploy.cli.serve
        from u2deploy.cli import main
        with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
            main(["serve", "--help"])
        loaded = sorted(name for name in sys.modules if name.split(".")[0] in BLOCKED)
        assert not loaded, loaded
    """)
    assert done.returncode == 0, done.stderr[-2000:]


def test_missing_extra_is_one_line_naming_it():
    done = _python("""
        from u2deploy.cli import main
        sys.exit(main(["serve", "u2net.onnx"]))
    """)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and "pip install 'u2deploy[serve]'" in done.stderr


def test_public_host_needs_an_api_key_and_bad_model_is_one_line(tmp_path):
    exposed = _cli("u2net", "--host", "0.0.0.0")
    assert exposed.returncode == 1 and "--api-key" in exposed.stderr and "Traceback" not in exposed.stderr
    assert len(exposed.stderr.strip().splitlines()) == 1 and len(exposed.stderr.strip()) <= 200
    missing = _cli(str(tmp_path / "nothing.onnx"))
    assert missing.returncode == 1 and "Traceback" not in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    bad = _cli(str(tmp_path / "nothing.onnx"), "--max-batch", "0")
    assert bad.returncode == 1 and "max_batch" in bad.stderr

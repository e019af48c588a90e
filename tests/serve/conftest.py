"""Fixtures of the serve tests: the tiny seeded model exported with a dynamic batch, real photos as files."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import time

import pytest

pytest.importorskip("fastapi", reason="u2deploy serve needs the [serve] extra (pip install 'u2deploy[serve]')")
pytest.importorskip("onnxruntime", reason="the serve tests run an ONNX export (pip install 'u2deploy[onnx]')")


@pytest.fixture(scope="session")
def serve_onnx(tiny_export):
    """The tiny seeded model as a dynamic-batch ONNX file (64x64 input)."""
    return tiny_export("onnx", dynamic=("batch",), verify=False).path


@pytest.fixture(scope="session")
def runtime(serve_onnx):
    from u2deploy import Runtime

    with Runtime(serve_onnx) as rt:
        yield rt


def encode_photo(array, fmt: str = "JPEG") -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def photo_files(photos) -> dict[str, bytes]:
    """The five real photos as JPEG files (what a client uploads)."""
    return {name: encode_photo(array) for name, array in photos.items()}


@contextlib.contextmanager
def serve_client(model, **settings):
    """A TestClient on `create_app(model, ServeSettings(**settings))`, once /readyz says ready."""
    from fastapi.testclient import TestClient

    from u2deploy.serve import ServeSettings, create_app

    app = create_app(model, ServeSettings(**settings))
    with TestClient(app) as client:
        deadline = time.monotonic() + 60
        while client.get("/readyz").status_code != 200:
            if time.monotonic() > deadline:
                raise AssertionError(f"not ready: {client.get('/readyz').text}")
            time.sleep(0.05)
        yield client


@pytest.fixture(scope="module")
def client(runtime):
    with serve_client(runtime, max_batch=4) as test_client:
        yield test_client


@contextlib.contextmanager
def running_server(model, *options: str):
    """`python -m u2deploy serve MODEL` on a free 127.0.0.1 port: yields (process, base URL) once /readyz is 200."""
    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "u2deploy", "serve", str(model), "--port", str(port), "--log-level", "warning", *options]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not _ready(httpx, url):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"server did not start: {process.stdout.read().decode()[-2000:]}")
            time.sleep(0.2)
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _ready(httpx, url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False

"""`serve --ray`: the `u2deploy serve` app on Ray Serve, over real HTTP on 127.0.0.1, answers as the app does."""

from __future__ import annotations

import io
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("ray.serve", reason="ray[serve] is not installed (pip install 'u2deploy[ray]')")
pytest.importorskip("fastapi", reason="u2deploy serve needs the [serve] extra (pip install 'u2deploy[serve]')")
pytestmark = [pytest.mark.onnxruntime, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _jpeg(array) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def onnx_model(tiny_export):
    return tiny_export("onnx", dynamic=("batch",), verify=False).path


@pytest.fixture(scope="module")
def ray_service(onnx_model):
    """Ray Serve on a fresh local Ray, the service deployed at / on a free port; yields the base URL."""
    import httpx
    import ray
    from ray import serve

    from u2deploy.scale.ray_serve import serve_on_ray
    from u2deploy.serve import ServeSettings

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    port = _free_port()
    try:
        settings = ServeSettings(max_batch=4, max_delay_ms=300, workers=2, warmup=False)
        serve_on_ray(onnx_model, settings, host="127.0.0.1", port=port, blocking=False, num_cpus=0.5)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the Ray Serve deployment never became ready"
            time.sleep(1)
        yield url
    finally:
        serve.shutdown()
        ray.shutdown()


def test_replies_equal_runtime_predict_under_concurrency(ray_service, onnx_model, photos):
    import httpx

    from u2deploy import Runtime

    files = {f"{name}{i}": _jpeg(photos[name]) for name in ("astronaut", "chelsea", "coffee", "rocket") for i in (1, 2)}

    def ask(data: bytes) -> httpx.Response:
        return httpx.post(f"{ray_service}/v1/predict?output=map", content=data,
                          headers={"content-type": "image/jpeg"}, timeout=120)  # fmt: skip

    with ThreadPoolExecutor(8) as pool:  # concurrent requests, gathered by @serve.batch within 300 ms
        replies = dict(zip(files, pool.map(ask, files.values()), strict=True))
    with Runtime(onnx_model) as runtime:
        for name, reply in replies.items():
            assert reply.status_code == 200, reply.text
            np.testing.assert_array_equal(np.load(io.BytesIO(reply.content)), runtime.predict(files[name]), name)
    metrics = httpx.get(f"{ray_service}/metrics", timeout=30).text
    count = float(re.search(r"^u2deploy_batch_size_count (\S+)", metrics, re.M).group(1))
    total = float(re.search(r"^u2deploy_batch_size_sum (\S+)", metrics, re.M).group(1))
    assert total == 8 and count < total  # all 8 images inferred, in fewer than 8 batches


def test_rembg_endpoint_and_metrics(ray_service, photos):
    import httpx
    from PIL import Image

    reply = httpx.post(f"{ray_service}/api/remove", files={"file": ("a.jpg", _jpeg(photos["chelsea"]))}, timeout=120)
    assert reply.status_code == 200 and reply.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(reply.content)).mode == "RGBA"
    metrics = httpx.get(f"{ray_service}/metrics", timeout=30).text
    assert "u2deploy" in metrics


def test_bad_request_is_a_4xx_and_the_service_stays_up(ray_service):
    import httpx

    reply = httpx.post(f"{ray_service}/v1/predict", content=b"not an image",
                       headers={"content-type": "image/jpeg"}, timeout=60)  # fmt: skip
    assert reply.status_code == 400 and reply.json()["kind"] == "bad_input"
    assert httpx.get(f"{ray_service}/healthz", timeout=30).json() == {"status": "ok"}


def test_autoscaling_option_is_checked():
    from u2deploy.errors import InputError
    from u2deploy.scale.ray_serve import parse_autoscaling

    assert parse_autoscaling("1:4")["max_replicas"] == 4
    with pytest.raises(InputError, match="MIN:MAX"):
        parse_autoscaling("4:1")

"""In-process tests of the HTTP API: replies equal `Runtime.predict`, and every bad request is a one-line 4xx/5xx."""

from __future__ import annotations

import io
import json
import struct
import zlib

import numpy as np

from u2deploy import processing

from .conftest import encode_photo, serve_client


def _npy(content: bytes) -> np.ndarray:
    return np.load(io.BytesIO(content), allow_pickle=False)


def _pixels(content: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(content)))


def _one_line_error(reply, status: int, kind: str) -> str:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert body["kind"] == kind and "\n" not in body["error"] and len(body["error"]) <= 300
    return body["error"]


def test_probes_model_description_and_openapi(client, runtime):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    info = client.get("/v1/model").json()
    assert info["backend"] == runtime.backend and info["input_size"] == [64, 64] and info["serve"]["max_batch"] == 4
    assert "path" not in info
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/predict", "/v1/model", "/api/remove", "/healthz", "/readyz", "/metrics"} <= set(paths)
    assert client.get("/docs").status_code == 200


def test_map_raw_body_and_multipart_equal_runtime_predict(client, runtime, photo_files):
    for name, data in photo_files.items():
        expected = runtime.predict(data)
        raw = client.post("/v1/predict?output=map", content=data, headers={"content-type": "image/jpeg"})
        assert raw.headers["content-type"] == "application/x-npy" and "total;dur=" in raw.headers["server-timing"]
        assert np.array_equal(_npy(raw.content), expected), name
        form = client.post("/v1/predict", params={"output": "map"}, files={"file": (f"{name}.jpg", data, "image/jpeg")})
        assert np.array_equal(_npy(form.content), expected), name


def test_mask_cutout_and_composites_equal_processing(client, runtime, photo_files, photos):
    data, image = photo_files["chelsea"], processing.load_image(photo_files["chelsea"])
    saliency = runtime.predict(data)
    mask = client.post("/v1/predict?output=mask", content=data)
    assert np.array_equal(_pixels(mask.content), processing.to_mask_u8(saliency))
    cutout = client.post("/v1/predict", content=data)  # default: RGBA PNG cut-out
    assert cutout.headers["content-type"] == "image/png"
    assert np.array_equal(_pixels(cutout.content), processing.cutout(image, saliency))
    coloured = client.post("/v1/predict?output=composite&background=%2300ff80", content=data)
    assert np.array_equal(_pixels(coloured.content), processing.composite(image, saliency, (0, 255, 128)))
    background = photos["coffee"]
    uploaded = client.post("/v1/predict?output=composite", files={"file": ("c.jpg", data), "background": (
        "b.png", encode_photo(background, "PNG"))})
    assert np.array_equal(_pixels(uploaded.content), processing.composite(image, saliency, background))


def test_format_by_parameter_or_accept(client, photo_files):
    data = photo_files["rocket"]
    webp = client.post("/v1/predict?output=composite", content=data, headers={"accept": "image/webp,*/*"})
    assert webp.headers["content-type"] == "image/webp" and webp.content[8:12] == b"WEBP"
    jpeg = client.post("/v1/predict?output=mask&format=jpg", content=data)
    assert jpeg.headers["content-type"] == "image/jpeg" and jpeg.content[:2] == b"\xff\xd8"
    _one_line_error(client.post("/v1/predict?format=jpeg", content=data), 400, "bad_input")  # cut-out needs alpha
    _one_line_error(client.post("/v1/predict?format=gif", content=data), 400, "bad_input")
    _one_line_error(client.post("/v1/predict?output=matte", content=data), 400, "bad_input")
    _one_line_error(client.post("/v1/predict?output=composite&background=300,0,0", content=data), 400, "bad_input")


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels and carries one compressed row: a decompression bomb's header."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * (width + 1))) + chunk(b"IEND", b"")


def test_corrupt_empty_truncated_and_bomb_uploads(client, photo_files):
    assert "not a readable image" in _one_line_error(client.post("/v1/predict", content=b"hello, not an image"), 400, "bad_input")
    _one_line_error(client.post("/v1/predict", content=b""), 400, "bad_input")
    _one_line_error(client.post("/v1/predict", content=photo_files["coffee"][:3000]), 400, "bad_input")
    _one_line_error(client.post("/v1/predict", files={"image": ("x.jpg", photo_files["coffee"])}), 400, "bad_input")
    bomb = _png_header_only(12_000, 12_000)  # 144 megapixels declared in a few kB, over the 40 MP default
    assert len(bomb) < 10_000
    assert "over the limit" in _one_line_error(client.post("/v1/predict", content=bomb), 413, "too_large")
    huge = _png_header_only(60_000, 60_000)  # 3.6 gigapixels: Pillow's own guard refuses it at open
    assert "pixel limit" in _one_line_error(client.post("/v1/predict", content=huge), 413, "too_large")
    assert client.get("/readyz").status_code == 200  # still up


def test_upload_and_pixel_limits(runtime, photo_files):
    data = photo_files["astronaut"]  # 512x512
    with serve_client(runtime, max_upload_bytes=len(data) - 1, max_pixels=512 * 512) as small:
        _one_line_error(small.post("/v1/predict", content=data), 413, "too_large")
        chunked = small.post("/v1/predict", content=iter([data[:1000], data[1000:]]))  # no Content-Length
        _one_line_error(chunked, 413, "too_large")
        _one_line_error(small.post("/v1/predict", files={"file": ("a.jpg", data)}), 413, "too_large")
    with serve_client(runtime, max_pixels=512 * 511) as few_pixels:
        _one_line_error(few_pixels.post("/v1/predict", content=data), 413, "too_large")


def test_full_queue_is_503_with_retry_after_and_timeout_is_504(runtime, photo_files):
    with serve_client(runtime, max_queue=1) as full:
        batcher = full.app.state.serve.batcher
        batcher.admit()  # another request holds the only place
        try:
            reply = full.post("/v1/predict", content=photo_files["coffee"])
            _one_line_error(reply, 503, "queue_full")
            assert reply.headers["retry-after"] == "1"
        finally:
            batcher.release()
        assert full.post("/v1/predict", content=photo_files["coffee"]).status_code == 200
    with serve_client(runtime, timeout_s=0.0001) as hasty:
        _one_line_error(hasty.post("/v1/predict", content=photo_files["coffee"]), 504, "timeout")
        assert hasty.app.state.serve.batcher.depth == 0  # the abandoned request gave its place back


def test_api_key(runtime, photo_files):
    with serve_client(runtime, api_key="s3cret") as locked:
        assert locked.get("/healthz").status_code == 200 and locked.get("/").status_code == 200
        _one_line_error(locked.post("/v1/predict", content=photo_files["coffee"]), 401, "unauthorized")
        _one_line_error(locked.get("/metrics", headers={"x-api-key": "wrong"}), 401, "unauthorized")
        assert locked.get("/v1/model", headers={"x-api-key": "s3cret"}).status_code == 200
        assert locked.post("/api/remove", files={"file": ("a.jpg", photo_files["coffee"])},
                           headers={"authorization": "Bearer s3cret"}).status_code == 200


def test_rembg_compatible_endpoint(client, runtime, photo_files):
    data = photo_files["motorcycle"]
    image, saliency = processing.load_image(data), runtime.predict(data)
    reply = client.post("/api/remove", files={"file": ("m.jpg", data, "image/jpeg")}, data={"model": "u2net"})
    assert reply.headers["content-type"] == "image/png" and reply.headers["x-u2deploy-model"].endswith(".onnx")
    assert np.array_equal(_pixels(reply.content), processing.cutout(image, saliency))
    mask = client.post("/api/remove", files={"file": ("m.jpg", data)}, data={"om": "true"})
    assert np.array_equal(_pixels(mask.content), processing.to_mask_u8(saliency))
    over = _pixels(client.post("/api/remove?bgc=255,0,0,255", files={"file": ("m.jpg", data)}).content)
    assert over.shape[2] == 4 and (over[..., 3] == 255).all()
    assert np.abs(over[..., :3].astype(int) - processing.composite(image, saliency, (255, 0, 0))).max() <= 1
    _one_line_error(client.post("/api/remove", files={"file": ("m.jpg", data)}, data={"dc": "true"}), 501,
                    "not_implemented")
    assert client.post("/api/remove", files={"file": ("m.jpg", data)}, data={"af": "300"}).status_code == 422
    _one_line_error(client.post("/api/remove", files={"file": ("m.txt", b"text")}), 400, "bad_input")


def test_metrics_count_stages_batches_and_errors(client, photo_files):
    client.post("/v1/predict", content=photo_files["coffee"])
    client.post("/v1/predict", content=b"junk")
    text = client.get("/metrics").text
    for stage in ("decode", "preprocess", "queue", "infer", "postprocess", "encode", "total"):
        assert f'u2deploy_stage_seconds_count{{stage="{stage}"}}' in text
    assert "u2deploy_batch_size_count" in text and "u2deploy_queue_depth 0.0" in text
    assert 'u2deploy_errors_total{kind="bad_input"}' in text
    assert 'u2deploy_requests_total{route="/v1/predict",status="400"}' in text


def test_page_is_self_contained(client):
    page = client.get("/")
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "<script>" in html and "<style>" in html and "/v1/predict" in html
    for external in ("http://", "https://", "<script src", "<link "):
        assert external not in html, external
    assert 'name="viewport"' in html


def test_model_loaded_from_a_path_reports_failure_on_readyz(tmp_path):
    from fastapi.testclient import TestClient

    from u2deploy.serve import ServeSettings, create_app

    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not onnx")
    with TestClient(create_app(bad, ServeSettings())) as broken:
        import time

        for _ in range(200):
            reply = broken.get("/readyz")
            if "failed" in reply.text:
                break
            time.sleep(0.05)
        assert "model failed to load" in _one_line_error(reply, 503, "not_ready")
        assert broken.get("/healthz").status_code == 200
        _one_line_error(broken.post("/v1/predict", content=b"x"), 503, "not_ready")
        assert json.loads(broken.get("/v1/model").text)["kind"] == "not_ready"


def test_refinement_is_the_same_code_as_predict(client, runtime, photo_files):
    """`refine`/`post` on /v1/predict and rembg's a/af/ab/ae/ppm on /api/remove run `u2deploy.refine`."""
    from u2deploy.refine import RefineOptions, refine_full

    data = photo_files["coffee"]
    image, saliency = processing.load_image(data), runtime.predict(data)
    guided = client.post("/v1/predict?output=cutout&refine=guided", content=data)
    assert np.array_equal(_pixels(guided.content), processing.cutout(image, saliency, refine="guided"))
    smooth = client.post("/v1/predict?output=mask&post=smooth", content=data)
    smoothed = refine_full(saliency, image, RefineOptions(post="smooth")).alpha
    assert np.array_equal(_pixels(smooth.content), processing.to_mask_u8(smoothed))
    # matting on a small PNG crop, with room for pymatting's first-call compilation
    small = encode_photo(np.asarray(image)[:96, :128], "PNG")
    matting = RefineOptions(mode="matting", fg_threshold=200, bg_threshold=20, erode=5)
    with serve_client(runtime, timeout_s=600) as patient:
        reply = patient.post("/api/remove", files={"file": ("c.png", small)},
                             data={"a": "true", "af": "200", "ab": "20", "ae": "5"})
    assert reply.status_code == 200, reply.text
    crop = processing.load_image(small)
    assert np.array_equal(_pixels(reply.content), processing.cutout(crop, runtime.predict(crop), refine=matting))
    _one_line_error(client.post("/v1/predict?refine=magic", content=data), 400, "bad_input")
    _one_line_error(client.post("/api/remove", files={"file": ("c.jpg", data)},
                                data={"a": "true", "af": "10", "ab": "20"}), 400, "bad_input")

"""The FastAPI app of `u2deploy serve`: routes over a `Batcher`, nothing else.

`create_app(runtime_or_path, settings)` returns a plain ASGI app, so uvicorn (the CLI), a test
client or Ray Serve (`serve.ingress`) can host it. Routes read uploads, hand the pixels to the
batcher and encode replies in the worker pool; every error is one line of JSON with a 4xx/5xx.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from importlib import resources
from typing import Any

import numpy as np

from .. import __version__
from .._deps import require
from ..errors import InputError, U2DeployError, first_line
from .batcher import Batcher, QueueFullError, ShuttingDownError
from .codec import OUTPUTS, TooLargeError, choose_format, decode_image, encode, parse_colour, render
from .settings import ServeSettings

__all__ = ["create_app", "ServeState", "NotReadyError", "NotImplementedOptionError", "RequestTimeoutError",
           "choose_format", "error_reply", "read_body", "read_upload", "page_html", "parse_output", "parse_background"]

log = logging.getLogger("u2deploy.serve")
_PROTECTED = ("/v1/", "/api/", "/metrics")


class NotReadyError(U2DeployError):
    """The model is still loading or warming up (HTTP 503)."""


class NotImplementedOptionError(U2DeployError):
    """A rembg option this service does not implement (HTTP 501)."""


class RequestTimeoutError(U2DeployError):
    """A request took longer than --timeout (HTTP 504)."""


#: error type -> (HTTP status, kind label for metrics and the JSON body)
_STATUS: list[tuple[type, int, str]] = [
    (TooLargeError, 413, "too_large"), (InputError, 400, "bad_input"), (QueueFullError, 503, "queue_full"),
    (ShuttingDownError, 503, "shutting_down"), (NotReadyError, 503, "not_ready"),
    (NotImplementedOptionError, 501, "not_implemented"), (RequestTimeoutError, 504, "timeout"),
]


class ServeState:
    """What the routes share: settings, the runtime, the batcher, the worker pool and the metrics."""

    def __init__(self, model: Any, settings: ServeSettings, batcher_class: type[Batcher] = Batcher) -> None:
        from concurrent.futures import ThreadPoolExecutor

        from .metrics import ServeMetrics

        self.model, self.settings, self.batcher_class = model, settings, batcher_class
        self.runtime: Any = None
        self.batcher: Batcher | None = None
        self.pool = ThreadPoolExecutor(settings.workers, thread_name_prefix="u2deploy-serve")
        self.metrics = ServeMetrics(settings.max_batch, lambda: self.batcher.depth if self.batcher else 0)
        self.ready = False
        self.load_error: str | None = None
        self._started: asyncio.Task | None = None

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any):
        # Load and warm up in the background so /healthz answers while a big model loads.
        self._started = asyncio.create_task(self._start())
        try:
            yield
        finally:
            await self._stop()

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            if isinstance(self.model, (str, bytes)) or hasattr(self.model, "__fspath__"):
                from ..runtimes.runtime import Runtime

                self.runtime = await loop.run_in_executor(self.pool, lambda: Runtime(self.model, **self.settings.runtime_options))
            else:
                self.runtime = self.model
            self.batcher = self.batcher_class(self.runtime, max_batch=self.settings.max_batch, max_delay_ms=self.settings.max_delay_ms,
                                   max_queue=self.settings.max_queue, pool=self.pool, observer=self.metrics.observe)
            await self.batcher.start()
            if self.settings.warmup:
                await loop.run_in_executor(self.pool, self._warm_up)
            self.ready = True
            log.info("ready: %s", self.runtime)
        except Exception as exc:  # reported by /readyz; the process stays up to say why
            self.load_error = first_line(exc)
            log.error("model failed to load: %s", self.load_error)

    def _warm_up(self) -> None:
        """One full batch through every stage, so the first requests do not pay for allocations."""
        gray = np.full((64, 64, 3), 128, np.uint8)
        self.runtime.predict([gray] * self.batcher.max_batch)
        encode(render("cutout", gray, self.runtime.predict(gray)), "png")

    async def _stop(self) -> None:
        self.ready = False
        if self._started is not None and not self._started.done():
            self._started.cancel()
        if self.batcher is not None:
            await self.batcher.stop(self.settings.timeout_s)
        self.pool.shutdown(wait=True)

    def check_ready(self) -> Batcher:
        if not self.ready or self.batcher is None:
            reason = f"model failed to load: {self.load_error}" if self.load_error else "model is loading"
            raise NotReadyError(f"not ready ({reason}); retry shortly")
        return self.batcher

    async def in_pool(self, stage: str, function: Any, *args: Any) -> Any:
        start = time.perf_counter()
        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, function, *args)
        finally:
            self.metrics.observe(stage, time.perf_counter() - start)

    async def respond(self, data: bytes, output: str, fmt: str, background: Any = None,
                      refine: Any = None) -> tuple[bytes, dict[str, str]]:
        """Decode, batch, render and encode one image under the queue bound and the request timeout."""
        batcher = self.check_ready()
        batcher.admit()
        try:
            return await asyncio.wait_for(self._respond(batcher, data, output, fmt, background, refine),
                                          self.settings.timeout_s)
        except asyncio.TimeoutError:
            raise RequestTimeoutError(f"no reply within {self.settings.timeout_s:g} s (--timeout); retry or lower the load") from None
        finally:
            batcher.release()

    async def _respond(self, batcher: Batcher, data: bytes, output: str, fmt: str, background: Any,
                       refine: Any) -> tuple[bytes, dict[str, str]]:
        times = {"start": time.perf_counter()}
        image = await self.in_pool("decode", decode_image, data, self.settings.max_pixels)
        if isinstance(background, bytes):
            background = await self.in_pool("decode", decode_image, background, self.settings.max_pixels, "background")
        times["decode"] = time.perf_counter()
        saliency = await batcher.run_admitted(image)
        times["model"] = time.perf_counter()
        body = await self.in_pool("encode", lambda: encode(render(output, image, saliency, background, refine), fmt))
        times["encode"] = time.perf_counter()
        self.metrics.observe("total", times["encode"] - times["start"])
        return body, {"Server-Timing": _server_timing(times), "X-U2Deploy-Size": f"{image.shape[1]}x{image.shape[0]}"}


def _server_timing(times: dict[str, float]) -> str:
    names = list(times)
    parts = [f"{name};dur={(times[name] - times[prev]) * 1000:.1f}" for prev, name in zip(names, names[1:], strict=False)]
    return ", ".join([*parts, f"total;dur={(times[names[-1]] - times['start']) * 1000:.1f}"])


def error_reply(state: ServeState, exc: Exception) -> Any:
    """One-line JSON error with the status of its type; unknown exceptions are 500s and are logged."""
    from fastapi.responses import JSONResponse

    status, kind = next(((code, name) for kind_type, code, name in _STATUS if isinstance(exc, kind_type)), (500, "internal"))
    if status == 500:
        log.error("internal error", exc_info=exc)
    state.metrics.errors.labels(kind).inc()
    headers = {"Retry-After": "1"} if status == 503 else None
    message = first_line(exc, 300) if status != 500 else "internal error; see the server log"
    return JSONResponse({"error": message, "kind": kind}, status_code=status, headers=headers)


async def read_body(request: Any, limit: int) -> bytes:
    """The raw request body, refused (413) as soon as it passes `limit` bytes."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLargeError(f"upload is over {limit} bytes (--max-upload-mb)")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_upload(upload: Any, limit: int, field: str) -> bytes:
    """A multipart file field's bytes, after checking its size (Starlette spools large parts to disk)."""
    if upload.size is not None and upload.size > limit:
        raise TooLargeError(f"field '{field}' is over {limit} bytes (--max-upload-mb)")
    return await upload.read()


def page_html() -> str:
    return resources.files("u2deploy.serve").joinpath("page.html").read_text(encoding="utf-8")


def create_app(model: Any, settings: ServeSettings | None = None, *, batcher_class: type[Batcher] = Batcher) -> Any:
    """The service as a FastAPI app.

    Args:
        model: a loaded `Runtime`, or anything `Runtime` accepts (loaded at start-up, in the background).
        settings: limits and batching; the defaults bind nothing (the host is uvicorn's business).
        batcher_class: the batching engine (`u2deploy.scale.ray_serve` passes one driven by `@serve.batch`).
    """
    fastapi = require("fastapi", "u2deploy serve")
    settings = settings or ServeSettings()
    state = ServeState(model, settings, batcher_class)
    app = fastapi.FastAPI(title="u2deploy", version=__version__, lifespan=state.lifespan,
                          description="U2-Net background removal: masks, cut-outs and composites, batched across requests.")
    app.state.serve = state
    _add_middleware(app, state)
    from . import routes

    routes.add_routes(app, state)
    return app


def _add_middleware(app: Any, state: ServeState) -> None:
    from fastapi.responses import JSONResponse

    @app.exception_handler(U2DeployError)
    async def _user_error(request: Any, exc: U2DeployError) -> Any:
        return error_reply(state, exc)

    @app.middleware("http")
    async def _guard(request: Any, call_next: Any) -> Any:
        path = request.url.path
        key = state.settings.api_key
        if key and path.startswith(_PROTECTED) and not _key_ok(request, key):
            state.metrics.errors.labels("unauthorized").inc()
            return JSONResponse({"error": "missing or wrong API key; send X-API-Key or Authorization: Bearer",
                                 "kind": "unauthorized"}, status_code=401)
        length = request.headers.get("content-length")
        # multipart adds a few hundred bytes of headers per field around the image
        if length and length.isdigit() and int(length) > state.settings.max_upload_bytes + 64 * 1024:
            return error_reply(state, TooLargeError(f"upload of {length} bytes is over the limit (--max-upload-mb)"))
        response = await call_next(request)
        state.metrics.requests.labels(_route_label(path), str(response.status_code)).inc()
        return response


def _route_label(path: str) -> str:
    known = ("/v1/predict", "/v1/model", "/api/remove", "/healthz", "/readyz", "/metrics", "/")
    return path if path in known else "other"


def _key_ok(request: Any, key: str) -> bool:
    given = request.headers.get("x-api-key") or ""
    auth = request.headers.get("authorization") or ""
    if auth.lower().startswith("bearer "):
        given = given or auth[7:].strip()
    return hmac.compare_digest(given.encode(), key.encode())


def parse_output(output: str) -> str:
    if output not in OUTPUTS:
        raise InputError(f"unknown output '{output[:20]}'; choose one of {', '.join(OUTPUTS)}")
    return output


def parse_background(text: str | None) -> Any:
    return parse_colour(text) if text else None


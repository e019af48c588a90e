"""HTTP routes of `u2deploy serve`. Imported by `create_app` after `require("fastapi")`, so FastAPI may be imported here.

Every route is a few lines: parse the request, call `ServeState.respond` (which drives the
batcher), wrap the bytes in a response.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, Response

from ..refine import RefineOptions
from .app import (
    NotImplementedOptionError,
    ServeState,
    choose_format,
    page_html,
    parse_background,
    parse_output,
    read_body,
    read_upload,
)
from .codec import MEDIA_TYPES

__all__ = ["add_routes"]

_IMAGE_BODY = {"requestBody": {"content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary", "description": "the image"},
        "background": {"type": "string", "format": "binary", "description": "background image for output=composite"},
    }}},
    "image/*": {"schema": {"type": "string", "format": "binary"}},
}}}


def add_routes(app: FastAPI, state: ServeState) -> None:
    """Attach the page, the API, the probes and /metrics to `app`."""
    _add_predict(app, state)
    _add_rembg(app, state)
    _add_info(app, state)


def _add_predict(app: FastAPI, state: ServeState) -> None:
    @app.post("/v1/predict", openapi_extra=_IMAGE_BODY, response_class=Response,
              responses={200: {"content": {t: {} for t in MEDIA_TYPES.values()}}})
    async def predict(request: Request,
                      output: Annotated[str, Query(description="mask, cutout (RGBA), composite or map (float32 .npy)")] = "cutout",
                      format: Annotated[str | None, Query(description="png, jpeg, webp or npy; default from Accept, else png")] = None,
                      background: Annotated[str | None, Query(description="composite colour: R,G,B or #rrggbb")] = None,
                      refine: Annotated[str, Query(description="edge refinement: none, guided or matting")] = "none",
                      post: Annotated[str, Query(description="mask post-processing: none or smooth")] = "none",
                      ) -> Response:
        """Mask, cut-out, composite or float map of one image (multipart field `file`, or the raw body)."""
        output = parse_output(output)
        fmt = choose_format(format, request.headers.get("accept"), output)
        colour = parse_background(background)
        data, back = await _image_and_background(request, state)
        options = RefineOptions(mode=refine, post=post)  # a bad value is a one-line 400
        body, headers = await state.respond(data, output, fmt, back if back is not None else colour, options)
        return Response(body, media_type=MEDIA_TYPES[fmt], headers=headers)


async def _image_and_background(request: Request, state: ServeState) -> tuple[bytes, bytes | None]:
    limit = state.settings.max_upload_bytes
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return await read_body(request, limit), None
    form = await request.form(max_files=2, max_fields=10)
    upload = form.get("file")
    if not hasattr(upload, "read"):
        from ..errors import InputError

        raise InputError("multipart upload has no 'file' field with the image")
    back = form.get("background")
    background = await read_upload(back, limit, "background") if hasattr(back, "read") else None
    return await read_upload(upload, limit, "file"), background


def _add_rembg(app: FastAPI, state: ServeState) -> None:
    @app.post("/api/remove", response_class=Response, responses={200: {"content": {"image/png": {}}}})
    async def remove(file: Annotated[UploadFile, File(description="the image")],
                     model: Annotated[str, Form(description="accepted and ignored: the server runs one model")] = "u2net",
                     a: Annotated[bool, Form(description="alpha matting (closed-form, pymatting)")] = False,
                     af: Annotated[int, Form(ge=0, le=255)] = 240, ab: Annotated[int, Form(ge=0, le=255)] = 10,
                     ae: Annotated[int, Form(ge=0)] = 10,
                     om: Annotated[bool, Form(description="only the mask")] = False,
                     ppm: Annotated[bool, Form(description="post-process the mask (open, blur, threshold)")] = False,
                     dc: Annotated[bool, Form(description="decontaminate edges: with a=true (matting estimates "
                                                          "the object's own colours); alone, 501")] = False,
                     bgc: Annotated[str | None, Query(description="background colour R,G,B,A")] = None,
                     extras: Annotated[str | None, Query(description="accepted and ignored")] = None) -> Response:
        """rembg-compatible removal (`rembg s`'s POST /api/remove): RGBA PNG cut-out, or the mask with `om`."""
        if dc and not a:
            raise NotImplementedOptionError("edge decontamination without matting (dc=true, a=false) is not "
                                            "implemented: send a=true too, matting decontaminates the colours")
        options = RefineOptions(mode="matting" if a else "none", post="smooth" if ppm else "none",
                                fg_threshold=af, bg_threshold=ab, erode=ae)  # fmt: skip
        data = await read_upload(file, state.settings.max_upload_bytes, "file")
        output = "mask" if om else ("composite" if bgc else "cutout")
        colour = parse_background(bgc) if bgc and not om else None
        if colour is not None and len(colour) == 3:
            colour = (*colour, 255)
        body, headers = await state.respond(data, output, "png", colour, options)
        headers["X-U2Deploy-Model"] = state.runtime.path.name
        return Response(body, media_type="image/png", headers=headers)


def _add_info(app: FastAPI, state: ServeState) -> None:
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(page_html())

    @app.get("/v1/model")
    async def describe() -> dict[str, Any]:
        """The artifact (`Runtime.describe()`) and the service's batching and limits."""
        runtime = state.check_ready().runtime
        settings = state.settings
        info = {key: value for key, value in runtime.describe().items() if key != "path"}  # no server paths
        return {"model": runtime.path.name, **info,
                "serve": {"max_batch": state.batcher.max_batch, "max_delay_ms": settings.max_delay_ms,
                          "max_queue": settings.max_queue, "timeout_s": settings.timeout_s, "workers": settings.workers,
                          "max_upload_bytes": settings.max_upload_bytes, "max_pixels": settings.max_pixels,
                          "outputs": ["mask", "cutout", "composite", "map"]}}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is up (the model may still be loading)."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """200 once the model is loaded and warmed up, 503 before (or if it failed to load)."""
        state.check_ready()
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        """Prometheus metrics: latency by stage, queue depth, batch sizes, requests and errors."""
        body, content_type = state.metrics.render()
        return Response(body, media_type=content_type)

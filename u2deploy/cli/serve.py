"""Serve a model over HTTP: a web page at /, a JSON/image API, rembg-compatible /api/remove, /metrics.

  u2deploy serve u2net.xml                                   # http://127.0.0.1:8000/ (page), /docs (API)
  u2deploy serve u2netp.onnx --max-batch 8 --max-delay-ms 5  # batch concurrent requests
  U2DEPLOY_API_KEY=secret u2deploy serve u2net.xml --host 0.0.0.0   # other machines need the key

  curl -F file=@photo.jpg 'http://127.0.0.1:8000/v1/predict?output=cutout' -o cutout.png
  curl --data-binary @photo.jpg -H 'Accept: image/webp' 'http://127.0.0.1:8000/v1/predict?output=composite&background=0,128,255' -o out.webp
  curl -F file=@photo.jpg http://127.0.0.1:8000/api/remove -o cutout.png    # as with `rembg s`

Binds to 127.0.0.1 unless --host says otherwise; on any other address give an API key (--api-key
or the U2DEPLOY_API_KEY environment variable). SIGTERM or Ctrl-C stops accepting, answers the
requests in flight and exits 0. See docs/serve.md.
"""

from __future__ import annotations

import argparse
import os

from . import _ray_serve
from ._common import add_runtime_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_runtime_arguments(parser)
    net = parser.add_argument_group("network")
    net.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    net.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    net.add_argument("--api-key", default=None, help="require this key (X-API-Key or Bearer) on /v1, /api and /metrics; "
                                                     "default: $U2DEPLOY_API_KEY")
    net.add_argument("--allow-open", action="store_true", help="serve a non-local --host without an API key")
    batching = parser.add_argument_group("batching and limits")
    batching.add_argument("--max-batch", type=int, default=8, help="images per inference (default 8; a static-batch "
                                                                    "artifact caps it at its batch)")
    batching.add_argument("--max-delay-ms", type=float, default=5.0, help="wait for a batch to fill (default 5 ms)")
    batching.add_argument("--max-queue", type=int, default=64, help="images in flight before 503 (default 64)")
    batching.add_argument("--timeout", type=float, default=30.0, help="per-request limit in seconds, then 504 (default 30)")
    batching.add_argument("--workers", type=int, default=None, help="threads for decode/pre/post/encode (default min(4, CPUs))")
    batching.add_argument("--max-upload-mb", type=float, default=20.0, help="largest upload (default 20 MB), then 413")
    batching.add_argument("--max-pixels", type=float, default=40.0, help="largest image in megapixels (default 40), then 413")
    parser.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    _ray_serve.add_arguments(parser)


def _settings(args: argparse.Namespace):
    from ..errors import InputError
    from ..serve.settings import API_KEY_ENV, ServeSettings

    key = args.api_key or os.environ.get(API_KEY_ENV) or None
    if args.host not in ("127.0.0.1", "localhost", "::1") and not key and not args.allow_open:
        raise InputError(f"--host {args.host} exposes the service to other machines; give --api-key "
                         f"(or ${API_KEY_ENV}), or --allow-open to serve without one")
    fields = {"workers": args.workers} if args.workers else {}
    return ServeSettings(max_batch=args.max_batch, max_delay_ms=args.max_delay_ms, max_queue=args.max_queue,
                         timeout_s=args.timeout, max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
                         max_pixels=int(args.max_pixels * 1_000_000), api_key=key, **fields)


def run(args: argparse.Namespace) -> int:
    from .._deps import require
    from ..serve import create_app
    from ._common import runtime_from_args

    settings = _settings(args)
    if args.ray is not None:  # the same app as a Ray Serve deployment
        return _ray_serve.run(args, settings)
    uvicorn = require("uvicorn", "u2deploy serve")
    require("fastapi", "u2deploy serve")
    runtime = runtime_from_args(args)  # load before binding: a bad model is a one-line error, not a dead server
    app = create_app(runtime, settings)
    print(f"u2deploy serve: {runtime.path.name} ({runtime.backend}) on http://{args.host}:{args.port}/  "
          f"(API docs /docs, metrics /metrics)", flush=True)
    # uvicorn handles SIGTERM/SIGINT: stop accepting, finish in-flight requests, run the app's shutdown
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level,
                            timeout_graceful_shutdown=settings.timeout_s, access_log=args.log_level == "debug",
                            # bounds open connections (each may hold an upload) beyond what the queue admits
                            limit_concurrency=settings.max_queue + 64)
    _exit_zero_after_graceful_stop()
    uvicorn.Server(config).run()
    runtime.close()
    return 0


def _exit_zero_after_graceful_stop() -> None:
    """A drained stop is a success: uvicorn re-raises SIGTERM/SIGINT after its shutdown under the handlers it
    found, so install ones that ignore that second delivery (the default would kill the process with -15)."""
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)

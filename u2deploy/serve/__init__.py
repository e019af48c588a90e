"""`u2deploy serve`: an HTTP service and web page over `Runtime`, with batching across requests.

`create_app(runtime_or_path, settings)` builds the FastAPI app; `Batcher` is the engine under it
(`await batcher.submit(image)` -> the map), usable on its own, e.g. inside a Ray Serve replica.
FastAPI, uvicorn and prometheus-client come with the `[serve]` extra and are imported on use.
"""

from __future__ import annotations

from .app import create_app
from .batcher import Batcher, QueueFullError, ShuttingDownError
from .settings import API_KEY_ENV, ServeSettings

__all__ = ["create_app", "Batcher", "QueueFullError", "ShuttingDownError", "ServeSettings", "API_KEY_ENV"]

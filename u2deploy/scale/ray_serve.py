"""`u2deploy serve MODEL --ray`: the `u2deploy serve` app as a Ray Serve deployment.

Each replica builds the very app `u2deploy serve` runs (`u2deploy.serve.create_app`: same
routes, same replies, same limits), with one change: the batching engine is `ServeBatcher`,
whose batches are gathered by Ray Serve's `@serve.batch` instead of the service's own loop.
Replicas scale with `num_replicas` or an autoscaling range; Ray Serve's proxy is the HTTP front.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import numpy as np

from .._deps import require
from ..errors import InputError
from ..serve.batcher import Batcher, ShuttingDownError
from ..serve.settings import ServeSettings

__all__ = ["ServeBatcher", "build_app", "serve_on_ray", "parse_autoscaling"]


class ServeBatcher(Batcher):
    """A `Batcher` whose cross-request batches come from `@serve.batch` (max size and wait from the settings)."""

    def __init__(self, runtime: Any, **options: Any) -> None:
        super().__init__(runtime, **options)
        serve = require("ray.serve", "serve --ray")
        self._batched = serve.batch(max_batch_size=self.max_batch, batch_wait_timeout_s=self.max_delay)(self._infer)
        self._started = False

    async def start(self) -> None:
        self._started = True  # Ray Serve runs the batching loop; nothing of our own to start

    async def run_admitted(self, image: Any) -> np.ndarray:
        if not self._started or self._closing:
            raise ShuttingDownError("the batcher is not running; retry on another replica")
        loop = asyncio.get_running_loop()
        tensor, context = await loop.run_in_executor(self.pool, self._timed, "preprocess", self._prepare, image)
        fused = await self._batched(tensor)
        return await loop.run_in_executor(self.pool, self._timed, "postprocess", self._finish, fused, context)

    async def _infer(self, tensors: list[np.ndarray]) -> list[np.ndarray]:
        """One `Runtime.infer` over the requests `@serve.batch` gathered (on the single inference thread)."""
        self._observe("batch", float(len(tensors)))
        loop = asyncio.get_running_loop()
        fused = await loop.run_in_executor(self._infer_pool, self._timed, "infer", self.runtime.infer,
                                           np.concatenate(tensors))  # fmt: skip
        return list(fused)


def _deployment_class() -> type:
    """The deployment class, defined after `require` so Ray is imported only when asked for."""
    serve = require("ray.serve", "serve --ray")

    @serve.ingress()
    class U2DeployService:
        """One replica: the `u2deploy serve` app over its own `Runtime`, batched by `@serve.batch`."""

        def __init__(self, model: str, settings: ServeSettings) -> None:
            self.model, self.settings = model, settings

        def __serve_build_asgi_app__(self) -> Any:
            from ..serve import create_app

            return create_app(self.model, self.settings, batcher_class=ServeBatcher)

    return U2DeployService


def parse_autoscaling(value: str | None) -> dict[str, Any] | None:
    """`MIN:MAX` (replicas) -> Ray Serve's autoscaling_config, or None."""
    if value is None:
        return None
    parts = value.split(":")
    if len(parts) != 2 or not all(p.isdigit() for p in parts) or not 0 <= int(parts[0]) <= int(parts[1]) or parts[1] == "0":
        raise InputError(f"--autoscale {value}: give MIN:MAX replicas, e.g. 1:4")
    return {"min_replicas": int(parts[0]), "max_replicas": int(parts[1]), "target_ongoing_requests": 2}


def build_app(model: str | os.PathLike, settings: ServeSettings | None = None, *, num_replicas: int = 1,
              autoscaling: dict[str, Any] | None = None, num_gpus: float = 0, num_cpus: float = 1,
              name: str = "u2deploy") -> Any:  # fmt: skip
    """A bound Ray Serve application of the service (`serve.run(build_app(...))`).

    Args:
        model: an artifact path every node can read, or a weights name.
        settings: the service's limits and batching (`max_batch`, `max_delay_ms` drive `@serve.batch`).
        num_replicas: fixed number of replicas (ignored with `autoscaling`).
        autoscaling: Ray Serve autoscaling_config, e.g. `parse_autoscaling("1:4")`.
        num_gpus: GPUs per replica.
        num_cpus: CPUs per replica.
        name: deployment name.
    """
    if num_replicas < 1:
        raise InputError(f"--replicas {num_replicas}: must be at least 1")
    settings = settings or ServeSettings()
    scale = {"autoscaling_config": autoscaling} if autoscaling else {"num_replicas": num_replicas}
    deployment = require("ray.serve", "serve --ray").deployment(
        _deployment_class(), name=name, ray_actor_options={"num_gpus": num_gpus, "num_cpus": num_cpus},
        max_ongoing_requests=settings.max_queue, **scale)  # fmt: skip
    return deployment.bind(str(model), settings)


def serve_on_ray(model: str | os.PathLike, settings: ServeSettings | None = None, *, address: str | None = None,
                 host: str = "127.0.0.1", port: int = 8000, blocking: bool = True, **deployment: Any) -> Any:
    """Start Ray Serve's HTTP proxy on host:port and deploy the service at `/`; returns its handle.

    With `blocking`, runs until interrupted, then shuts Serve down. `deployment` takes `build_app`'s
    keyword arguments.
    """
    from .ray_data import connect

    serve = require("ray.serve", "serve --ray")
    connect(address, "serve --ray")
    serve.start(http_options={"host": host, "port": port})
    handle = serve.run(build_app(model, settings, **deployment), name="u2deploy", route_prefix="/", blocking=False)
    if not blocking:
        return handle
    try:
        while True:
            import time

            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
    return handle

"""Cross-request batching: `await Batcher.submit(image)` -> the image's map, as `Runtime.predict` gives it.

The batcher is the whole inference engine of the service and knows nothing about HTTP, so any
front end (the FastAPI routes here, a Ray Serve deployment) can drive it. Pre- and
post-processing run in a worker pool; one inference thread runs batches of up to `max_batch`
images gathered within `max_delay_ms`, so it never waits on decoding or encoding.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import U2DeployError

__all__ = ["Batcher", "QueueFullError", "ShuttingDownError", "Observer"]

#: observer(stage, seconds) for stage timings; observer("batch", size) for batch sizes
Observer = Callable[[str, float], None]


class QueueFullError(U2DeployError):
    """More images are in flight than the queue admits; retry later."""


class ShuttingDownError(U2DeployError):
    """The service is draining and takes no new images."""


@dataclass
class _Item:
    tensor: np.ndarray
    future: asyncio.Future
    enqueued: float


class Batcher:
    """Groups concurrent single-image requests into batched `Runtime.infer` calls.

    Args:
        runtime: a loaded `u2deploy.Runtime`.
        max_batch: most images per inference; a static-batch artifact caps it at its batch.
        max_delay_ms: longest wait for a batch to fill once its first image is queued.
        max_queue: most images admitted at once; `submit` raises `QueueFullError` beyond it.
        pool: executor for pre/post-processing (created with `workers` threads when omitted).
        workers: threads of the pool the batcher creates.
        observer: called with (stage, seconds) and ("batch", size), e.g. for Prometheus.
    """

    def __init__(self, runtime: Any, *, max_batch: int = 8, max_delay_ms: float = 5.0, max_queue: int = 64,
                 pool: ThreadPoolExecutor | None = None, workers: int = 2, observer: Observer | None = None) -> None:
        static = runtime.batch_size
        self.runtime = runtime
        self.max_batch = min(max_batch, static) if static else max_batch
        self.max_delay = max_delay_ms / 1000.0
        self.max_queue = max_queue
        self._own_pool = pool is None
        self.pool = pool or ThreadPoolExecutor(workers, thread_name_prefix="u2deploy-prepost")
        self._infer_pool = ThreadPoolExecutor(1, thread_name_prefix="u2deploy-infer")
        self._observe = observer or (lambda stage, value: None)
        self._queue: asyncio.Queue[_Item | None] | None = None
        self._loop_task: asyncio.Task | None = None
        self._in_flight = 0
        self._closing = False

    @property
    def depth(self) -> int:
        """Images admitted and not yet answered."""
        return self._in_flight

    async def start(self) -> None:
        """Start the batching loop on the running event loop."""
        self._queue = asyncio.Queue()
        self._loop_task = asyncio.create_task(self._batch_loop(), name="u2deploy-batcher")

    def admit(self) -> None:
        """Reserve a place for one image or raise (`QueueFullError`, `ShuttingDownError`); pair with `release`."""
        if self._closing:
            raise ShuttingDownError("the service is shutting down; retry on another instance")
        if self._in_flight >= self.max_queue:
            raise QueueFullError(f"{self._in_flight} images in flight (--max-queue {self.max_queue}); retry later")
        self._in_flight += 1

    def release(self) -> None:
        self._in_flight -= 1

    async def submit(self, image: Any) -> np.ndarray:
        """The map of one image (anything `Runtime.predict` takes), batched with concurrent calls."""
        self.admit()
        try:
            return await self.run_admitted(image)
        finally:
            self.release()

    async def run_admitted(self, image: Any) -> np.ndarray:
        """`submit` for a caller that already holds a place from `admit` (it decoded the image first)."""
        if self._queue is None:
            raise ShuttingDownError("the batcher is not started")
        loop = asyncio.get_running_loop()
        tensor, context = await loop.run_in_executor(self.pool, self._timed, "preprocess", self._prepare, image)
        future = loop.create_future()
        self._queue.put_nowait(_Item(tensor, future, time.perf_counter()))
        fused = await future
        return await loop.run_in_executor(self.pool, self._timed, "postprocess", self._finish, fused, context)

    def _prepare(self, image: Any) -> tuple[np.ndarray, Any]:
        return self.runtime.prepare(image)

    def _finish(self, fused: np.ndarray, context: Any) -> np.ndarray:
        return self.runtime.finish(fused, context)

    def _timed(self, stage: str, function: Callable, *args: Any) -> Any:
        start = time.perf_counter()
        try:
            return function(*args)
        finally:
            self._observe(stage, time.perf_counter() - start)

    async def _batch_loop(self) -> None:
        assert self._queue is not None
        while True:
            first = await self._queue.get()
            if first is None:
                return
            items = await self._gather(first)
            if items:
                await self._run_batch(items)

    async def _gather(self, first: _Item) -> list[_Item]:
        """`first` plus whatever arrives within max_delay, up to max_batch; requests already abandoned are dropped."""
        items, deadline = [first], time.perf_counter() + self.max_delay
        while len(items) < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            if item is None:  # stop() asked: finish this batch, then let the loop end
                self._queue.put_nowait(None)
                break
            items.append(item)
        return [item for item in items if not item.future.done()]

    async def _run_batch(self, items: list[_Item]) -> None:
        now = time.perf_counter()
        for item in items:
            self._observe("queue", now - item.enqueued)
        self._observe("batch", float(len(items)))
        batch = np.concatenate([item.tensor for item in items])
        loop = asyncio.get_running_loop()
        try:
            fused = await loop.run_in_executor(self._infer_pool, self._timed, "infer", self.runtime.infer, batch)
        except Exception as exc:  # every waiting request gets the failure, and the loop keeps serving
            for item in items:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        for index, item in enumerate(items):
            if not item.future.done():
                item.future.set_result(fused[index])

    async def stop(self, timeout: float = 30.0) -> None:
        """Refuse new images, let queued ones finish (up to `timeout` seconds), then stop the threads."""
        self._closing = True
        deadline = time.perf_counter() + timeout
        while self._in_flight and time.perf_counter() < deadline:  # admitted images may still be decoding
            await asyncio.sleep(0.01)
        if self._queue is not None and self._loop_task is not None:
            self._queue.put_nowait(None)
            try:
                await asyncio.wait_for(self._loop_task, timeout)
            except asyncio.TimeoutError:
                self._loop_task.cancel()
        self._infer_pool.shutdown(wait=True)
        if self._own_pool:
            self.pool.shutdown(wait=True)

"""The batching engine on its own: concurrent images share inferences, replies equal `Runtime.predict`, stop drains."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from u2deploy.serve import Batcher, QueueFullError, ShuttingDownError


def _run(coroutine):
    return asyncio.run(coroutine)


def test_concurrent_images_are_batched_and_equal_predict(runtime, photos):
    images = list(photos.values()) * 2
    sizes: list[float] = []

    async def scenario():
        batcher = Batcher(runtime, max_batch=4, max_delay_ms=200, max_queue=16, workers=2,
                          observer=lambda stage, value: sizes.append(value) if stage == "batch" else None)
        await batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit(image) for image in images))
        finally:
            await batcher.stop()

    maps = _run(scenario())
    assert sum(sizes) == len(images) and max(sizes) > 1 and max(sizes) <= 4
    for image, saliency in zip(images, maps, strict=True):
        assert np.array_equal(saliency, runtime.predict(image))


def test_queue_bound_and_shutdown_refusal(runtime, photos):
    async def scenario():
        batcher = Batcher(runtime, max_batch=2, max_queue=1)
        await batcher.start()
        batcher.admit()
        with pytest.raises(QueueFullError, match="max-queue 1"):
            await batcher.submit(photos["coffee"])
        batcher.release()
        assert batcher.depth == 0
        await batcher.stop()
        with pytest.raises(ShuttingDownError):
            await batcher.submit(photos["coffee"])

    _run(scenario())


def test_stop_finishes_images_in_flight(runtime, photos):
    async def scenario():
        batcher = Batcher(runtime, max_batch=2, max_delay_ms=50)
        await batcher.start()
        pending = [asyncio.ensure_future(batcher.submit(image)) for image in photos.values()]
        await asyncio.sleep(0)  # admitted, still decoding/pre-processing
        await batcher.stop()
        return await asyncio.gather(*pending)

    maps = _run(scenario())
    assert len(maps) == len(photos) and all(m.shape == p.shape[:2] for m, p in zip(maps, photos.values(), strict=True))


def test_static_batch_artifact_caps_the_batch(tiny_export, photos):
    from u2deploy import Runtime

    with Runtime(tiny_export("onnx", batch=2, verify=False).path) as static:
        batcher = Batcher(static, max_batch=8)
        assert static.batch_size == 2 and batcher.max_batch == 2

        async def scenario():
            await batcher.start()
            try:
                return await asyncio.gather(*(batcher.submit(image) for image in photos.values()))
            finally:
                await batcher.stop()

        for image, saliency in zip(photos.values(), _run(scenario()), strict=True):
            assert np.array_equal(saliency, static.predict(image))

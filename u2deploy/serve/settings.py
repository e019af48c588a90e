"""Settings of `u2deploy serve`: one dataclass shared by the CLI, the app factory and tests."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..errors import InputError

__all__ = ["ServeSettings", "API_KEY_ENV"]

#: environment variable read when no --api-key is given
API_KEY_ENV = "U2DEPLOY_API_KEY"


def _default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class ServeSettings:
    """Limits and batching of the HTTP service.

    Attributes:
        max_batch: most images run as one inference (capped by a static-batch artifact's batch).
        max_delay_ms: how long the first image of a batch waits for company.
        max_queue: images admitted at once (decoding, queued or running); beyond it 503.
        timeout_s: per-request limit from upload to reply; beyond it 504.
        workers: threads for decoding, pre/post-processing and encoding.
        max_upload_bytes: largest accepted upload (413 beyond it).
        max_pixels: largest accepted decoded image, width x height (413 beyond it).
        api_key: when set, every /v1 and /api request needs it (X-API-Key or Bearer).
        warmup: run one batch at start-up before /readyz says ready.
        runtime_options: passed to `Runtime` when the app loads the model from a path.
    """

    max_batch: int = 8
    max_delay_ms: float = 5.0
    max_queue: int = 64
    timeout_s: float = 30.0
    workers: int = field(default_factory=_default_workers)
    max_upload_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    api_key: str | None = None
    warmup: bool = True
    runtime_options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        checks = {"max_batch": self.max_batch >= 1, "max_queue": self.max_queue >= 1, "workers": self.workers >= 1,
                  "max_delay_ms": self.max_delay_ms >= 0, "timeout_s": self.timeout_s > 0,
                  "max_upload_bytes": self.max_upload_bytes > 0, "max_pixels": self.max_pixels > 0}
        for name, ok in checks.items():
            if not ok:
                raise InputError(f"serve setting {name}={getattr(self, name)!r} is out of range; use a positive value")

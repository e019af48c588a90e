"""Beyond one machine: bulk inference on Ray Data and Triton's Python-backend pre/post models.

Nothing here imports Ray or Triton at import time; `ray_predict` imports Ray when called.
"""

from __future__ import annotations

__all__ = ["ray_predict"]


def ray_predict(*args, **kwargs):
    """See `u2deploy.scale.ray_data.ray_predict`."""
    from .ray_data import ray_predict as run

    return run(*args, **kwargs)

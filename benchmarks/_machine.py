"""Machine and library description recorded beside every benchmark result.

Kept for the scripts in this folder; the implementation lives in `u2deploy.bench.machine` so that
`u2deploy bench` records the same fields.
"""

from __future__ import annotations

from u2deploy.bench.machine import machine_info

__all__ = ["machine_info"]

"""The backend settings an artifact was verified with, and how a backend applies them.

An export's parity gate runs the artifact with backend options that change its numbers
(OpenVINO's inference precision and execution mode, ONNX Runtime's graph optimisation level).
The export records them under `spec.extra["runtime"]` (so they travel inside the model, in ONNX
`metadata_props` / OpenVINO `rt_info`, and in the sidecar manifest), and a backend applies them
unless the caller passes the option explicitly. Without a record (older or third-party files) a
backend uses `SAFE_DEFAULTS`: what every u2deploy gate has always run with. Without this, OpenVINO
computes in bf16 by default on CPUs with AVX512_BF16/AMX, which is not what the gate verified.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RUNTIME_KEY", "NUMERIC_OPTIONS", "SAFE_DEFAULTS", "Settings", "runtime_record", "resolve_settings"]

#: key of the record in `ModelSpec.extra`
RUNTIME_KEY = "runtime"
#: backend -> the options that change an artifact's numbers (what is recorded and applied)
NUMERIC_OPTIONS: dict[str, tuple[str, ...]] = {
    "openvino": ("inference_precision", "execution_mode"),
    "onnxruntime": ("graph_optimization",),
}
#: what a backend applies to an artifact that records nothing: the settings every gate ran with
SAFE_DEFAULTS: dict[str, dict[str, str]] = {
    "openvino": {"inference_precision": "f32", "execution_mode": "accuracy"},
    "onnxruntime": {"graph_optimization": "all"},
}
#: float precision names -> bits of mantissa, to tell a lower precision from a higher one
_PRECISION_RANK = {"f32": 3, "fp32": 3, "f16": 1, "fp16": 1, "bf16": 0}


@dataclass
class Settings:
    """The numeric settings a backend runs with, where they came from, and what the user changed."""

    values: dict[str, str]
    source: str  # "artifact" (recorded at export), "default" (no record), "user" (explicit override)
    verified: dict[str, str] = field(default_factory=dict)
    overridden: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"applied": dict(self.values), "source": self.source, "verified": dict(self.verified),
                "overridden": dict(self.overridden)}  # fmt: skip


def runtime_record(backend: str, options: dict[str, Any]) -> dict[str, Any]:
    """What an export records: the verifying backend and the numeric options of its gate run."""
    numeric = NUMERIC_OPTIONS.get(backend, ())
    recorded = {**SAFE_DEFAULTS.get(backend, {}), **{k: str(v) for k, v in options.items() if k in numeric}}
    return {"backend": backend, "options": recorded}


def _recorded(backend: str, extra: dict[str, Any]) -> dict[str, str] | None:
    record = extra.get(RUNTIME_KEY)
    if not isinstance(record, dict) or record.get("backend") != backend:
        return None
    options = record.get("options")
    return {k: str(v) for k, v in options.items()} if isinstance(options, dict) else None


def resolve_settings(backend: str, extra: dict[str, Any], user: dict[str, Any], artifact: str) -> Settings:
    """The settings to run with: the user's explicit options over the artifact's record over the safe default.

    Prints one line on stderr when the user lowers the precision below the verified one (a backend
    resolves once per load, so once per `Runtime`).
    """
    numeric = NUMERIC_OPTIONS.get(backend, ())
    recorded = _recorded(backend, extra)
    verified = recorded if recorded is not None else dict(SAFE_DEFAULTS.get(backend, {}))
    given = {k: str(user[k]) for k in numeric if user.get(k) is not None}
    overridden = {k: v for k, v in given.items() if verified.get(k) != v}
    source = "user" if overridden else "artifact" if recorded is not None else "default"
    settings = Settings({**verified, **given}, source, verified, overridden)
    _say_if_lowered(settings, artifact)
    return settings


def _say_if_lowered(settings: Settings, artifact: str) -> None:
    asked, verified = settings.overridden.get("inference_precision"), settings.verified.get("inference_precision")
    if asked and verified and _PRECISION_RANK.get(asked, 3) < _PRECISION_RANK.get(verified, 3):
        print(f"u2deploy: {artifact} was verified at {verified}; running at {asked} as asked (inference_precision="
              f"{asked}), not parity-checked", file=sys.stderr, flush=True)

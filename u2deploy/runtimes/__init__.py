"""Inference backends behind one contract, and the `Runtime` facade that picks between them."""

from __future__ import annotations

from .registry import BACKENDS, SUFFIXES, available_backends, backend_class, backend_for_path

__all__ = ["BACKENDS", "SUFFIXES", "available_backends", "backend_class", "backend_for_path", "Runtime"]


def __getattr__(name: str):
    if name == "Runtime":
        from .runtime import Runtime

        return Runtime
    raise AttributeError(name)

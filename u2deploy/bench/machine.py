"""What machine a benchmark ran on: CPU, cores, instruction sets, load and library versions.

Recorded beside every result (`u2deploy bench` and the scripts in `benchmarks/`), because a
number without its machine and its load is not comparable with anything.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

__all__ = ["machine_info", "cpu_flags", "has_int8_dot", "load_average", "PACKAGES"]

#: distributions whose versions are recorded
PACKAGES = ("u2deploy", "torch", "onnx", "onnxruntime", "openvino", "nncf", "tensorrt", "numpy",
            "opencv-python-headless", "pillow", "scikit-image", "rembg")  # fmt: skip

#: instruction sets that matter for convolution speed (py-cpuinfo / /proc/cpuinfo names)
_FLAGS = {"avx2", "fma", "avx512f", "avx512_vnni", "avx512vnni", "avx_vnni", "avxvnni", "amx_int8", "amx_bf16",
          "amx_tile", "avx512_bf16", "neon", "asimddp"}  # fmt: skip
#: flags that give 8-bit integer dot products (VNNI, AMX, Arm dot product)
_INT8_DOT = {"avx512_vnni", "avx512vnni", "avx_vnni", "avxvnni", "amx_int8", "asimddp"}


def cpu_flags() -> list[str]:
    """The relevant instruction-set flags of this CPU (py-cpuinfo, else /proc/cpuinfo)."""
    flags: set[str] = set()
    try:
        import cpuinfo

        flags = set(cpuinfo.get_cpu_info().get("flags", []))
    except ImportError:
        try:
            with open("/proc/cpuinfo") as handle:
                for line in handle:
                    if line.startswith(("flags", "Features")):
                        flags.update(line.split(":", 1)[1].split())
                        break
        except OSError:
            pass
    return sorted(flags & _FLAGS)


def has_int8_dot(flags: list[str] | None = None) -> bool:
    """True when the CPU has 8-bit dot-product instructions, the only case an INT8 peak means anything."""
    return bool(set(cpu_flags() if flags is None else flags) & _INT8_DOT)


def load_average() -> list[float] | None:
    """1, 5 and 15-minute load averages (None where the OS has none): how busy the machine was."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _cpu_name() -> str:
    try:
        import cpuinfo

        return str(cpuinfo.get_cpu_info().get("brand_raw") or platform.processor())
    except ImportError:
        return platform.processor() or platform.machine()


def _packages() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def machine_info() -> dict[str, Any]:
    """CPU model, cores, instruction sets, memory, load average and package versions."""
    info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                            "cpu": _cpu_name(), "cores": os.cpu_count(), "cpu_flags": cpu_flags(),
                            "load_average": load_average()}  # fmt: skip
    try:
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    info["packages"] = _packages()
    return info

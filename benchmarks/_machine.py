"""Machine and library description recorded beside every benchmark result."""

from __future__ import annotations

import os
import platform
from importlib import metadata


def machine_info() -> dict[str, object]:
    info: dict[str, object] = {"python": platform.python_version(), "platform": platform.platform(),
                               "cores": os.cpu_count()}  # fmt: skip
    try:
        import cpuinfo

        cpu = cpuinfo.get_cpu_info()
        info["cpu"] = cpu.get("brand_raw")
        flags = set(cpu.get("flags", []))
        info["cpu_flags"] = sorted(flags & {"avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "amx_bf16"})
    except ImportError:
        info["cpu"] = platform.processor()
    packages = {}
    for name in ("u2deploy", "torch", "onnxruntime", "openvino", "nncf", "numpy", "opencv-python-headless", "pillow"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    info["packages"] = packages
    return info

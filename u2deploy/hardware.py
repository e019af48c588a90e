"""What this machine is, read without TensorRT, PyTorch or cuda-python: NVIDIA GPUs, driver, Jetson.

A TensorRT engine only runs where it was built (same TensorRT version, same GPU architecture), so
the exporter records these facts in the engine's manifest, the TensorRT backend compares them with
the host before loading, and `u2deploy doctor` prints them. GPUs are queried through the CUDA
driver library (`libcuda`, present wherever an NVIDIA driver is, desktop or Jetson) with ctypes:
the driver API's device calls have had the same C signatures since CUDA 3.2.

Nothing here raises: what cannot be found is None, with the reason where it helps.
"""

from __future__ import annotations

import ctypes
import platform
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["GpuInfo", "cuda_devices", "cuda_driver_version", "nvidia_driver", "parse_tegra_release", "jetson_info",
           "dla_expected", "host_record", "TEGRA_RELEASE", "DEVICE_TREE_MODEL", "NVIDIA_DRIVER_VERSION"]

TEGRA_RELEASE = Path("/etc/nv_tegra_release")
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")
NVIDIA_DRIVER_VERSION = Path("/proc/driver/nvidia/version")

#: L4T major release -> JetPack series (JetPack's own version is not written on the device)
_JETPACK_BY_L4T = {32: "4.x", 34: "5.0 DP", 35: "5.x", 36: "6.x", 38: "7.x"}
# CUdevice_attribute values of the CUDA driver API
_ATTR_CC_MAJOR, _ATTR_CC_MINOR, _ATTR_INTEGRATED = 75, 76, 18


@dataclass(frozen=True)
class GpuInfo:
    """One CUDA device as the driver reports it; `integrated` is True on Jetson (shared memory)."""

    index: int
    name: str
    compute_capability: str
    memory_gb: float | None = None
    integrated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _libcuda() -> Any | None:
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll", "libcuda.dylib"):
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def _attribute(lib: Any, attribute: int, device: ctypes.c_int) -> int:
    value = ctypes.c_int(0)
    lib.cuDeviceGetAttribute(ctypes.byref(value), attribute, device)
    return value.value


def _device(lib: Any, index: int) -> GpuInfo:
    device = ctypes.c_int(0)
    lib.cuDeviceGet(ctypes.byref(device), index)
    name = ctypes.create_string_buffer(256)
    lib.cuDeviceGetName(name, 256, device)
    memory = ctypes.c_size_t(0)
    lib.cuDeviceTotalMem_v2(ctypes.byref(memory), device)
    major, minor = _attribute(lib, _ATTR_CC_MAJOR, device), _attribute(lib, _ATTR_CC_MINOR, device)
    return GpuInfo(index, name.value.decode(errors="replace"), f"{major}.{minor}",
                   round(memory.value / 2**30, 1) if memory.value else None,
                   bool(_attribute(lib, _ATTR_INTEGRATED, device)))  # fmt: skip


def cuda_devices() -> tuple[list[GpuInfo], str | None]:
    """(CUDA devices, why there are none). Calls the driver directly, so it works without any CUDA package."""
    lib = _libcuda()
    if lib is None:
        return [], "no NVIDIA driver (libcuda not found)"
    try:
        status = lib.cuInit(0)
        if status != 0:
            return [], (f"the NVIDIA driver did not initialise (cuInit error {status}; no GPU, or a driver/kernel "
                        "mismatch)")
        count = ctypes.c_int(0)
        lib.cuDeviceGetCount(ctypes.byref(count))
        devices = [_device(lib, i) for i in range(count.value)]
    except (OSError, AttributeError, ValueError) as exc:  # a driver too old for a symbol, or a broken install
        return [], f"querying the NVIDIA driver failed ({exc})"
    return devices, None if devices else "the NVIDIA driver reports no CUDA device"


def cuda_driver_version() -> str | None:
    """The CUDA version the driver supports, e.g. '12.4'."""
    lib = _libcuda()
    version = ctypes.c_int(0)
    try:
        if lib is None or lib.cuDriverGetVersion(ctypes.byref(version)) != 0:
            return None
    except (OSError, AttributeError):
        return None
    return f"{version.value // 1000}.{version.value % 1000 // 10}"


def _read(path: Path) -> str | None:
    try:
        return path.read_bytes().decode(errors="replace").replace("\x00", "").strip()
    except OSError:
        return None


def nvidia_driver(path: Path = NVIDIA_DRIVER_VERSION) -> str | None:
    """The desktop kernel driver version ('550.54.14'); Jetson's driver comes with L4T instead."""
    text = _read(path)
    match = re.search(r"Kernel Module.*?\s(\d+\.\d+(?:\.\d+)?)\s", text or "")
    return match.group(1) if match else None


def parse_tegra_release(text: str) -> dict[str, str | None] | None:
    """`# R36 (release), REVISION: 3.0, ...` -> {'l4t': '36.3.0', 'jetpack': '6.x'}."""
    match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    if not match:
        return None
    major = int(match.group(1))
    return {"l4t": f"{major}.{match.group(2)}", "jetpack": _JETPACK_BY_L4T.get(major)}


def dla_expected(model: str) -> bool | None:
    """Whether this Jetson model has DLA cores (DEPLOY_APIS section 6); None when the model is unknown.

    AGX Orin, Orin NX and Xavier have DLA; Orin Nano (and the older Nano), TX2 and Thor have none.
    """
    name = model.lower()
    if any(word in name for word in ("nano", "thor", "tx2", "tx1")):
        return False
    if any(word in name for word in ("agx orin", "orin nx", "xavier")):
        return True
    return None


def jetson_info(model_path: Path = DEVICE_TREE_MODEL, release_path: Path = TEGRA_RELEASE) -> dict[str, Any] | None:
    """{'model', 'l4t', 'jetpack', 'dla'} on a Jetson (from the device tree and nv_tegra_release), else None."""
    release = _read(release_path)
    model = _read(model_path)
    if release is None and not (model and "jetson" in model.lower()):
        return None
    parsed = parse_tegra_release(release or "") or {"l4t": None, "jetpack": None}
    return {"model": model, **parsed, "dla": dla_expected(model) if model else None}


def host_record(gpu_index: int = 0) -> dict[str, Any]:
    """Where an engine is built or run: GPU, drivers, Jetson model and JetPack, OS and CPU architecture."""
    devices, why = cuda_devices()
    gpu = next((d for d in devices if d.index == gpu_index), None)
    return {
        "gpu": gpu.name if gpu else None,
        "compute_capability": gpu.compute_capability if gpu else None,
        "gpu_memory_gb": gpu.memory_gb if gpu else None,
        "no_gpu_reason": None if gpu else (why or f"no CUDA device {gpu_index}"),
        "nvidia_driver": nvidia_driver(),
        "cuda_driver": cuda_driver_version(),
        "jetson": jetson_info(),
        "os": platform.system(),
        "machine": platform.machine(),
    }

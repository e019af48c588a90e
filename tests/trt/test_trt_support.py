"""Feature detection, engine-vs-host compatibility, rebuild commands, and the host facts behind them."""

from __future__ import annotations

import ctypes
from types import SimpleNamespace

import pytest

from u2deploy import hardware
from u2deploy.errors import MissingDependencyError, UnsupportedOptionError
from u2deploy.runtimes.trt_support import (
    cannot_run_message,
    compatibility_problems,
    detect_features,
    parse_device,
    rebuild_command,
    require_supported,
    same_version,
)


def fake_api(version: str, fp16: bool = True, strongly: bool = True, calibrator: bool = True) -> SimpleNamespace:
    flags = SimpleNamespace(**({"FP16": 1, "INT8": 2} if fp16 else {}), TF32=3)
    module = SimpleNamespace(__version__=version, BuilderFlag=flags,
                             NetworkDefinitionCreationFlag=SimpleNamespace(**({"STRONGLY_TYPED": 5} if strongly
                                                                               else {})))
    if calibrator:
        module.IInt8EntropyCalibrator2 = object
    return module


def test_features_are_detected_from_the_api_not_the_version():
    ten = detect_features(fake_api("10.3.0"))
    assert (ten.strongly_typed_only, ten.strongly_typed_flag, ten.legacy_int8, ten.major) == (False, True, True, 10)
    eleven = detect_features(fake_api("11.4.1", fp16=False, calibrator=False))
    assert eleven.strongly_typed_only and not eleven.legacy_int8
    require_supported(ten)
    with pytest.raises(MissingDependencyError, match=r"TensorRT 8.6.1 is too old: .* 10.x or 11.x; .*JetPack 6"):
        require_supported(detect_features(fake_api("8.6.1", strongly=False)))


def test_versions_and_devices():
    assert same_version("10.3.0.30", "10.3.0") and not same_version("10.3.0", "10.7.0")
    assert parse_device(None) == (0, None) and parse_device("cuda:1") == (1, None) and parse_device("dla:1") == (0, 1)
    with pytest.raises(UnsupportedOptionError, match="tensorrt device 'cpu' is not known; use cuda, cuda:N or dla:N"):
        parse_device("cpu")


ORIN = {"gpu": "Orin", "compute_capability": "8.7", "jetson": {"model": "NVIDIA Jetson AGX Orin", "l4t": "36.3.0",
                                                                "jetpack": "6.x"}}
RTX = {"gpu": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9", "jetson": None}


def test_an_engine_from_another_machine_lists_every_difference():
    record = {"version": "10.3.0", "built_on": ORIN, "dla_core": 1}
    problems, notes = compatibility_problems(record, {"tensorrt": "10.7.0", "host": RTX, "dla_cores": 0})
    assert problems == [
        "it was built with TensorRT 10.3.0 on JetPack 6.x (L4T R36.3.0), this machine has TensorRT 10.7.0",
        "it was built for compute capability 8.7 (Orin), this GPU is compute capability 8.9 (NVIDIA GeForce RTX 4090)",
        "it runs on DLA core 1, this machine has 0 DLA core(s)",
    ] and notes == []


def test_same_architecture_other_gpu_is_a_note_and_no_gpu_is_a_problem():
    record = {"version": "10.3.0", "built_on": {"gpu": "NVIDIA GeForce RTX 3080", "compute_capability": "8.6"}}
    here = {"gpu": "NVIDIA RTX A4000", "compute_capability": "8.6"}
    problems, notes = compatibility_problems(record, {"tensorrt": "10.3.0", "host": here})
    assert problems == [] and "tuned on NVIDIA GeForce RTX 3080; it runs on NVIDIA RTX A4000" in notes[0]
    none = {"gpu": None, "compute_capability": None, "no_gpu_reason": "no NVIDIA driver (libcuda not found)"}
    problems, _ = compatibility_problems(record, {"tensorrt": "10.3.0", "host": none})
    assert problems == ["no NVIDIA GPU was found here (no NVIDIA driver (libcuda not found))"]


def test_the_rebuild_command_comes_from_the_manifest():
    manifest = {"created": {"command": "u2deploy export u2net --fmt trt --fp16"}}
    assert rebuild_command(manifest, "x.engine") == "u2deploy export u2net --fmt trt --fp16"
    manifest = {"source": {"path": "/w/u2net.pth"}, "spec": {"input_size": [320, 288]},
                "created": {"command": None, "options": {"precision": "int8", "profile": [1, 4, 8],
                                                         "calibration": {"source": "photos/"},
                                                         "tensorrt": {"workspace_gb": 2, "dla_core": None}}}}
    assert rebuild_command(manifest, "/x/m.engine") == ("u2deploy export /w/u2net.pth --fmt trt --int8 --calib photos/ "
                                                        "--dynamic 1:4:8 --workspace 2 --size 320x288 -o m.engine")
    assert rebuild_command(None, "m.engine").startswith("u2deploy export MODEL --fmt trt")
    line = cannot_run_message("m.engine", ["a", "b"], None)
    assert "\n" not in line
    assert line.startswith("m.engine: this engine cannot run here: a; b. A TensorRT plan runs only")


# -- host facts -------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic, EABI: aarch64, DATE: Mon May  6 2024",
     {"l4t": "36.3.0", "jetpack": "6.x"}),
    ("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, DATE: Tue Aug  1 2023",
     {"l4t": "35.4.1", "jetpack": "5.x"}),
    ("# R99 (release), REVISION: 1.0, GCID: 1", {"l4t": "99.1.0", "jetpack": None}),
    ("not a release file", None),
])  # fmt: skip
def test_tegra_release(text, expected):
    assert hardware.parse_tegra_release(text) == expected


def test_jetson_info_from_the_device_tree_and_release_file(tmp_path):
    model, release = tmp_path / "model", tmp_path / "nv_tegra_release"
    model.write_bytes(b"NVIDIA Jetson AGX Orin Developer Kit\x00")
    release.write_text("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64\n")
    assert hardware.jetson_info(model, release) == {"model": "NVIDIA Jetson AGX Orin Developer Kit", "l4t": "36.4.3",
                                                    "jetpack": "6.x", "dla": True}  # fmt: skip
    assert hardware.jetson_info(tmp_path / "none", tmp_path / "none") is None
    assert [hardware.dla_expected(m) for m in ("Jetson Orin Nano", "Jetson AGX Thor", "Jetson Xavier NX", "Foo")] == [
        False, False, True, None]


def test_nvidia_driver_version(tmp_path):
    path = tmp_path / "version"
    path.write_text("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.86.15  Release Build  (dvs-builder)\n"
                    "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n")
    assert hardware.nvidia_driver(path) == "570.86.15"
    path.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 01:44:30 UTC 2024\n")
    assert hardware.nvidia_driver(path) == "550.54.14"
    assert hardware.nvidia_driver(tmp_path / "missing") is None


def test_no_driver_is_a_reason_not_an_error(monkeypatch):
    def no_library(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", no_library)
    assert hardware.cuda_devices() == ([], "no NVIDIA driver (libcuda not found)")
    record = hardware.host_record()
    assert record["gpu"] is None and record["no_gpu_reason"] == "no NVIDIA driver (libcuda not found)"


def test_the_driver_query_reads_names_and_compute_capabilities(monkeypatch):
    class Driver:  # the CUDA driver API's calling convention: out-parameters by reference, 0 = success
        def cuInit(self, flags):
            return 0

        def cuDeviceGetCount(self, count):
            count._obj.value = 1
            return 0

        def cuDeviceGet(self, device, index):
            device._obj.value = index
            return 0

        def cuDeviceGetName(self, buffer, length, device):
            buffer.value = b"Orin"
            return 0

        def cuDeviceTotalMem_v2(self, size, device):
            size._obj.value = 64 * 2**30
            return 0

        def cuDeviceGetAttribute(self, value, attribute, device):
            value._obj.value = {75: 8, 76: 7, 18: 1}[attribute]
            return 0

    monkeypatch.setattr(ctypes, "CDLL", lambda name: Driver())
    assert hardware.cuda_devices() == ([hardware.GpuInfo(0, "Orin", "8.7", 64.0, True)], None)


def test_batches_beyond_the_profile_run_in_chunks():
    from u2deploy.runtimes.trt_support import batch_chunks

    assert batch_chunks(3, 1, 4) == [(0, 3, 0)]
    assert batch_chunks(9, 2, 4) == [(0, 4, 0), (4, 8, 0), (8, 9, 1)]  # the last is padded to the profile's 2
    assert batch_chunks(1, 2, 8) == [(0, 1, 1)]

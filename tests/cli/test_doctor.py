"""`u2deploy doctor`: a report that always exits 0, survives broken packages and names each fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from u2deploy import doctor, hardware


def u2deploy(*args: str, env: dict | None = None) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "u2deploy", *args], capture_output=True, text=True, timeout=120,
                            env={**os.environ, **(env or {})})  # fmt: skip
    return result, time.perf_counter() - start


def test_doctor_reports_this_machine_quickly():
    result, seconds = u2deploy("doctor")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for label in ("python", "u2deploy", "torch", "onnxruntime", "openvino", "tensorrt", "cuda-python", "opencv",
                  "GPU", "Jetson", "cache", "can run"):
        assert f"\n  {label}" in text, label
    assert seconds < 20, f"doctor took {seconds:.1f} s"  # about 2-5 s; the probes run in parallel


def test_doctor_json_has_every_section():
    result, _ = u2deploy("doctor", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) == {"python", "u2deploy", "libraries", "gpu", "jetson", "cache", "can_run", "fixes", "seconds"}
    assert set(report["libraries"]) == {"torch", "onnxruntime", "openvino", "tensorrt", "cuda-python", "opencv"}
    assert all(info["status"] in ("ok", "missing", "broken", "crashed", "timeout")
               for info in report["libraries"].values())  # fmt: skip
    assert report["u2deploy"]["version"] and isinstance(report["fixes"], list)


def test_a_broken_or_crashing_package_is_a_line_not_a_crash(tmp_path):
    (tmp_path / "onnxruntime").mkdir()
    (tmp_path / "onnxruntime" / "__init__.py").write_text(
        "raise OSError('libonnxruntime.so.1: cannot open shared object file: No such file or directory')\n")
    (tmp_path / "cv2").mkdir()
    (tmp_path / "cv2" / "__init__.py").write_text("import os\nos.abort()  # as a bad native library would\n")
    result, _ = u2deploy("doctor", "--json", env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    ort, cv2 = report["libraries"]["onnxruntime"], report["libraries"]["opencv"]
    assert ort == {"status": "broken", "error": "OSError: libonnxruntime.so.1: cannot open shared object file: No "
                                                "such file or directory"}
    assert cv2["status"] == "crashed"
    assert any(fix.startswith("onnxruntime is installed but fails to import (broken: OSError") and "reinstall" in fix
               for fix in report["fixes"])  # fmt: skip
    text, _ = u2deploy("doctor", env={"PYTHONPATH": str(tmp_path)})
    assert "onnxruntime  BROKEN: OSError" in text.stdout and "opencv       CRASHED:" in text.stdout


def test_a_hanging_import_times_out():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    start = time.monotonic()
    assert doctor._finish(process, time.monotonic() + 0.5, 0.5)["status"] == "timeout"
    assert time.monotonic() - start < 10


def fake_probes(**overrides) -> dict:
    probes = {name: {"status": "missing"} for name in doctor.PROBES}
    probes["gpu"] = {"status": "ok", "devices": [], "reason": "no NVIDIA driver (libcuda not found)"}
    probes.update(overrides)
    return probes


def test_a_jetson_with_pip_opencv_and_no_tensorrt_gets_its_fixes(monkeypatch):
    orin = hardware.GpuInfo(0, "Orin", "8.7", 7.4, True).to_dict()
    probes = fake_probes(gpu={"status": "ok", "devices": [orin], "reason": None, "cuda_driver": "12.2"},
                         torch={"status": "ok", "version": "2.4.0", "cuda_build": None, "cuda": False, "devices": []},
                         opencv={"status": "ok", "version": "4.10.0", "gstreamer": False})
    monkeypatch.setattr(doctor, "_probe_all", lambda timeout: probes)
    nano = {"model": "NVIDIA Jetson Orin Nano Developer Kit", "l4t": "36.3.0", "jetpack": "6.x", "dla": False}
    monkeypatch.setattr(hardware, "jetson_info", lambda: nano)
    report = doctor.collect()
    fixes = "\n".join(report["fixes"])
    assert "TensorRT is not installed" in fixes and "sudo apt install python3-libnvinfer" in fixes
    assert "PyTorch is a CPU build" in fixes and "this OpenCV has no GStreamer" in fixes
    assert "NVIDIA Jetson Orin Nano Developer Kit has no DLA" in fixes
    text = doctor.render(report)
    assert "Jetson       NVIDIA Jetson Orin Nano Developer Kit, L4T R36.3.0 (JetPack 6.x), DLA no" in text
    assert "GPU          Orin (sm 8.7, 7.4 GB); CUDA 12.2" in text and "opencv       4.10.0: GStreamer NO" in text


def test_a_working_tensorrt_machine_lists_what_it_can_run(monkeypatch):
    gpu = hardware.GpuInfo(0, "NVIDIA GeForce RTX 4090", "8.9", 24.0).to_dict()
    probes = fake_probes(gpu={"status": "ok", "devices": [gpu], "reason": None},
                         tensorrt={"status": "ok", "version": "11.4.1", "strongly_typed_only": True, "dla_cores": 0},
                         **{"cuda-python": {"status": "ok", "version": "13.0.0"}},
                         onnxruntime={"status": "ok", "version": "1.27.0",
                                      "providers": ["CUDAExecutionProvider", "CPUExecutionProvider"]})
    monkeypatch.setattr(doctor, "_probe_all", lambda timeout: probes)
    monkeypatch.setattr(hardware, "jetson_info", lambda: None)
    report = doctor.collect()
    assert report["can_run"] == ["onnxruntime on CUDA, CPU", "tensorrt on cuda"]
    assert not any("TensorRT" in fix for fix in report["fixes"])
    assert "tensorrt     11.4.1: strongly typed only (11.x API), 0 DLA core(s)" in doctor.render(report)


@pytest.mark.parametrize("info, expected", [
    ("  Video I/O:\n    FFMPEG:                      YES\n    GStreamer:                   YES (1.20.3)\n", True),
    ("  Video I/O:\n    GStreamer:                   NO\n", False),
    ("  Video I/O:\n    FFMPEG:                      YES\n", None),
])  # fmt: skip
def test_gstreamer_from_opencv_build_information(info, expected):
    assert doctor.gstreamer_support(info) is expected

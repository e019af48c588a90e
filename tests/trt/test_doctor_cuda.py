"""`u2deploy doctor`: the driver's CUDA version beside the CUDA builds of TensorRT and cuda-python."""

from __future__ import annotations

from u2deploy.doctor import cuda_mismatches, render

CU13 = {"tensorrt-cu13": {"version": "11.4.0.106", "cuda": 13}, "cuda-python": {"version": "13.4.4", "cuda": 13}}


def test_a_package_newer_than_the_driver_is_flagged():
    problems = cuda_mismatches("12.4", CU13)
    assert len(problems) == 2
    assert problems[0].startswith("tensorrt-cu13 is built for CUDA 13, but the driver supports CUDA 12.4")
    assert "u2deploy[tensorrt-cu12]" in problems[0]


def test_a_consistent_pair_on_a_new_enough_driver_is_fine():
    assert cuda_mismatches("13.0", CU13) == []
    assert cuda_mismatches(None, CU13) == []  # no driver: the GPU section says so


def test_tensorrt_and_cuda_python_of_different_majors_are_flagged():
    mixed = {"tensorrt-cu12": {"version": "10.13.3.9", "cuda": 12}, "cuda-python": {"version": "13.4.4", "cuda": 13}}
    problems = cuda_mismatches(None, mixed)
    assert problems == ["TensorRT is built for CUDA 12 but cuda-python for 13: install a matching pair "
                        "(u2deploy[tensorrt-cu12] or [tensorrt-cu13])"]


def test_report_shows_the_driver_next_to_the_packages():
    from u2deploy import doctor

    report = doctor.collect(timeout=60)
    report["gpu"]["cuda_packages"] = CU13
    report["gpu"]["cuda_driver"] = "12.4"
    text = render(report)
    line = next(line for line in text.splitlines() if line.strip().startswith("CUDA"))
    assert "driver 12.4" in line and "tensorrt-cu13 11.4.0.106 (CUDA 13)" in line

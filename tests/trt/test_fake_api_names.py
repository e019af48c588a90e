"""The fake `tensorrt` refuses every name the imitated release lacks, so a typo in u2deploy fails a test."""

from __future__ import annotations

import pytest

from tests.trt import fake_tensorrt


def _engine(trt):
    config = trt.Builder(trt.Logger()).create_builder_config()
    return config


@pytest.mark.parametrize("version", ["10.3.0", "10.13.0", "11.4.1"])
def test_unknown_attribute_is_refused_on_read_and_write(version):
    trt = fake_tensorrt.make_module(version)
    config = _engine(trt)
    with pytest.raises(AttributeError, match="'Config' object has no attribute 'builder_optimisation_level'"):
        config.builder_optimisation_level = 3  # British spelling: not TensorRT's name
    with pytest.raises(AttributeError, match="max_workspace_size"):
        _ = config.max_workspace_size  # removed in TensorRT 10
    config.builder_optimization_level = 5
    assert config.builder_optimization_level == 5


def test_tensorrt_11_has_no_calibrator_and_no_precision_flags():
    trt = fake_tensorrt.make_module("11.4.1")
    config = _engine(trt)
    with pytest.raises(AttributeError, match="int8_calibrator"):
        config.int8_calibrator = object()
    for name in ("FP16", "INT8"):
        assert not hasattr(trt.BuilderFlag, name)
    assert not hasattr(trt, "IInt8EntropyCalibrator2")
    legacy = _engine(fake_tensorrt.make_module("10.3.0"))
    legacy.int8_calibrator = None  # 10.x still has it


@pytest.mark.parametrize(("version", "present", "absent"), [("10.3.0", "context", "execution_context"),
                                                            ("10.13.0", "execution_context", "context"),
                                                            ("11.4.1", "execution_context", "context")])
def test_inspector_context_name_follows_the_release(version, present, absent, tmp_path):
    trt = fake_tensorrt.make_module(version)
    inspector = fake_tensorrt._Inspector.__new__(fake_tensorrt._Inspector)
    fake_tensorrt._Strict.__init__(inspector, fake_tensorrt._version(trt),
                                   **{present: None})  # as _Inspector.__init__ does, without an engine
    setattr(inspector, present, "ctx")
    with pytest.raises(AttributeError, match=absent):
        setattr(inspector, absent, "ctx")
    assert fake_tensorrt.INSPECTOR_EXECUTION_CONTEXT == (10, 13)

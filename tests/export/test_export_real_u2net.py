"""The pretrained U2-Net through every CPU format, judged on the five real parity photos.

Each test is one full export plus its parity run (10-35 s here), so there are only three.
"""

from __future__ import annotations

import pytest

from u2deploy.export import export

pytestmark = [pytest.mark.weights, pytest.mark.slow]


@pytest.mark.onnxruntime
def test_onnx_fp32_matches_torch_within_1e4(u2net_checkpoint, tmp_path):
    result = export(u2net_checkpoint, f"{tmp_path}/", fmt="onnx", progress=False)
    summary = result.parity.summary()
    assert result.path.name == "u2net_320_fp32.onnx"
    # a map value within 1e-4 of 0.5 may flip one pixel (seen on an AVX2 CPU: IoU 0.99996), so IoU is judged
    # at the FP32 gate's bound, not as exact equality
    assert summary["max_abs"] <= 1e-4 and summary["min_iou"] >= 0.999


@pytest.mark.onnxruntime
def test_onnx_fp16_keeps_every_mask(u2net_checkpoint, tmp_path):
    import onnx
    from onnx import TensorProto

    result = export(u2net_checkpoint, f"{tmp_path}/", fmt="onnx", precision="fp16", progress=False)
    ious = {row.image: row.iou for row in result.parity.images}
    assert min(ious.values()) >= 0.99, ious
    model = onnx.load(str(result.path))
    fp32_weights = [t.name for t in model.graph.initializer if len(t.dims) == 4 and t.data_type == TensorProto.FLOAT]
    assert len(fp32_weights) == 4  # the large-bias convs of stage1d/stage2d (see export/fp16.py)
    assert result.path.stat().st_size < 0.55 * 176e6


@pytest.mark.openvino
def test_openvino_fp32_matches_torch_within_1e3(u2net_fp32_ir):
    result = u2net_fp32_ir
    # the gate ran OpenVINO with f32 inference precision (Capability.verify_options)
    assert result.parity.summary()["max_abs"] <= 1e-3
    assert [f.suffix for f in result.files] == [".xml", ".bin", ".json"]

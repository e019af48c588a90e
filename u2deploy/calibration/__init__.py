"""INT8 calibration: one backend-neutral image source, one quantizer per backend (STYLE.md guideline 11).

* `source.py`: `CalibrationSource`, the chosen images as preprocessed batches, hashed and described.
* `qdq.py`: the Q/DQ ONNX TensorRT 10/11 builds INT8 engines from (also run by ONNX Runtime).
* `openvino.py`: OpenVINO's INT8 IR through NNCF post-training quantization.
* `trt_legacy.py`: the IInt8 entropy calibrator for TensorRT <= 10 builds from an fp32 graph.
* `cache.py`: calibrated models reused while model, images, method and quantizer are unchanged.

Nothing heavy is imported here: the quantizers import NNCF, ONNX and OpenVINO when they run.
"""

from __future__ import annotations

from .source import MIN_IMAGES, CalibrationImages, CalibrationSource, select_images, write_sample_images

__all__ = ["MIN_IMAGES", "CalibrationImages", "CalibrationSource", "select_images", "write_sample_images"]

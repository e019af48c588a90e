"""Pre/post-processing models for Triton's Python backend (the ensemble of `--fmt triton --ensemble`).

`preprocess_images` and `postprocess_maps` are plain functions over `u2deploy.processing`, the
same code `Runtime.predict` runs; `PreprocessModel` and `PostprocessModel` are thin
`TritonPythonModel` shells around them. `triton_python_backend_utils` exists only inside
Triton's Python backend, so it is imported in `execute`, never at module import.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import processing
from ..errors import InputError
from ..spec import ModelSpec

__all__ = ["preprocess_images", "postprocess_maps", "encode_png", "PreprocessModel", "PostprocessModel"]

IMAGE, MASK, ORIGINAL_SIZE = "IMAGE", "MASK", "ORIGINAL_SIZE"


def preprocess_images(images: Sequence[bytes], spec: ModelSpec, mode: str = "fast") -> tuple[np.ndarray, np.ndarray]:
    """Encoded images -> (Nx3xHxW float32 network input, Nx2 int32 original (height, width))."""
    batch, sizes = processing.preprocess_batch([bytes(image) for image in images], spec, mode)
    return batch.astype(np.float32, copy=False), np.asarray(sizes, dtype=np.int32).reshape(-1, 2)


def encode_png(mask: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(mask).save(buffer, format="PNG")
    return buffer.getvalue()


def postprocess_maps(maps: np.ndarray, sizes: np.ndarray, spec: ModelSpec, mode: str = "fast") -> list[bytes]:
    """Nx1xHxW network maps and Nx2 original sizes -> one 8-bit PNG mask per image, at its own size."""
    masks = []
    for fused, (height, width) in zip(maps, np.asarray(sizes).reshape(-1, 2), strict=True):
        saliency = processing.postprocess(fused, spec, (int(height), int(width)), mode)
        masks.append(encode_png(processing.to_mask_u8(saliency)))
    return masks


class _ProcessingModel:
    """Reads the spec, mode and tensor names that `export/triton.py` put in the model's config."""

    def initialize(self, args: dict[str, Any]) -> None:
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        self.spec = ModelSpec.from_json(parameters["u2deploy_spec"])
        self.mode = parameters.get("u2deploy_mode", "fast")
        self.inputs = [tensor["name"] for tensor in config["input"]]
        self.outputs = [tensor["name"] for tensor in config["output"]]

    def execute(self, requests: list[Any]) -> list[Any]:
        import triton_python_backend_utils as pb_utils  # only exists inside Triton's Python backend

        responses = []
        for request in requests:
            arrays = [pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.inputs]
            try:
                results = self.run(*arrays)
            except InputError as exc:  # a bad image fails its request, not the model
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))))
                continue
            tensors = [pb_utils.Tensor(name, array) for name, array in zip(self.outputs, results, strict=True)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses

    def run(self, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
        raise NotImplementedError

    def finalize(self) -> None:
        pass


class PreprocessModel(_ProcessingModel):
    """IMAGE (encoded bytes, Nx1) -> the network input (Nx3xHxW) and ORIGINAL_SIZE (Nx2)."""

    def run(self, images: np.ndarray) -> tuple[np.ndarray, ...]:
        return preprocess_images(list(images.reshape(-1)), self.spec, self.mode)


class PostprocessModel(_ProcessingModel):
    """The network output (Nx1xHxW) and ORIGINAL_SIZE -> MASK (PNG bytes, Nx1)."""

    def run(self, maps: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, ...]:
        pngs = postprocess_maps(maps, sizes, self.spec, self.mode)
        return (np.array(pngs, dtype=np.object_).reshape(-1, 1),)

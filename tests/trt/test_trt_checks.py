"""The TensorRT build rules that need no GPU: profiles, build mode, DLA, and the layer-precision check.

The inspector fixtures in data/ are hand-written in the format TensorRT documents for
`IEngineInspector.get_engine_information(LayerInformationFormat.JSON)` at DETAILED verbosity
(an fp16 U2-Net engine with one fp32 large-bias conv and a Myelin node; an int8 engine whose
output conv and Sigmoid stay fp32). They are not recorded from hardware.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from u2deploy.errors import ExportError, UnsupportedOptionError
from u2deploy.export import ExportOptions, TensorRTOptions
from u2deploy.export.trt_checks import (
    DEFAULT_BATCH_PROFILE,
    check_engine_precision,
    choose_build_mode,
    dla_placement,
    dla_preflight,
    layer_records,
    network_precision,
    profile_for,
    tensor_precision,
)
from u2deploy.runtimes.trt_support import Profile, TrtFeatures
from u2deploy.spec import spec_for_task

DATA = Path(__file__).parent / "data"
TRT10 = TrtFeatures("10.3.0", strongly_typed_only=False, strongly_typed_flag=True, legacy_int8=True)
TRT11 = TrtFeatures("11.4.1", strongly_typed_only=True, strongly_typed_flag=True, legacy_int8=False)


def layers(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def as_fp32(info: dict) -> dict:
    """The same engine as if every layer had stayed FP32 (what TensorRT 11 builds from a plain fp32 ONNX)."""
    info = copy.deepcopy(info)
    for layer in info["Layers"]:
        for tensor in (*layer.get("Inputs", []), *layer.get("Outputs", [])):
            tensor["Format/Datatype"] = "Row major linear FP32"
        if "Weights" in layer:
            layer["Weights"]["Type"] = "Float"
    return info


# -- profiles ---------------------------------------------------------------------------------
def test_profiles_for_static_batch_dynamic_and_hw_exports():
    spec = spec_for_task("sod", arch="u2net")
    assert profile_for(spec, ExportOptions(fmt="trt")) == Profile.static("input", (1, 3, 320, 320))
    assert profile_for(spec, ExportOptions(fmt="trt", batch=4)).max == (4, 3, 320, 320)
    ranged = profile_for(spec, ExportOptions(fmt="trt", dynamic=("batch",), profile=(1, 4, 8)))
    assert (ranged.min, ranged.opt, ranged.max) == ((1, 3, 320, 320), (4, 3, 320, 320), (8, 3, 320, 320))
    default = profile_for(spec, ExportOptions(fmt="trt", dynamic=("batch",)))
    assert (default.min[0], default.opt[0], default.max[0]) == DEFAULT_BATCH_PROFILE
    hw = profile_for(spec, ExportOptions(fmt="trt", dynamic=("hw",), input_size=(320, 288)))
    assert (hw.min, hw.opt, hw.max) == ((1, 3, 160, 144), (1, 3, 320, 288), (1, 3, 640, 576))


def test_a_shape_outside_the_profile_names_the_profile():
    profile = Profile("input", (1, 3, 320, 320), (4, 3, 320, 320), (8, 3, 320, 320))
    profile.check("m.engine", (8, 3, 320, 320))
    with pytest.raises(Exception, match=r"m.engine: input 'input' has shape 9x3x320x320, outside the engine's profile "
                                        r"\(min 1x3x320x320, opt 4x3x320x320, max 8x3x320x320\); rebuild with "
                                        r"--dynamic MIN:OPT:MAX"):
        profile.check("m.engine", (9, 3, 320, 320))


# -- build mode -------------------------------------------------------------------------------
def test_graph_precision_comes_from_the_parsed_network():
    fp16 = [("CAST", ["HALF"]), ("CONVOLUTION", ["HALF"]), ("ACTIVATION", ["HALF"]), ("ACTIVATION", ["FLOAT"])]
    assert network_precision(fp16) == "fp16"
    assert network_precision([("CONVOLUTION", ["FLOAT"]), ("ACTIVATION", ["FLOAT"])]) == "fp32"
    assert network_precision([("QUANTIZE", ["INT8"]), ("DEQUANTIZE", ["FLOAT"])]) == "int8"


@pytest.mark.parametrize("features", [TRT10, TRT11], ids=["trt10", "trt11"])
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_a_precision_encoded_graph_builds_strongly_typed_on_10_and_11(features, precision):
    mode = choose_build_mode(features, precision, precision)
    assert mode.strongly_typed and mode.flags == () and not mode.calibrate


def test_tensorrt_11_refuses_a_plain_fp32_graph_for_fp16_and_int8():
    with pytest.raises(ExportError, match=r"strongly typed networks only: a plain fp32 graph gives an fp32 engine "
                                          r"\(rf-detr#1453\).*fp16 ONNX graph"):
        choose_build_mode(TRT11, "fp32", "fp16")
    with pytest.raises(ExportError, match="Q/DQ ONNX graph"):
        choose_build_mode(TRT11, "fp32", "int8", calibration=True)


def test_tensorrt_10_allows_the_builder_flag_paths_from_an_fp32_graph():
    fp16 = choose_build_mode(TRT10, "fp32", "fp16")
    assert not fp16.strongly_typed and fp16.flags == ("FP16",) and "fp16 ONNX" in fp16.hint
    int8 = choose_build_mode(TRT10, "fp32", "int8", calibration=True)
    assert int8.flags == ("INT8", "FP16") and int8.calibrate
    with pytest.raises(ExportError, match="needs calibration data"):
        choose_build_mode(TRT10, "fp32", "int8")
    with pytest.raises(ExportError, match="the ONNX graph is fp16 but a fp32 engine was asked for"):
        choose_build_mode(TRT10, "fp16", "fp32")


def test_dla_build_modes():
    with pytest.raises(UnsupportedOptionError, match="DLA runs FP16 or INT8 only"):
        choose_build_mode(TRT10, "fp32", "fp32", dla=True)
    weak = choose_build_mode(TRT10, "fp16", "fp16", dla=True)  # 10.x: DLA precision comes from flags
    assert not weak.strongly_typed and weak.flags == ("FP16", "GPU_FALLBACK")
    strong = choose_build_mode(TRT11, "fp16", "fp16", dla=True)  # 11.4.1+: strongly typed DLA
    assert strong.strongly_typed and strong.flags == ("GPU_FALLBACK",)


# -- DLA --------------------------------------------------------------------------------------
def test_dla_preflight_says_why_there_is_no_dla_core():
    static = Profile.static("input", (1, 3, 320, 320))
    nano = {"model": "NVIDIA Jetson Orin Nano Developer Kit", "l4t": "36.3.0", "jetpack": "6.x", "dla": False}
    with pytest.raises(UnsupportedOptionError, match=r"--dla-core 0: TensorRT 10.3.0 on this machine reports no DLA "
                                                     r"core; NVIDIA Jetson Orin Nano Developer Kit has no DLA; drop"):
        dla_preflight(TRT10, 0, 0, nano, static)
    with pytest.raises(UnsupportedOptionError, match="DLA exists only on Jetson.*TensorRT 11 supports DLA only from "
                                                     "11.4.1 on JetPack 7.2.2"):
        dla_preflight(TRT11, 0, 0, None, static)
    with pytest.raises(UnsupportedOptionError, match="--dla-core 2: .* reports DLA cores 0..1"):
        dla_preflight(TRT10, 2, 2, {"model": "NVIDIA Jetson AGX Orin"}, static)
    with pytest.raises(UnsupportedOptionError, match="DLA takes dimensions up to 8192"):
        dla_preflight(TRT10, 0, 2, {"model": "NVIDIA Jetson AGX Orin"}, Profile.static("input", (1, 3, 9000, 320)))
    dla_preflight(TRT10, 1, 2, {"model": "NVIDIA Jetson AGX Orin"}, static)


def test_dla_placement_reports_gpu_fallback_resize_and_loadable_limit():
    layers = [(f"conv{i}", "CONVOLUTION", True) for i in range(3)] + [("up", "RESIZE", False)]
    report = dla_placement(layers * 9)
    assert (report["on_dla"], report["on_gpu"], report["dla_segments"]) == (27, 9, 9)
    assert report["gpu_layer_types"] == {"RESIZE": 9}
    assert any("pytorch_half_pixel" in note for note in report["notes"])
    many = dla_placement([("c", "CONVOLUTION", True), ("r", "RESIZE", False)] * 17)
    assert any("17 DLA segments; TensorRT allows 16 loadables" in note for note in many["notes"])
    assert dla_placement([("c", "CONVOLUTION", True)])["notes"] == []


# -- layer precisions -------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("Channel major FP16 format where channel % 8 == 0", "fp16"), ("Half", "fp16"), ("Float", "fp32"),
    ("Row major linear FP32", "fp32"), ("Thirty-two wide channel vectorized row major Int8 format.", "int8"),
    ("N/A due to dynamic shapes", None), ("Row major linear Int32", None), ("", None),
])  # fmt: skip
def test_tensor_formats(text, expected):
    assert tensor_precision(text) == expected


def test_an_fp16_engine_passes_and_reports_its_fp32_layers():
    summary = check_engine_precision(layers("u2net_fp16_layers.json"), "fp16", "m.engine", "hint")
    assert summary["verdict"] == "ok" and summary["basis"] == "convolution MACs"
    assert 0.8 < summary["share"] < 0.9  # the one fp32 conv is 4608 weights x 320 x 320 of the MACs
    assert summary["wider_layers"] == ["/stage1d/rebnconv2d/conv_s1/Conv + /stage1d/rebnconv2d/relu_s1/Relu"]
    assert summary["opaque_layers"] == 1  # the Myelin foreign node is not judged


def test_an_engine_that_silently_stayed_fp32_is_refused():
    with pytest.raises(ExportError, match=r"m.engine: fp16 was asked for, but only 0% of the convolution MACs run in "
                                          r"fp16 \(wider layers include '/stage1/rebnconvin/conv_s1/Conv \+ .*'\); "
                                          r"build from the fp16 ONNX; nothing was written"):
        check_engine_precision(as_fp32(layers("u2net_fp16_layers.json")), "fp16", "m.engine",
                               "build from the fp16 ONNX")
    with pytest.raises(ExportError, match="int8 was asked for, but only 0%"):
        check_engine_precision(as_fp32(layers("u2net_int8_layers.json")), "int8", "m.engine", "hint")


def test_an_int8_engine_passes_with_its_fp32_head():
    summary = check_engine_precision(layers("u2net_int8_layers.json"), "int8", "m.engine", "hint")
    assert summary["verdict"] == "ok" and summary["share"] > 0.99 and summary["wider_layers"] == ["/outconv/Conv"]
    with pytest.raises(ExportError):  # an fp16 engine is not an int8 one
        check_engine_precision(layers("u2net_fp16_layers.json"), "int8", "m.engine", "hint")


def test_what_the_inspector_hides_is_refused_unless_accepted():
    info = layers("u2net_fp16_layers.json")
    names_only = {"Layers": [layer["Name"] for layer in info["Layers"]], "Bindings": info["Bindings"]}
    assert layer_records(names_only) is None
    with pytest.raises(ExportError, match=r"^m: fp16 cannot be confirmed: the inspector gave layer names only; pass "
                                          r"--accept-unseen-precision") as caught:
        check_engine_precision(names_only, "fp16", "m", "h")
    assert len(str(caught.value)) <= 160
    verdict = check_engine_precision(names_only, "fp16", "m", "h", accept_unseen=True)["verdict"]
    assert verdict.startswith("not visible: the inspector") and "accepted with --accept-unseen-precision" in verdict
    assert check_engine_precision(names_only, "fp32", "m", "h")["verdict"] == "not judged for fp32"
    myelin_only = {"Layers": [layer for layer in info["Layers"] if layer["LayerType"] in ("Myelin", "Reformat")]}
    with pytest.raises(ExportError, match="int8 cannot be confirmed: TensorRT hides the convolutions"):
        check_engine_precision(myelin_only, "int8", "m", "h")
    dla = {"Layers": [{**layer, "LayerType": "DLA"} if layer.get("Weights") else layer for layer in info["Layers"]]}
    with pytest.raises(ExportError, match="fp16 cannot be confirmed"):
        check_engine_precision(dla, "fp16", "m", "h")
    assert check_engine_precision(myelin_only, "fp16", "m", "h", accept_unseen=True)["verdict"].startswith(
        "not visible: TensorRT hides")
    dynamic = copy.deepcopy(info)
    for layer in dynamic["Layers"]:
        for tensor in (*layer["Inputs"], *layer["Outputs"]):
            tensor["Format/Datatype"] = "N/A due to dynamic shapes"
    summary = check_engine_precision(dynamic, "fp16", "m", "h")  # weights and tactic names still tell
    assert summary["verdict"] == "ok"
    assert check_engine_precision(as_fp32(info), "fp32", "m", "h")["verdict"] == "not judged for fp32"


def test_options_refuse_fp32_on_dla_before_any_work():
    with pytest.raises(UnsupportedOptionError, match="DLA runs FP16 or INT8 only"):
        ExportOptions(fmt="trt", tensorrt=TensorRTOptions(dla_core=0)).validate()


def test_uint8_io_is_not_int8_compute():
    assert tensor_precision("Row major linear UInt8 format") is None
    assert tensor_precision("UInt8") is None
    assert tensor_precision("Thirty-two wide channel vectorized row major Int8 format.") == "int8"

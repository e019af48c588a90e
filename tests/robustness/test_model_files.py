"""Damaged or malformed model files are refused at load, in one line naming the file (issue 14: 3, 9)."""

from __future__ import annotations

import json

import pytest

from u2deploy.errors import BackendError, InputError, ModelLoadError
from u2deploy.spec import ModelSpec, spec_for_task


@pytest.fixture(scope="module")
def payload(tiny_checkpoint):
    import torch

    return torch.load(tiny_checkpoint, weights_only=True)


def _save(payload, path, **changes):
    import torch

    data = {**payload, **changes}
    torch.save({k: v for k, v in data.items() if v is not None}, path)
    return path


def test_non_finite_weights_are_refused_at_load(tmp_path, payload):
    from u2deploy.model import load_checkpoint

    state = dict(payload["state_dict"])
    name = next(k for k in state if k.endswith("weight"))
    state[name] = state[name].clone()
    state[name].view(-1)[0] = float("nan")
    path = _save(payload, tmp_path / "nan.pth", state_dict=state)
    with pytest.raises(ModelLoadError, match=rf"nan.pth: 1 weight tensor\(s\) hold NaN or inf \(e.g. {name}\)"):
        load_checkpoint(path)


@pytest.mark.parametrize("spec, message", [
    ("u2net", "spec is a str, not a mapping of fields"),
    ({"arch": "u2net_test", "mean": "abc"}, "spec field mean is 'abc', not a list"),
    ({"arch": "u2net_test", "input_size": "abc"}, "spec field input_size is 'abc', not a list"),
    ({"arch": "u2net_test", "input_size": ["a", "b"]}, r"input_size \['a', 'b'\] is not two integers"),
    ({"arch": "u2net_test", "std": [0.2, 0, 0.2]}, r"std \[0.2, 0, 0.2\] must be positive"),
    ({"arch": "u2net_test", "mean": [0.4, "x", 0.4]}, "is not three finite numbers"),
    ({"arch": "u2net_test", "mean": [0.4, float("nan"), 0.4]}, "is not three finite numbers"),
    ({"arch": 7}, "spec field arch is 7, not a string"),
])  # fmt: skip
def test_malformed_checkpoint_spec_fields_are_one_line(tmp_path, payload, spec, message):
    from u2deploy.model import load_checkpoint

    path = _save(payload, tmp_path / "bad.pth", spec=spec)
    with pytest.raises(ModelLoadError, match=f"bad.pth: stored .*{message}") as caught:
        load_checkpoint(path)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("state", [None, "weights", {"a": 1}])
def test_a_checkpoint_without_a_state_dict_is_one_line(tmp_path, payload, state):
    from u2deploy.model import load_checkpoint

    path = _save({k: v for k, v in payload.items() if k != "state_dict"}, tmp_path / "nostate.pth", state_dict=state)
    with pytest.raises(ModelLoadError, match="nostate.pth: a u2deploy checkpoint without a state_dict"):
        load_checkpoint(path)


def test_the_cli_reports_a_malformed_checkpoint_in_one_line(tmp_path, payload, capsys):
    from PIL import Image

    from u2deploy.cli import main

    path = _save(payload, tmp_path / "bad.pth", spec={"arch": "u2net_test", "std": [0, 0, 0]})
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    assert main(["predict", str(path), str(tmp_path / "a.png"), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.pth: stored spec std [0, 0, 0] must be positive" in err


@pytest.mark.parametrize("where", ["embedded", "sidecar"])
def test_an_artifact_spec_with_std_zero_is_refused_at_load(tmp_path, where):
    from u2deploy.runtimes.base import TensorInfo, sidecar_path, spec_from_metadata

    spec = spec_for_task("sod").to_dict()
    spec["std"] = [0.229, 0.0, 0.225]
    artifact = tmp_path / "model.onnx"
    embedded = json.dumps(spec) if where == "embedded" else None
    if where == "sidecar":
        sidecar_path(artifact).write_text(json.dumps({"spec": spec}))
    with pytest.raises(BackendError, match=r"model.onnx: stored spec std .* must be positive"):
        spec_from_metadata(artifact, embedded, TensorInfo("input", (1, 3, 320, 320)), ["mask"])


@pytest.mark.parametrize("changes, message", [
    ({"std": (0.2, 0.0, 0.2)}, "must be positive"),
    ({"mean": (float("inf"), 0.4, 0.4)}, "not three finite numbers"),
    ({"input_size": (100_000, 320)}, "too large"),
    ({"input_size": (16, 320)}, "too small"),
])  # fmt: skip
def test_model_spec_refuses_values_that_make_no_sense(changes, message):
    with pytest.raises(InputError, match=message):
        ModelSpec(**changes)


def test_openvino_xml_without_its_bin_keeps_openvinos_useful_line(tmp_path):
    pytest.importorskip("openvino")
    from u2deploy import Runtime

    xml = tmp_path / "model.xml"
    xml.write_text(
        '<?xml version="1.0"?><net name="x" version="11"><layers>'
        '<layer id="0" name="c" type="Const" version="opset1"><data element_type="f32" shape="1" offset="0" size="4"/>'
        '<output><port id="0" precision="FP32"><dim>1</dim></port></output></layer>'
        '<layer id="1" name="r" type="Result" version="opset1"><input><port id="0" precision="FP32"><dim>1</dim></port>'
        '</input></layer></layers><edges><edge from-layer="0" from-port="0" to-layer="1" to-port="0"/></edges></net>')
    with pytest.raises(ModelLoadError, match=r"model.xml: OpenVINO cannot read it \(.*bin file cannot be found") as caught:
        Runtime(xml)
    assert "\n" not in str(caught.value)

"""Loading official, u2deploy and ONNX weights; and refusing everything else clearly."""

from __future__ import annotations

import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch

from u2deploy.errors import ModelLoadError
from u2deploy.model import load_checkpoint, save_checkpoint, u2net_test, u2netp
from u2deploy.spec import spec_for_task


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_official_plain_state_dict_loads_and_arch_is_detected(tmp_path):
    model = u2netp()
    path = tmp_path / "u2netp.pth"
    torch.save(model.state_dict(), path)
    loaded = load_checkpoint(path)
    assert loaded.spec.arch == "u2netp" and loaded.spec.task == "sod"
    assert _same_weights(loaded.model, model)
    assert not loaded.model.training


def test_module_prefix_and_missing_num_batches_tracked_are_accepted(tmp_path, tiny_model):
    state = OrderedDict(
        (f"module.{k}", v) for k, v in tiny_model.state_dict().items() if not k.endswith("num_batches_tracked")
    )
    path = tmp_path / "dataparallel.pth"
    torch.save(state, path)
    assert _same_weights(load_checkpoint(path).model, tiny_model)


def test_legacy_pre_1_6_format_loads(tmp_path, tiny_model):
    path = tmp_path / "legacy.pth"
    torch.save(tiny_model.state_dict(), path, _use_new_zipfile_serialization=False)
    assert _same_weights(load_checkpoint(path).model, tiny_model)


def test_u2deploy_checkpoint_round_trip_keeps_spec_and_provenance(tmp_path, tiny_model):
    spec = spec_for_task("human", arch="u2net_test", input_size=256)
    path = save_checkpoint(tiny_model, tmp_path / "ckpt.pth", spec, {"source": "unit test"})
    loaded = load_checkpoint(path)
    assert loaded.spec == spec
    assert loaded.provenance == {"source": "unit test"}
    assert _same_weights(loaded.model, tiny_model)
    assert load_checkpoint(path, task="sod").spec.task == "sod"


def test_mismatched_weights_name_missing_and_unexpected_keys(tmp_path, tiny_model):
    state = tiny_model.state_dict()
    state.pop("side3.weight")
    state["extra_head.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(ModelLoadError, match=r"1 missing \(e.g. side3.weight\); 1 unexpected \(e.g. extra_head.weight\)"):
        load_checkpoint(path)


def test_another_network_is_rejected(tmp_path):
    path = tmp_path / "resnet_like.pth"
    torch.save(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3)).state_dict(), path)
    with pytest.raises(ModelLoadError, match="do not look like a U2-Net"):
        load_checkpoint(path)


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_code_is_never_executed(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        pickle.dump({"state_dict": _Payload()}, handle)
    with pytest.raises(ModelLoadError, match="never runs code"):
        load_checkpoint(path)
    assert "must never run" not in capsys.readouterr().out


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", bytes(range(256)) * 10])
def test_garbage_files_give_one_clear_error(tmp_path, content):
    for suffix in (".pth", ".onnx"):
        path = tmp_path / f"garbage{suffix}"
        path.write_bytes(content)
        with pytest.raises(ModelLoadError, match=str(path.name)):
            load_checkpoint(path)


def test_missing_file_or_unknown_name(tmp_path):
    with pytest.raises(ModelLoadError, match="not a known weights name"):
        load_checkpoint(tmp_path / "nope.pth")
    with pytest.raises(ModelLoadError, match="not a known weights name"):
        load_checkpoint("u2net_xl")


def _export_bn_folded_onnx(model: torch.nn.Module, path, size=64) -> None:
    # Eval-mode export folds BatchNorm into the convolutions, as rembg's u2net.onnx was made.
    torch.onnx.export(model, torch.rand(1, 3, size, size), str(path), opset_version=17, dynamo=False,
                      input_names=["input"], output_names=[f"d{i}" for i in range(7)])


@pytest.mark.onnxruntime
def test_onnx_import_matches_onnxruntime_on_the_same_file(tmp_path, tiny_model):
    import onnxruntime as ort

    path = tmp_path / "tiny_folded.onnx"
    _export_bn_folded_onnx(tiny_model, path)
    loaded = load_checkpoint(path)
    assert loaded.spec.arch == "u2net_test" and loaded.provenance["kind"] == "onnx-bn-folded"
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    with torch.no_grad():
        ours = loaded.model(torch.from_numpy(x))
    for mine, theirs in zip(ours, expected, strict=True):
        assert np.abs(mine.numpy() - theirs).max() < 1e-5


@pytest.mark.onnxruntime
def test_onnx_of_another_network_is_rejected(tmp_path):
    path = tmp_path / "other.onnx"
    torch.onnx.export(torch.nn.Conv2d(3, 4, 3), torch.rand(1, 3, 8, 8), str(path), dynamo=False)
    with pytest.raises(ModelLoadError, match="do not match U2-Net"):
        load_checkpoint(path)


@pytest.mark.weights
@pytest.mark.onnxruntime
def test_pretrained_onnx_import_matches_onnxruntime_on_real_photos(u2net_onnx, photos):
    """REFERENCE/issue 2: PyTorch from rembg's u2net.onnx vs ORT on that file, <= 1e-4 max abs (fused)."""
    import onnxruntime as ort

    from u2deploy import processing

    loaded = load_checkpoint(u2net_onnx)
    assert loaded.spec.arch == "u2net"
    session = ort.InferenceSession(str(u2net_onnx), providers=["CPUExecutionProvider"])
    for name in ("astronaut", "rocket"):
        x, _ = processing.preprocess(photos[name], loaded.spec, mode="reference")
        expected = session.run(None, {session.get_inputs()[0].name: x})[0]
        with torch.no_grad():
            fused = loaded.model(torch.from_numpy(x))[0].numpy()
        assert np.abs(fused - expected).max() <= 1e-4, name


@pytest.mark.weights
def test_cached_pretrained_checkpoint_is_u2net(u2net_checkpoint):
    loaded = load_checkpoint(u2net_checkpoint)
    assert loaded.spec.arch == "u2net" and loaded.spec.task == "sod"
    assert loaded.provenance["name"] == "u2net"
    assert len(loaded.provenance["original_sha256"]) == 64


def test_tiny_model_is_u2net_test(tiny_model):
    assert tiny_model.arch == "u2net_test" and type(tiny_model) is type(u2net_test())

"""The trainer on tiny synthetic data: it learns, resumes exactly, stops cleanly and writes usable checkpoints."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from u2deploy.errors import InputError, ModelLoadError, UnsupportedOptionError
from u2deploy.train.runlog import read_log
from u2deploy.train.trainer import Trainer


def _train_rows(run_dir):
    return [row for row in read_log(run_dir / "log.jsonl") if row["kind"] == "train"]


def test_a_short_run_lowers_the_loss(tiny_config, tmp_path):
    result = Trainer(tiny_config(iters=24, log_every=3)).fit()
    rows = _train_rows(tmp_path / "run")
    assert [r["step"] for r in rows] == list(range(3, 25, 3)) and result.exit_code == 0
    first, last = rows[0], rows[-1]
    assert last["loss"] < 0.85 * first["loss"], (first["loss"], last["loss"])
    assert last["loss0"] < first["loss0"]
    assert all(r["img_per_s"] > 0 and r["lr"] == 1e-3 for r in rows)
    # every term is logged, and they add up to the total
    assert sum(last[f"loss{i}"] for i in range(7)) == pytest.approx(last["loss"], rel=1e-5)


@pytest.fixture()
def uninterrupted(tiny_config, synth_val, tmp_path):
    """4 steps over 6 samples at batch 2 (3 steps per epoch), a checkpoint kept at step 2, validation."""
    config = tiny_config(iters=4, save_every=2, keep_checkpoints=True, val=[str(synth_val)], val_every=2,
                         out=str(tmp_path / "full"))  # fmt: skip
    result = Trainer(config).fit()
    return tmp_path / "full", result


def test_resume_gives_the_same_next_steps_as_an_uninterrupted_run(uninterrupted, tmp_path):
    full, _ = uninterrupted
    kept = full / "checkpoints" / "step_0000002.pth"
    # resume mid-epoch (step 2 of 3) from the kept checkpoint into another folder
    resumed = Trainer.resume(kept, {"out": str(tmp_path / "resumed")})
    assert (resumed.step, resumed.epoch, resumed.batch_in_epoch) == (2, 0, 2)
    resumed.fit()
    expected = {r["step"]: r for r in _train_rows(full)}
    rows = _train_rows(tmp_path / "resumed")
    assert [r["step"] for r in rows] == [3, 4]
    for row in rows:  # same data order, augmentation, optimizer state: the same losses, bit for bit
        assert [row[f"loss{i}"] for i in range(7)] == [expected[row["step"]][f"loss{i}"] for i in range(7)]
    state_full = torch.load(full / "last.pth", weights_only=True)
    state_resumed = torch.load(tmp_path / "resumed" / "last.pth", weights_only=True)
    for key, value in state_full["state_dict"].items():
        assert torch.equal(value, state_resumed["state_dict"][key]), key
    assert state_resumed["train_state"]["step"] == 4 and state_resumed["train_state"]["epoch"] == 1


def test_checkpoints_are_u2deploy_checkpoints_for_runtime_and_export(uninterrupted, synth_val):
    from u2deploy import Runtime, load_checkpoint

    full, result = uninterrupted
    assert result.best == full / "best.pth" and result.best_metric == "max_f" and result.best_value is not None
    for name in ("best.pth", "last.pth"):
        loaded = load_checkpoint(full / name)
        assert loaded.spec.arch == "u2net_test" and loaded.spec.input_size == (64, 64)
        assert loaded.provenance["kind"] == "u2deploy-train"
    with Runtime(full / "best.pth") as runtime:
        image = next((synth_val / "images").iterdir())
        saliency = runtime.predict(str(image))
    assert saliency.shape == (64, 64) and 0.0 <= saliency.min() <= saliency.max() <= 1.0
    val_rows = [r for r in read_log(full / "log.jsonl") if r["kind"] == "val"]
    assert [r["step"] for r in val_rows] == [2, 4]
    assert {"max_f", "mae", "s_measure", "relax_fb", "loss", "loss0"} <= set(val_rows[0])
    summary = (full / "summary.json").read_text()
    assert '"status": "finished"' in summary


def test_a_signal_saves_a_loadable_checkpoint_and_exits_130(tiny_config, tmp_path):
    trainer = Trainer(tiny_config(iters=50))
    step = trainer._train_step

    def signal_on_second_step(batch):
        if trainer.step == 1:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C during step 2, caught by the trainer
        return step(batch)

    trainer._train_step = signal_on_second_step
    result = trainer.fit()
    assert result.interrupted and result.exit_code == 130 and result.step == 2
    payload = torch.load(tmp_path / "run" / "last.pth", weights_only=True)
    assert payload["train_state"]["step"] == 2 and payload["format"] == "u2deploy-checkpoint"
    assert '"status": "interrupted"' in (tmp_path / "run" / "summary.json").read_text()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    resumed = Trainer.resume(tmp_path / "run" / "last.pth", {"iters": 3})
    assert resumed.fit().step == 3
    assert [r["step"] for r in _train_rows(tmp_path / "run")] == [1, 2, 3]


def test_fine_tune_from_weights(tiny_config, tiny_checkpoint, tiny_model):
    trainer = Trainer(tiny_config(init=str(tiny_checkpoint), arch=None))
    assert trainer.config.arch == "u2net_test"
    for key, value in tiny_model.state_dict().items():
        assert torch.equal(trainer.model.state_dict()[key], value), key
    with pytest.raises(InputError, match="holds u2net_test weights, not --arch u2netp"):
        Trainer(tiny_config(init=str(tiny_checkpoint), arch="u2netp", out=str(tiny_checkpoint.parent / "x")))


def test_mixed_precision_on_cpu_trains(tiny_config):
    result = Trainer(tiny_config(iters=2, amp=True)).fit()
    assert result.step == 2 and result.exit_code == 0


def test_run_folder_and_option_errors(tiny_config, tmp_path, tiny_checkpoint):
    Trainer(tiny_config(iters=1)).fit()
    with pytest.raises(InputError, match="already holds a run"):
        Trainer(tiny_config(iters=1))
    with pytest.raises(UnsupportedOptionError, match=r"--lr 0.5 \(the run has 0.001\)"):
        Trainer.resume(tmp_path / "run" / "last.pth", {"lr": 0.5})
    with pytest.raises(ModelLoadError, match="no training state"):
        Trainer.resume(tiny_checkpoint)
    with pytest.raises(UnsupportedOptionError, match="exactly one"):
        tiny_config(iters=None).resolved()
    with pytest.raises(UnsupportedOptionError, match="needs a validation set"):
        tiny_config(best_metric="max_f").resolved()

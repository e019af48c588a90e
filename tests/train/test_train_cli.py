"""`u2deploy data`, `train` and `eval` as a user runs them: exit codes, one-line errors, files written."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from u2deploy.cli import main


def test_data_synth_and_check(tmp_path, capsys):
    assert main(["data", "synth", str(tmp_path / "s"), "--count", "3", "--size", "48x40", "--seed", "7"]) == 0
    images = sorted((tmp_path / "s" / "images").iterdir())
    masks = sorted((tmp_path / "s" / "masks").iterdir())
    assert [p.name for p in images] == ["synth_00000.jpg", "synth_00001.jpg", "synth_00002.jpg"]
    mask = np.asarray(Image.open(masks[0]))
    assert mask.shape == (48, 40) and mask.dtype == np.uint8 and mask.max() == 255
    assert ((mask > 0) & (mask < 255)).any()  # soft edges
    assert Image.open(images[0]).size == (40, 48)
    assert main(["data", "check", str(tmp_path / "s")]) == 0
    assert "3 pair(s), 0 problem(s)" in capsys.readouterr().out


def test_bad_dataset_is_one_line_and_exit_1(tmp_path, synth_train, capsys):
    root = tmp_path / "bad"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for path in (synth_train / "images").iterdir():
        (root / "images" / path.name).write_bytes(path.read_bytes())
    (root / "masks" / "stray.png").write_bytes(b"garbage")
    assert main(["data", "check", str(root)]) == 1
    assert capsys.readouterr().out.count("problem: ") == 7
    code = main(["train", "--data", str(root), "--iters", "1", "--arch", "u2net_test", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "7 problem(s)" in err and "no mask for image" in err
    assert main(["train", "--data", str(root), "--arch", "u2net_test"]) == 1
    assert "--epochs N or --iters N" in capsys.readouterr().err


def test_eval_any_runtime_artifact_writes_the_report(tmp_path, synth_val, tiny_checkpoint, capsys):
    out = tmp_path / "report"
    assert main(["eval", str(tiny_checkpoint), "--data", str(synth_val / "images"), str(synth_val / "masks"),
                 "--out", str(out)]) == 0  # fmt: skip
    printed = re.sub(" +", " ", capsys.readouterr().out)  # table cells are padded
    assert "| relaxed boundary F-beta |" in printed and "3 images" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["count"] == 3 and summary["backend"] == "torch"
    assert set(summary["metrics"]) == {"max_f", "mean_f", "adaptive_f", "mae", "weighted_f", "s_measure", "mean_e",
                                       "max_e", "relax_fb"}  # fmt: skip
    assert all(0.0 <= v <= 1.01 for v in summary["metrics"].values())
    for name in ("pr_curve.png", "fbeta_curve.png"):
        assert Image.open(out / name).size == (500, 400)
    assert (out / "per_image.csv").read_text().startswith("image,mae,relax_fb")
    assert "| MAE |" in re.sub(" +", " ", (out / "summary.md").read_text())


def test_ctrl_c_saves_a_checkpoint_and_exits_130(tmp_path, synth_train):
    """SIGINT to the whole process group, as a terminal sends it, with a loader worker running."""
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "u2deploy", "train", "--data", str(synth_train), "--arch", "u2net_test",
               "--iters", "100000", "--batch-size", "2", "--size", "64", "--workers", "1", "--log-every", "1",
               "--out", str(run_dir)]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not _logged_steps(run_dir, 2) and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
        os.killpg(process.pid, signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and "stopping after this step" in stderr
    from u2deploy.model import load_checkpoint

    loaded = load_checkpoint(run_dir / "last.pth")
    assert loaded.spec.arch == "u2net_test"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["step"] >= 2 and f"stopped at step {summary['step']}" in stdout


def _logged_steps(run_dir, count: int) -> bool:
    path = run_dir / "log.csv"
    return path.exists() and len(path.read_text().splitlines()) > count


@pytest.mark.parametrize("command", ["train", "eval", "data"])
def test_help(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert f"usage: u2deploy {command}" in capsys.readouterr().out

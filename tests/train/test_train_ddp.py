"""DistributedDataParallel smoke test: torchrun, two CPU processes (gloo), two iterations."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from u2deploy.train.runlog import read_log


def test_two_processes_train_with_one_writer(synth_train, synth_val, tmp_path):
    run_dir = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "u2deploy", "train", "--data", str(synth_train), "--val", str(synth_val), "--arch", "u2net_test",
               "--iters", "2", "--batch-size", "2", "--size", "64", "--crop", "56", "--workers", "0",
               "--log-every", "1", "--out", str(run_dir)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=240,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    info = json.loads((run_dir / "config.json").read_text())
    # 6 samples over 2 ranks: 3 each, 2 batches of 2 per epoch per rank
    assert info["world_size"] == 2 and info["steps_per_epoch"] == 2
    rows = read_log(run_dir / "log.jsonl")
    assert [(r["kind"], r["step"]) for r in rows] == [("train", 1), ("train", 2), ("val", 2)]  # rank 0 only
    assert rows[0]["img_per_s"] > 0 and result.stdout.count("finished at step 2/2") == 1
    payload = torch.load(run_dir / "last.pth", weights_only=True)
    assert payload["train_state"]["world_size"] == 2 and len(payload["train_state"]["rng"]) == 2
    assert not any(k.startswith("module.") for k in payload["state_dict"])
    assert sorted(p.name for p in run_dir.iterdir()) == ["best.pth", "config.json", "last.pth", "log.csv",
                                                         "log.jsonl", "summary.json"]  # fmt: skip

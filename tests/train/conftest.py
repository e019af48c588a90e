"""Fixtures for the trainer tests: small synthetic datasets and a fast, single-threaded torch.

The CPU is shared, and two OpenMP threads fighting other processes make a tiny training step
several times slower than one thread; every test here runs torch with one thread.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def synth_train(tmp_path_factory):
    """6 synthetic 64x64 pairs: 3 steps per epoch at batch 2."""
    from u2deploy.train.synth import generate

    return generate(tmp_path_factory.mktemp("synth") / "train", count=6, size=64, seed=0)


@pytest.fixture(scope="session")
def synth_val(tmp_path_factory):
    from u2deploy.train.synth import generate

    return generate(tmp_path_factory.mktemp("synth") / "val", count=3, size=64, seed=1)


@pytest.fixture()
def tiny_config(synth_train, tmp_path):
    """A factory of fast TrainConfigs (u2net_test, 64x64 rescale, 56x56 crop, no loader workers)."""
    from u2deploy.train.config import TrainConfig

    def make(**changes):
        options = dict(data=[str(synth_train)], arch="u2net_test", iters=4, batch_size=2, size=64, crop=56,
                       workers=0, out=str(tmp_path / "run"), save_every=1000, log_every=1)  # fmt: skip
        options.update(changes)
        return TrainConfig(**options)

    return make

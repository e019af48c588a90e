"""The numpy-level parts of `u2deploy.train` import without torch, OpenCV or the metrics packages."""

from __future__ import annotations

from tests.test_import_hygiene import assert_import_without_heavy_packages

#: data pairing/transforms, the synthetic generator, metrics and evaluation need no torch to import
LIGHT_TRAIN_MODULES = ["u2deploy.train", "u2deploy.train.data", "u2deploy.train.synth", "u2deploy.train.metrics",
                       "u2deploy.train.evaluate", "u2deploy.cli.train", "u2deploy.cli.evaluate", "u2deploy.cli.data"]


def test_light_train_modules_import_without_heavy_packages():
    assert_import_without_heavy_packages(LIGHT_TRAIN_MODULES)

"""The numpy-level parts of `u2deploy.train` import without torch, OpenCV or the metrics packages."""

from __future__ import annotations

from tests.test_import_hygiene import _run

#: data pairing/transforms, the synthetic generator, metrics and evaluation need no torch to import
LIGHT_TRAIN_MODULES = ["u2deploy.train", "u2deploy.train.data", "u2deploy.train.synth", "u2deploy.train.metrics",
                       "u2deploy.train.evaluate", "u2deploy.cli.train", "u2deploy.cli.evaluate", "u2deploy.cli.data"]


def test_light_train_modules_import_without_heavy_packages():
    result = _run(f"""
        import importlib
        for name in {LIGHT_TRAIN_MODULES!r}:
            importlib.import_module(name)
        heavy = [m for m in sys.modules if m.split(".")[0] in BLOCKED]
        assert not heavy, heavy
    """)
    assert result.returncode == 0, result.stderr

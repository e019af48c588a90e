"""The pipeline package and `u2deploy stream --help` work with no heavy package installed."""

from __future__ import annotations

from tests.test_import_hygiene import _run

PIPELINE_MODULES = ["u2deploy.pipeline", "u2deploy.pipeline.uri", "u2deploy.pipeline.gstreamer",
                    "u2deploy.pipeline.sources", "u2deploy.pipeline.sinks", "u2deploy.pipeline.effects",
                    "u2deploy.pipeline.pipeline", "u2deploy.cli.stream"]


def test_pipeline_imports_and_builds_strings_without_cv2_or_torch():
    result = _run(f"""
        import importlib
        for name in {PIPELINE_MODULES!r}:
            importlib.import_module(name)
        from u2deploy.pipeline import gstreamer, parse_sink, parse_source
        assert parse_source("csi://0").scheme == "csi" and parse_sink("rtp://h:5000").scheme == "rtp"
        assert gstreamer.csi_pipeline().startswith("nvarguscamerasrc")
        heavy = [m for m in sys.modules if m.split(".")[0] in BLOCKED]
        assert not heavy, heavy
    """)
    assert result.returncode == 0, result.stderr

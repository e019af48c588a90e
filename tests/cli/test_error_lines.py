"""User errors: one line of at most 160 characters, cut at a clause; -v (anywhere) prints them in full."""

from __future__ import annotations

import pytest

from u2deploy.cli import ERROR_WIDTH, main, one_line


def test_one_line_cuts_at_a_clause_boundary():
    text = "could not fetch 'x' (do this); tried: " + "; ".join(f"source {i}: cannot reach it" for i in range(20))
    line = one_line(text + "\nsecond line", 120)
    assert len(line) <= 120 and "\n" not in line and line.endswith("... (-v: all)")
    assert line.startswith("could not fetch 'x' (do this); tried: source 0: cannot reach it;"[:60])
    assert one_line("short\n  message", 120) == "short message"


def test_long_cli_error_is_short_and_verbose_is_whole(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("U2DEPLOY_HOME", str(tmp_path))
    kinds = ",".join(f"kind{i:02d}" for i in range(40))
    assert main(["cache", "--clear", kinds]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and len(err) <= ERROR_WIDTH and "(-v: all)" in err
    assert main(["cache", "--clear", kinds, "-v"]) == 1
    err = capsys.readouterr().err
    assert "kind39" in err and "Traceback" in err


def test_a_model_that_does_not_load_leaves_no_out_folder(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from PIL import Image

    model, image = tmp_path / "bad.onnx", tmp_path / "a.png"
    model.write_bytes(b"junk")
    Image.new("RGB", (8, 8)).save(image)
    assert main(["predict", str(model), str(image), "-o", str(tmp_path / "new" / "out")]) == 1
    assert "cannot load it" in capsys.readouterr().err and not (tmp_path / "new").exists()

"""Issue 14 item 6: an artifact whose files changed since export is refused at load, naming the file."""

from __future__ import annotations

import shutil

import pytest

from u2deploy import Runtime
from u2deploy.errors import ModelLoadError
from u2deploy.runtimes.base import sidecar_path
from u2deploy.runtimes.integrity import clear_cache


def _copy(result, folder) -> list:
    """The artifact's files and manifest in a folder of their own (the shared export stays intact)."""
    folder.mkdir()
    for path in result.files:
        shutil.copy2(path, folder / path.name)
    return [folder / path.name for path in result.files]


def _flip(path, count: int = 64) -> None:
    """Invert `count` bytes in the middle of the file, where weights are."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    for k in range(middle, middle + count):
        data[k] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(("fmt", "damaged"), [("onnx", ".onnx"), ("openvino", ".bin")])
def test_flipped_bytes_are_refused_in_one_line_naming_the_file(tiny_export, tmp_path, fmt, damaged):
    if fmt == "openvino":
        pytest.importorskip("openvino")
    files = _copy(tiny_export(fmt), tmp_path / "copy")
    model = files[0]
    with Runtime(model) as runtime:  # intact: loads, and says it checked
        assert runtime.describe()["integrity"].startswith("verified")
    target = next(path for path in files if path.suffix == damaged)
    _flip(target)
    clear_cache()
    with pytest.raises(ModelLoadError, match=rf"^{target.name}: changed since export") as caught:
        Runtime(model)
    assert "\n" not in str(caught.value) and len(str(caught.value)) <= 160
    with Runtime(model, verify_files=False) as runtime:  # the documented way out, recorded
        assert runtime.describe()["integrity"] == "skipped: verify_files=False"


def test_changed_file_is_caught_even_after_a_cached_verdict(tiny_export, tmp_path):
    """The cache is keyed by size and mtime: rewriting the file invalidates it."""
    model = _copy(tiny_export("onnx"), tmp_path / "copy")[0]
    Runtime(model).close()
    _flip(model)
    with pytest.raises(ModelLoadError, match="changed since export"):
        Runtime(model)


def test_file_without_manifest_loads_and_says_so(tiny_export, tmp_path):
    model = _copy(tiny_export("onnx"), tmp_path / "copy")[0]
    sidecar_path(model).unlink()
    with Runtime(model) as runtime:
        assert runtime.describe()["integrity"] == "not checked: no manifest beside the file"


def test_cli_names_the_changed_file_without_traceback(tiny_export, tmp_path, photos):
    import subprocess
    import sys

    from PIL import Image

    model = _copy(tiny_export("onnx"), tmp_path / "copy")[0]
    _flip(model)
    image = tmp_path / "coffee.png"
    Image.fromarray(photos["coffee"]).save(image)
    command = [sys.executable, "-m", "u2deploy", "predict", str(model), str(image), "-o", str(tmp_path / "out")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert f"{model.name}: changed since export" in done.stderr
    done = subprocess.run([*command, "--no-verify-files"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def test_verdict_is_cached_on_disk_across_processes(tiny_export, tmp_path, monkeypatch):
    """A second load of the unchanged file (a new process: memory cache empty) costs no hash."""
    from u2deploy.runtimes import integrity

    monkeypatch.setenv("U2DEPLOY_HOME", str(tmp_path / "home"))
    model = _copy(tiny_export("onnx"), tmp_path / "copy")[0]
    Runtime(model).close()
    assert (tmp_path / "home" / "integrity.json").is_file()
    integrity._VERIFIED.clear()  # as in a new process

    def no_hash(path):
        raise AssertionError(f"{path} hashed again")

    monkeypatch.setattr(integrity, "sha256_file", no_hash)
    with Runtime(model) as runtime:
        assert runtime.describe()["integrity"].startswith("verified")
    _flip(model)  # a changed file misses the cache and is hashed (here: the stand-in raises)
    with pytest.raises(AssertionError, match="hashed again"):
        Runtime(model)

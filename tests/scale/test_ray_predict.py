"""`predict --ray` on a real local Ray cluster writes exactly what local `predict` writes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray", reason="ray is not installed (pip install 'u2deploy[ray]')")
pytestmark = pytest.mark.onnxruntime


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)  # never join another one
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, photos):
    """Two folders (a stem that clashes across them) and one file that is not an image."""
    from PIL import Image

    root = tmp_path_factory.mktemp("ray_inputs")
    first, second = root / "a", root / "b"
    first.mkdir(), second.mkdir()
    for name in ("chelsea", "coffee", "rocket"):
        Image.fromarray(photos[name]).resize((96, 72)).save(first / f"{name}.jpg", quality=95)
    Image.fromarray(photos["astronaut"]).resize((80, 80)).save(second / "chelsea.png")  # clashes with a/chelsea
    (second / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return [str(first), str(second)]


def run_cli(args: list[str], capsys) -> tuple[int, list[str]]:
    from u2deploy.cli import main

    code = main(args)
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.startswith("skipped:")]


def assert_same_outputs(local: Path, remote: Path) -> None:
    from PIL import Image

    names = sorted(p.name for p in local.iterdir())
    assert names == sorted(p.name for p in remote.iterdir())
    assert "chelsea.png" in names and "chelsea_2.png" in names and len(names) == 4
    for name in names:
        expected, got = np.asarray(Image.open(local / name)), np.asarray(Image.open(remote / name))
        np.testing.assert_array_equal(got, expected, err_msg=name)


@pytest.mark.parametrize("output", ["mask", "cutout"])
def test_ray_predict_equals_local_predict(ray_cluster, tiny_export, inputs, tmp_path, capsys, output):
    model = str(tiny_export("onnx", dynamic=("batch",), verify=False).path)
    local_code, local_skipped = run_cli(["predict", model, *inputs, "-o", str(tmp_path / "local"),
                                         "--output", output, "--batch", "2"], capsys)  # fmt: skip
    ray_code, ray_skipped = run_cli(["predict", model, *inputs, "-o", str(tmp_path / "ray"), "--output", output,
                                     "--batch", "2", "--ray-actors", "2", "--ray"], capsys)  # actors take every CPU  # fmt: skip
    assert local_code == ray_code == 1  # the broken file is skipped and makes the exit code 1
    assert ray_skipped == local_skipped and len(local_skipped) == 1 and "broken.jpg" in local_skipped[0]
    assert_same_outputs(tmp_path / "local", tmp_path / "ray")


def test_python_api_and_uri_inputs(ray_cluster, tiny_export, inputs, tmp_path):
    from u2deploy.scale import ray_predict

    model = tiny_export("onnx", dynamic=("batch",), verify=False).path
    uri = Path(inputs[0]).as_uri()  # file:///...: the pyarrow filesystem path
    result = ray_predict(model, [uri], tmp_path / "out", batch_size=3, report=False)
    assert result.written == 3 and result.skipped == []
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["chelsea.png", "coffee.png", "rocket.png"]


def test_bad_requests_fail_in_one_line(tmp_path, capsys):
    from u2deploy.cli import main
    from u2deploy.errors import InputError
    from u2deploy.scale import ray_predict

    with pytest.raises(InputError, match="no such file or folder"):
        ray_predict("u2net", [str(tmp_path / "missing")], tmp_path / "out")
    with pytest.raises(InputError, match="mix filesystems"):
        ray_predict("u2net", [str(tmp_path), "s3://bucket/x"], tmp_path / "out")
    assert main(["predict", "u2net", str(tmp_path / "missing"), "-o", str(tmp_path), "--ray"]) == 1
    assert "no such file or folder" in capsys.readouterr().err
    (tmp_path / "a.png").write_bytes(b"")
    dead = f"127.0.0.1:{_free_port()}"  # nobody listens: a one-line error in seconds, not Ray's minutes of retries
    assert main(["predict", "u2net", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), f"--ray={dead}"]) == 1
    assert f"no Ray cluster answers at {dead}" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_against_a_separately_started_head(tiny_export, inputs, tmp_path):
    """`ray start --head` in its own process; the CLI joins it by address (and leaves it running)."""
    model = str(tiny_export("onnx", dynamic=("batch",), verify=False).path)
    port = _free_port()
    ray_bin = shutil.which("ray", path=os.path.dirname(sys.executable))
    # A throwaway local cluster: Ray's token authentication is switched off for both sides.
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    head = subprocess.Popen([ray_bin, "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                             "--include-dashboard=false"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        command = [sys.executable, "-m", "u2deploy", "predict", model, inputs[0], "-o", str(tmp_path / "ray"),
                   f"--ray=127.0.0.1:{port}"]  # fmt: skip
        deadline, done = time.monotonic() + 240, None
        while time.monotonic() < deadline:  # the head takes a few seconds to accept drivers
            done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
            if done.returncode == 0 or "wrote" in done.stdout:
                break
            time.sleep(3)
        assert done is not None and done.returncode == 0, done.stderr[-2000:]
        assert "wrote 3 mask(s)" in done.stdout
        assert sorted(p.name for p in (tmp_path / "ray").iterdir()) == ["chelsea.png", "coffee.png", "rocket.png"]
    finally:
        os.killpg(head.pid, 15)  # `ray start --block` stops the processes it started on SIGTERM
        head.wait(timeout=60)
        current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"  # `ray start` left its address here
        if current.is_file() and current.read_text().strip().endswith(f":{port}"):
            current.unlink()

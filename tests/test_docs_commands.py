"""Every shell command of README.md and docs/*.md parses, and the CPU-runnable ones run as written.

* `test_every_u2deploy_command_parses` (fast, always): each `u2deploy ...` line goes through the
  real argument parser, so a renamed option or subcommand fails here, skipped lines included.
* `test_docs_commands_run_as_written` (slow, real weights): the lines of each document run in
  order in one folder seeded with the inputs the docs name (photos/, shot.jpg, a video, ...).
  By default the quick ones run (weights, info, doctor, data, predict on a weights name or a file
  an earlier line made); `U2DEPLOY_DOCS_RUN=all` also runs exports, INT8, bench, streams and
  eval (tens of minutes on 2 cores).

Opt-outs (see `tests/docs_commands.py`): a `# ...; not run: REASON` comment on the line, or
`<!-- not run: REASON -->` just before the block; `SKIP` below for the rest.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .docs_commands import ROOT, Command, doc_files, extract

COMMANDS = [command for path in doc_files() for command in extract(path)]

_GPU = "needs an NVIDIA GPU with TensorRT (none here; see docs/tensorrt.md, what is verified where)"
_U2NETP = "needs the u2netp weights, which this machine cannot download (u2deploy weights get u2netp --from u2netp.pth)"
#: command (as `" ".join(argv)`, comments dropped) -> why it cannot run on this machine or in CI
SKIP = {
    'python3 -m venv .venv && . .venv/bin/activate && pip install -e .[all,dev] -c constraints-cpu.txt '
    '--extra-index-url ${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}':
        "the install line: .ci/run runs it in a fresh virtual environment (tests/test_readme.py)",
    "python -m pytest -q": "the test suite itself, which this test is part of",
    "pip install -e .[all,dev,tensorrt]": "the GPU install: TensorRT wheels need an NVIDIA GPU",
    "u2deploy bench": "the full main job (~10 min on 2 cores); U2DEPLOY_DOCS_RUN=all runs it",
    "u2deploy bench --runs 30 --out benchmarks/results/bench": "rewrites the recorded results; run by hand",
    "u2deploy bench --paper --out benchmarks/results/bench": "rewrites the recorded results; run by hand",
    "u2deploy bench u2netp --batch 1,4 --calib my_photos/ --calib-count 64": _U2NETP,
    "u2deploy export u2net --fmt trt --int8 --calib photos/": _GPU,
    "u2deploy export u2net --fmt trt --fp16": _GPU,
    "u2deploy export u2net --fmt trt --fp16 --dynamic 1:4:8 --workspace 4 --opt-level 5": _GPU,
    "u2deploy export u2netp --fmt trt --fp16 --dla-core 0": _GPU + "; a Jetson's DLA",
    "u2deploy predict u2net_320_fp16.engine photos/ -o masks/": _GPU,
    "python benchmarks/gpu_check.py --model u2net --calib photos/": _GPU,
    "u2deploy stream u2netp.engine --source csi://0 --effect blur": "needs a Jetson CSI camera and a TensorRT engine",
    "u2deploy stream u2netp.onnx --source /dev/video0 --sink out.mp4 --headless --stats": "needs a USB camera",
    "u2deploy stream u2netp.onnx --source rtsp://cam.local/live --sink rtp://10.0.0.2:5000 --effect replace:beach.jpg":
        "needs an RTSP camera on the network",
    "u2deploy stream u2netp.onnx --source clip.mp4 --sink out.mp4 --sink display://0": _U2NETP + "; and a display",
    "u2deploy train --data data/train --val data/val --arch u2netp --iters 2000 --out runs/p":
        "2000 iterations take about an hour on 2 cores (tests/train runs the same command with --iters 2)",
    "u2deploy eval runs/p/best.pth --data data/val --out reports/p": "needs runs/p/best.pth from the train line",
    "u2deploy export runs/p/best.pth --fmt onnx -o p.onnx": "needs runs/p/best.pth from the train line",
    "u2deploy eval p.onnx --data data/val": "needs p.onnx, exported from the train line's checkpoint",
    "u2deploy export runs/p/best.pth --fmt onnx --size 512 --dynamic hw --outputs all -o p.onnx":
        "needs runs/p/best.pth from docs/train.md's train line",
}

#: subcommands quick enough for the default run
_QUICK = {"weights", "info", "doctor", "data", "cache"}


def _key(command: Command) -> str:
    return " ".join(command.argv)


def _skip_reason(command: Command) -> str | None:
    return command.skip or SKIP.get(_key(command))


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.argv[:1] == ["u2deploy"]], ids=lambda c: c.id)
def test_every_u2deploy_command_parses(command):
    from u2deploy.cli import build_parser

    try:
        args = build_parser().parse_args(command.argv[1:])
    except SystemExit:
        pytest.fail(f"{command.id}: `{command.text}` does not parse")
    assert args.command == command.argv[1]


def test_every_command_runs_or_says_why_not():
    for command in COMMANDS:
        assert command.argv, command.id
        if command.argv[0] != "u2deploy":
            assert _skip_reason(command), f"{command.id}: `{command.text}` is not u2deploy: add it to SKIP with why"
    keys = {_key(command) for command in COMMANDS}
    assert not set(SKIP) - keys, f"SKIP entries no document has any more: {sorted(set(SKIP) - keys)}"


def test_extractor_reads_continuations_and_opt_outs(tmp_path, monkeypatch):
    from tests import docs_commands

    monkeypatch.setattr(docs_commands, "ROOT", tmp_path)
    page = tmp_path / "page.md"
    page.write_text("text\n```bash\nu2deploy info u2net \\\n  --size 320   # cost\n# a comment\n"
                    "u2deploy doctor   # probe; not run: needs a GPU\n```\n"
                    "<!-- not run: needs a Jetson -->\n```sh\nu2deploy stream x.engine\n```\n")
    commands = extract(page)
    assert [(c.line, c.argv, c.skip) for c in commands] == [
        (3, ["u2deploy", "info", "u2net", "--size", "320"], None),
        (6, ["u2deploy", "doctor"], "needs a GPU"),
        (10, ["u2deploy", "stream", "x.engine"], "needs a Jetson")]


# --------------------------------------------------------------------------------------------
# Running them


def _seed(folder: Path) -> None:
    """The inputs the docs name: real photos, a calibration folder, two short videos."""
    from PIL import Image

    from u2deploy.samples import CALIBRATION_PHOTOS, PARITY_PHOTOS, sample_photos

    photos = sample_photos(PARITY_PHOTOS)
    for sub in ("photos", "more", "my_photos"):
        (folder / sub).mkdir()
    for name, array in photos.items():
        Image.fromarray(array).save(folder / "photos" / f"{name}.jpg")
    for name in ("shot", "photo", "face", "selfie", "team"):
        Image.fromarray(photos["astronaut"]).save(folder / f"{name}.jpg")
    for name in list(PARITY_PHOTOS)[:2]:
        Image.fromarray(photos[name]).save(folder / "more" / f"{name}.jpg")
    for name, array in sample_photos(CALIBRATION_PHOTOS[:8]).items():
        Image.fromarray(array if array.ndim == 3 else array[..., None].repeat(3, -1)).save(folder / "my_photos" / f"{name}.jpg")
    _video(folder / "talk.mp4", photos["chelsea"])
    shutil.copy(folder / "talk.mp4", folder / "clip.mp4")


def _video(path: Path, frame) -> None:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 120))
    small = cv2.resize(frame[..., ::-1], (160, 120))
    for _ in range(6):
        writer.write(small)
    writer.release()


def _quick(command: Command, folder: Path) -> bool:
    argv = command.argv
    if argv[1] in _QUICK:
        return argv[1:3] != ["weights", "get"] or "--from" not in argv
    if argv[1] == "predict":
        from u2deploy.weights import KNOWN_WEIGHTS, is_cached

        return (argv[2] in KNOWN_WEIGHTS and is_cached(argv[2])) or (folder / argv[2]).is_file()
    return False


def _run(command: Command, folder: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(["bash", "-c", command.text], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=1800)  # fmt: skip
    assert done.returncode == 0, f"{command.id}: `{command.text}` exited {done.returncode}:\n{done.stderr[-3000:]}"


@pytest.mark.slow
@pytest.mark.weights
@pytest.mark.parametrize("doc", [str(path.relative_to(ROOT)) for path in doc_files()])
def test_docs_commands_run_as_written(doc, tmp_path, u2net_checkpoint):
    pytest.importorskip("torch")
    pytest.importorskip("cv2")
    everything = os.environ.get("U2DEPLOY_DOCS_RUN") == "all"
    commands = [c for c in COMMANDS if c.doc == doc and c.argv[0] == "u2deploy" and not _skip_reason(c)]
    _seed(tmp_path)
    ran = 0
    for command in commands:
        if everything or _quick(command, tmp_path):
            _run(command, tmp_path)
            ran += 1
    if not ran:
        pytest.skip(f"{doc}: no quick command (U2DEPLOY_DOCS_RUN=all runs its {len(commands)} long ones)")

"""Bulk inference on Ray Data: `u2deploy predict MODEL INPUTS -o OUT --ray [ADDRESS]` and `ray_predict`.

The driver lists the images (local files, or folders/files behind any URI pyarrow understands:
`s3://`, `gs://`, `file://`, ...) and gives each its output name up front, with the same rule as
local `predict` (`STEM.png`, `STEM_2.png` on a clash), so outputs never depend on which worker
ran first. Ray Data reads the bytes; a `map_batches` actor pool runs the model, each actor holding
one `Runtime` loaded once; the actors write the outputs themselves and return only
(path, error) rows, so nothing large travels back to the driver. A file that cannot be decoded is
reported in one line, exactly as local `predict` reports it.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._deps import require
from ..errors import BackendError, InputError, UnsupportedOptionError, first_line
from ..processing import IMAGE_EXTENSIONS

__all__ = ["RayPredictResult", "ray_predict", "connect", "list_images", "plan_names", "PredictActor", "GPU_SUFFIXES"]

OUTPUTS = ("mask", "cutout", "composite")
#: artifacts that run only on a GPU, so each actor asks Ray for one by default
GPU_SUFFIXES = (".engine", ".plan")


@dataclass
class RayPredictResult:
    """What a run wrote: the number of outputs, and one line per input that was skipped."""

    written: int
    skipped: list[str] = field(default_factory=list)
    out: str = ""


def _is_uri(item: str) -> bool:
    return "://" in item


def _filesystem(items: Sequence[str]) -> tuple[Any, list[str]]:
    """One pyarrow filesystem for all `items` and their paths on it (local paths made absolute)."""
    from pyarrow import fs as pafs

    if not any(_is_uri(item) for item in items):
        return pafs.LocalFileSystem(), [os.path.abspath(item) for item in items]
    schemes = {item.split("://", 1)[0] if _is_uri(item) else "local" for item in items}
    if len(schemes) > 1:
        raise InputError(f"inputs mix filesystems ({', '.join(sorted(schemes))}); run one job per filesystem")
    try:
        filesystem, _ = pafs.FileSystem.from_uri(items[0])
        return filesystem, [pafs.FileSystem.from_uri(item)[1] for item in items]
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError subclasses for unknown schemes and bad URIs
        raise InputError(f"{items[0]}: pyarrow cannot open this URI ({str(exc).splitlines()[0]})") from None


def list_images(items: Sequence[str | os.PathLike]) -> tuple[Any, dict[str, str]]:
    """Files and folders (their images, sorted) -> (filesystem, {path on it: path as the user sees it}).

    The order is the order given; folders are not searched recursively (as in local `predict`).
    """
    from pyarrow import fs as pafs

    filesystem, paths = _filesystem([str(item) for item in items])
    found: dict[str, str] = {}
    for item, path in zip(items, paths, strict=True):
        info = filesystem.get_file_info(path)
        if info.type == pafs.FileType.File:
            found[path] = str(item)
        elif info.type == pafs.FileType.Directory:
            inside = filesystem.get_file_info(pafs.FileSelector(path, recursive=False))
            images = sorted(i.path for i in inside if i.is_file and Path(i.path).suffix.lower() in IMAGE_EXTENSIONS)
            if not images:
                raise InputError(f"{item}: folder holds no images ({', '.join(IMAGE_EXTENSIONS)})")
            found.update({image: _shown(str(item), image) for image in images})
        else:
            raise InputError(f"{item}: no such file or folder")
    return filesystem, found


def _shown(folder: str, path: str) -> str:
    """A listed file as local `predict` names it: the folder as given joined with the file name."""
    return str(Path(folder) / Path(path).name) if not _is_uri(folder) else f"{folder.rstrip('/')}/{Path(path).name}"


def plan_names(paths: Sequence[str]) -> dict[str, str]:
    """Input path -> output file name, as local `predict` names them (`a.png`, then `a_2.png`)."""
    from .._io import output_names

    return dict(zip(paths, output_names(list(paths)), strict=True))


def _render(kind: str, image: np.ndarray, saliency: np.ndarray, background: Any) -> bytes:
    """The PNG local `predict` writes for `kind` (`processing.render` and Pillow's encoder)."""
    from PIL import Image

    from .. import processing

    buffer = io.BytesIO()
    Image.fromarray(processing.render(kind, image, saliency, background)).save(buffer, format="PNG")
    return buffer.getvalue()


class PredictActor:
    """One Ray Data actor: loads the `Runtime` once, then predicts and writes batches of images.

    Args:
        model: the artifact (a path every node can read) or a weights name.
        out: output folder, local or a URI.
        names: input path -> output file name.
        output: `mask`, `cutout` or `composite`.
        background: composite background (RGB tuple or image array).
        runtime: `Runtime` keyword arguments (backend, device, mode, task, input_size, threads, ...).
    """

    def __init__(self, model: str, out: str, names: dict[str, str], output: str, background: Any,
                 runtime: dict[str, Any]) -> None:
        from ..runtimes.runtime import Runtime

        self.runtime = Runtime(model, **runtime)
        self.output, self.background, self.names = output, background, names
        self.filesystem, (self.root,) = _filesystem([out])

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from .. import processing

        paths = [str(p) for p in batch["path"]]
        errors = [""] * len(paths)
        images, good = [], []
        for i, (path, data) in enumerate(zip(paths, batch["bytes"], strict=True)):
            try:
                images.append(processing.load_image(bytes(data)))
                good.append(i)
            except InputError as exc:  # name the file, as local predict does, not the in-memory buffer
                errors[i] = str(exc).replace("<bytes>", path, 1)
        maps = self.runtime.predict(images) if images else []
        for i, image, saliency in zip(good, images, maps, strict=True):
            self._write(self.names[paths[i]], _render(self.output, image, saliency, self.background))
        return {"path": np.array(paths, dtype=object), "error": np.array(errors, dtype=object)}

    def _write(self, name: str, data: bytes) -> None:
        if self.filesystem.type_name == "local":
            from .._io import atomic_write_bytes

            atomic_write_bytes(Path(self.root) / name, data)
            return
        with self.filesystem.open_output_stream(f"{self.root.rstrip('/')}/{name}") as stream:  # atomic on close
            stream.write(data)


def _check_reachable(address: str | None) -> None:
    """Fail in seconds on a host:port nobody listens on (`ray.init` retries such an address for minutes)."""
    import socket

    if not address or address in ("auto", "local"):
        return
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not port.isdigit():
        raise InputError(f"--ray {address}: give the cluster as HOST:PORT (e.g. 10.0.0.5:6379) or ray://HOST:PORT")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except OSError as exc:
        raise BackendError(f"no Ray cluster answers at {address} ({exc.strerror or exc}); start one with "
                           "`ray start --head` or fix the address") from None


def connect(address: str | None, feature: str = "--ray") -> bool:
    """Join the cluster at `address` (None: `$RAY_ADDRESS`, a running local one, or a new local Ray)
    unless this process already is connected; True when this call connected."""
    ray = require("ray", feature)
    _check_reachable(address)  # a dead address is an error even when this process is already connected
    if ray.is_initialized():
        return False
    if not address:
        _check_reachable(os.environ.get("RAY_ADDRESS"))
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    except ConnectionError as exc:
        fix = ("check the address and the cluster's auth token, or drop it for a local Ray" if address else
               "$RAY_ADDRESS or a cluster `ray start` left is gone: unset it or run `ray stop`")  # fmt: skip
        raise BackendError(f"cannot join the Ray cluster at {address or 'the default address'} "
                           f"({first_line(exc, 80)}); {fix}") from exc
    return True


def _check(output: str, concurrency: int, batch_size: int, num_gpus: float | None) -> None:
    if output not in OUTPUTS:
        raise UnsupportedOptionError(f"--output {output}: use {', '.join(OUTPUTS)}")
    if concurrency < 1 or batch_size < 1:
        raise InputError("--ray-actors and --batch must be at least 1")
    if num_gpus is not None and num_gpus < 0:
        raise InputError(f"--ray-gpus {num_gpus}: must be 0 or more")


def ray_predict(model: str | os.PathLike, inputs: Sequence[str | os.PathLike], out: str | os.PathLike, *,
                output: str = "mask", background: Any = (255, 255, 255), address: str | None = None,
                concurrency: int = 1, batch_size: int = 8, num_gpus: float | None = None, num_cpus: float = 1,
                report: bool = True, **runtime: Any) -> RayPredictResult:  # fmt: skip
    """Run `predict` over `inputs` on a Ray cluster; outputs are the files local `predict` writes.

    Args:
        model: the artifact (readable at the same path on every node) or a weights name.
        inputs: image files and folders, local or URIs pyarrow understands (one filesystem per run).
        out: output folder, local or a URI; created when local.
        output: `mask`, `cutout` or `composite`.
        background: composite background, an (R, G, B) tuple or an image array.
        address: Ray cluster address; None starts a local one (or joins `RAY_ADDRESS`). Ignored when
            Ray is already initialised in this process.
        concurrency: number of actors, each with its own `Runtime`.
        batch_size: images per `map_batches` batch (and per inference call).
        num_gpus: GPUs per actor; None gives 1 for TensorRT engines and 0 otherwise.
        num_cpus: CPUs each actor reserves.
        report: print one `skipped: ...` line per unreadable input on stderr.
        **runtime: `Runtime` keyword arguments (backend, device, mode, task, input_size, threads, ...).
    """
    _check(output, concurrency, batch_size, num_gpus)
    require("ray", "--ray (Ray Data bulk inference)")
    require("pyarrow", "--ray (Ray Data bulk inference)")
    _, shown = list_images(inputs)
    paths = list(shown)
    names = plan_names(paths)
    out = str(out)
    if not _is_uri(out):
        Path(out).mkdir(parents=True, exist_ok=True)
    if num_gpus is None:
        num_gpus = 1 if Path(str(model)).suffix.lower() in GPU_SUFFIXES else 0
    started = connect(address, "--ray (Ray Data bulk inference)")
    try:
        errors = _run(str(model), inputs, paths, names, out, output, background, concurrency, batch_size, num_gpus,
                      num_cpus, runtime)  # fmt: skip
    finally:
        if started:
            require("ray").shutdown()
    # in input order and naming each file as the user gave it, like local predict
    skipped = [errors[path].replace(path, shown[path], 1) for path in paths if errors.get(path)]
    if report:
        for line in skipped:
            print(f"skipped: {line}", file=sys.stderr)
    return RayPredictResult(len(paths) - len(skipped), skipped, out)


def _run(model: str, inputs: Sequence[Any], paths: list[str], names: dict[str, str], out: str, output: str,
         background: Any, concurrency: int, batch_size: int, num_gpus: float, num_cpus: float,
         runtime: dict[str, Any]) -> dict[str, str]:  # fmt: skip
    """Read with Ray Data, predict and write in the actor pool; returns path -> error for the bad ones."""
    ray = require("ray", "--ray (Ray Data bulk inference)")
    filesystem = _filesystem([str(item) for item in inputs])[0]
    # Reads reserve no CPU: they are I/O, and actors holding every CPU would otherwise starve them (a hang).
    dataset = ray.data.read_binary_files(paths, include_paths=True, filesystem=filesystem,
                                         ray_remote_args={"num_cpus": 0})  # fmt: skip
    results = dataset.map_batches(
        PredictActor, batch_size=batch_size, concurrency=concurrency, num_gpus=num_gpus, num_cpus=num_cpus,
        batch_format="numpy", fn_constructor_kwargs={"model": model, "out": out, "names": names, "output": output,
                                                     "background": background, "runtime": runtime})  # fmt: skip
    errors: dict[str, str] = {}
    for batch in results.iter_batches(batch_format="numpy", batch_size=None):
        errors.update({str(p): str(e) for p, e in zip(batch["path"], batch["error"], strict=True) if e})
    return errors

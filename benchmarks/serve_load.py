"""`u2deploy serve` under load vs `rembg s`: throughput and p50/p99 latency at concurrency 1, 4 and 16.

  python benchmarks/serve_load.py --artifact u2net_320_int8_dynamic.xml u2net_320_fp32_dynamic.xml --onnx u2net_320_fp32_dynamic.onnx
  python benchmarks/serve_load.py --artifact u2net.xml --concurrency 1 4 16 --requests 2

Servers, started one at a time on 127.0.0.1 and driven through the same rembg-compatible endpoint
(`POST /api/remove`, RGBA PNG cut-out), so every one of them decodes, segments and encodes:

* ``u2deploy ARTIFACT, batching``: `u2deploy serve ARTIFACT --max-batch 8 --max-delay-ms 5`, for
  each --artifact.
* ``u2deploy ARTIFACT, no batching``: the first artifact with `--max-batch 1`.
* ``u2deploy ONNX FP32, batching`` (with --onnx): the precision rembg runs, to separate the
  serving gain from the precision gain.
* ``rembg s``: `rembg s --no-ui` with its `u2net` session on the same u2net.onnx weights u2deploy
  fetched (see u2deploy/bench/peers.py); rembg's defaults otherwise.

Each concurrency level sends `--requests` x concurrency requests (at least 8) from that many
client threads with keep-alive connections, cycling through the five real test photos as JPEG.
The clients run on the same machine as the server and take some of its CPU. Quality of the
artifact comes from its export manifest (mean IoU vs PyTorch FP32 on the parity photos).

Results go to benchmarks/results/serve_load.json and .md with the machine description and the
load average before and after.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine_info  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
PHOTOS = ("astronaut", "chelsea", "coffee", "motorcycle", "rocket")


def photo_files() -> list[bytes]:
    from PIL import Image
    from skimage import data

    files = []
    for name in PHOTOS:
        array = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
        buffer = io.BytesIO()
        Image.fromarray(array).convert("RGB").save(buffer, "JPEG", quality=92)
        files.append(buffer.getvalue())
    return files


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(command: list[str], url: str, probe: str, env: dict[str, str]) -> subprocess.Popen:
    import httpx

    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command[:3]} exited: {process.stderr.read().decode()[-1500:]}")
        try:
            if httpx.get(url + probe, timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"{command[:3]} did not get ready in 300 s")


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def drive(url: str, files: list[bytes], concurrency: int, total: int) -> dict:
    """`total` requests from `concurrency` keep-alive clients; throughput and latency percentiles."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(index: int) -> None:
        with httpx.Client(base_url=url, timeout=300) as session:
            for i in range(index, total, concurrency):
                started = time.perf_counter()
                try:
                    reply = session.post("/api/remove", files={"file": ("photo.jpg", files[i % len(files)], "image/jpeg")},
                                         data={"model": "u2net", "a": "false", "om": "false", "ppm": "false"})
                except httpx.TransportError as exc:
                    with lock:
                        errors.append(type(exc).__name__)
                    continue
                elapsed = time.perf_counter() - started
                with lock:
                    (latencies if reply.status_code == 200 else errors).append(elapsed if reply.status_code == 200 else reply.status_code)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    ordered = sorted(latencies) or [float("nan")]
    p99_index = min(len(ordered) - 1, max(0, round(0.99 * len(ordered)) - 1))
    return {"concurrency": concurrency, "requests": total, "errors": len(errors), "wall_s": round(wall, 2),
            "throughput_rps": round(len(latencies) / wall, 3), "p50_ms": round(statistics.median(ordered) * 1000, 1),
            "p99_ms": round(ordered[p99_index] * 1000, 1)}


def rembg_env() -> tuple[dict[str, str], str]:
    from u2deploy.bench.peers import _seed_rembg_home
    from u2deploy.weights import cache_dir, download_path

    weights = _seed_rembg_home(download_path("u2net"), cache_dir() / "rembg")  # sets REMBG_HOME when it can
    return dict(os.environ), weights


def servers(args: argparse.Namespace) -> list[dict]:
    serve = [sys.executable, "-m", "u2deploy", "serve"]
    common = ["--log-level", "warning", "--max-queue", "256", "--timeout", "300"]
    found = [{"name": f"u2deploy {Path(artifact).name}, batching", "model": artifact,
              "command": [*serve, artifact, "--max-batch", str(args.max_batch), "--max-delay-ms", "5", *common]}
             for artifact in args.artifact]
    first = args.artifact[0]
    found.insert(1, {"name": f"u2deploy {Path(first).name}, no batching", "model": first,
                     "command": [*serve, first, "--max-batch", "1", *common]})
    if args.onnx:
        found.append({"name": f"u2deploy {Path(args.onnx).name}, batching", "model": args.onnx,
                      "command": [*serve, args.onnx, "--max-batch", str(args.max_batch), "--max-delay-ms", "5", *common]})
    if not args.no_rembg:
        found.append({"name": "rembg s (u2net, ONNX Runtime FP32)", "model": "u2net", "rembg": True,
                      "command": ["rembg", "s", "--no-ui", "--host", "127.0.0.1", "--log_level", "warning"]})
    return found


def manifest_quality(model: str) -> dict | None:
    path = Path(str(model) + ".json")
    if not path.is_file():
        return None
    manifest = json.loads(path.read_text())
    summary = manifest.get("parity", {}).get("summary", {})
    return {"precision": manifest.get("artifact", {}).get("precision"), "mean_iou_vs_torch_fp32": summary.get("mean_iou"),
            "min_iou_vs_torch_fp32": summary.get("min_iou")}


def run_server(spec: dict, files: list[bytes], args: argparse.Namespace) -> dict:
    port = free_port()
    env, weights = rembg_env() if spec.get("rembg") else (dict(os.environ), None)
    command = [*spec["command"], "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    process = start_server(command, url, "/api" if spec.get("rembg") else "/readyz", env)
    try:
        drive(url, files, 2, 4)  # warm-up: rembg loads its session on the first request
        rows = [drive(url, files, c, max(8, args.requests * c)) for c in args.concurrency]
    finally:
        stop_server(process)
    result = {"name": spec["name"], "command": " ".join(spec["command"][2:] if spec["command"][0] == sys.executable
                                                        else spec["command"]), "rows": rows}
    if weights:
        result["weights"] = weights
    quality = None if spec.get("rembg") else manifest_quality(spec["model"])
    if quality:
        result["quality"] = quality
    print(json.dumps(result), flush=True)
    return result


def markdown(record: dict) -> str:
    machine = record["machine"]
    lines = [
        "# `u2deploy serve` under load vs `rembg s`",
        "",
        f"Recorded {record['recorded']} by `python benchmarks/serve_load.py {record['argv']}`; machine: {machine.get('cpu')}, "
        f"{machine.get('cores')} cores, flags {', '.join(machine.get('cpu_flags', []))}. **The machine was shared** with other "
        f"jobs: load average before/after {record['load_before']} / {record['load_after']} (1, 5, 15 min), so absolute "
        "numbers are noisy; the servers ran one after another in one run, and the clients ran on the same CPUs.",
        "",
        "| server | concurrency | requests | errors | throughput req/s | p50 ms | p99 ms | p99/p50 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for server in record["servers"]:
        for row in server["rows"]:
            lines.append(f"| {server['name']} | {row['concurrency']} | {row['requests']} | {row['errors']} | "
                         f"{row['throughput_rps']} | {row['p50_ms']} | {row['p99_ms']} | {row['p99_ms'] / row['p50_ms']:.2f} |")
    lines += ["", *record["summary"], ""]
    for server in record["servers"]:
        extra = server.get("quality") or server.get("weights")
        if extra:
            lines.append(f"- {server['name']}: {json.dumps(extra)}")
    return "\n".join(lines) + "\n"


def summarise(record: dict) -> list[str]:
    by_name = {server["name"]: {row["concurrency"]: row for row in server["rows"]} for server in record["servers"]}
    rembg = next((rows for name, rows in by_name.items() if name.startswith("rembg")), None)
    lines = []
    for name, rows in by_name.items():
        if name.startswith("rembg"):
            continue
        if rembg and 16 in rows and 16 in rembg:
            ratio = rows[16]["throughput_rps"] / rembg[16]["throughput_rps"]
            lines.append(f"- {name}: {ratio:.2f}x rembg's throughput at concurrency 16 (goal >= 3x).")
        if 4 in rows:
            lines.append(f"- {name}: p99/p50 at concurrency 4 = {rows[4]['p99_ms'] / rows[4]['p50_ms']:.2f} (goal <= 2).")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", required=True, nargs="+",
                        help="artifacts to serve with batching (e.g. the OpenVINO INT8 IR, dynamic batch); the first also without")
    parser.add_argument("--onnx", default=None, help="also serve this FP32 ONNX (rembg's precision)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=2, help="requests per client at each level (at least 8 in all)")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--no-rembg", action="store_true", help="skip rembg s")
    parser.add_argument("--out", default=str(RESULTS / "serve_load"), help="results path without suffix")
    args = parser.parse_args()
    files = photo_files()
    record = {"recorded": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "argv": " ".join(sys.argv[1:]),
              "machine": machine_info(), "load_before": [round(x, 2) for x in os.getloadavg()], "servers": []}
    for spec in servers(args):
        record["servers"].append(run_server(spec, files, args))
    record["load_after"] = [round(x, 2) for x in os.getloadavg()]
    record["summary"] = summarise(record)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(record))
    print(markdown(record))


if __name__ == "__main__":
    main()

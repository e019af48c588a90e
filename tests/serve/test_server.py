"""A real `u2deploy serve` process on 127.0.0.1 under load: 16 concurrent clients, exact replies, flat memory, clean SIGTERM."""

from __future__ import annotations

import io
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from .conftest import running_server

httpx = pytest.importorskip("httpx")

CLIENTS = 16
ROUNDS = 8  # 16 clients x 8 photos each per load phase; kept small for CI's 2 cores


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def server(serve_onnx):
    with running_server(serve_onnx, "--max-batch", "8", "--max-delay-ms", "5", "--max-queue", "256", "--workers", "2") as found:
        yield found


def _client_loop(url: str, jobs: list[tuple[str, bytes]], expected: dict[str, np.ndarray], results: list) -> None:
    with httpx.Client(base_url=url, timeout=60) as client:
        for name, data in jobs:
            started = time.monotonic()
            try:
                reply = client.post("/v1/predict?output=map", content=data)
            except httpx.TransportError as exc:  # refused or closed: only expected once SIGTERM was sent
                results.append(("transport", started, time.monotonic(), type(exc).__name__))
                continue
            ok = reply.status_code == 200 and np.array_equal(np.load(io.BytesIO(reply.content)), expected[name])
            results.append(("ok" if ok else f"bad {reply.status_code}", started, time.monotonic(), reply.text[:200] if not ok else ""))


def _load(url: str, photo_files: dict, expected: dict, rounds: int) -> list:
    names = list(photo_files)
    results: list = []
    with ThreadPoolExecutor(CLIENTS) as pool:
        for client in range(CLIENTS):
            jobs = [(names[(client + i) % len(names)], photo_files[names[(client + i) % len(names)]]) for i in range(rounds)]
            pool.submit(_client_loop, url, jobs, expected, results)
    return results


def test_load_exact_replies_and_flat_memory(server, runtime, photo_files):
    process, url = server
    expected = {name: runtime.predict(data) for name, data in photo_files.items()}
    warm = _load(url, photo_files, expected, 1)
    assert [r[0] for r in warm] == ["ok"] * CLIENTS, warm
    before = _rss_mb(process.pid)
    results = _load(url, photo_files, expected, ROUNDS)
    after = _rss_mb(process.pid)
    failures = [r for r in results if r[0] != "ok"]
    assert not failures and len(results) == CLIENTS * ROUNDS, failures[:3]
    assert after - before < 50, f"RSS grew {after - before:.1f} MB under load ({before:.0f} -> {after:.0f} MB)"
    metrics = httpx.get(f"{url}/metrics").text
    batches = [line for line in metrics.splitlines() if line.startswith("u2deploy_batch_size_sum")]
    counts = [line for line in metrics.splitlines() if line.startswith("u2deploy_batch_size_count")]
    assert float(batches[0].split()[-1]) > float(counts[0].split()[-1])  # some inferences ran several images


def test_sigterm_mid_load_drains_and_exits_zero(server, runtime, photo_files):
    process, url = server
    expected = {name: runtime.predict(data) for name, data in photo_files.items()}
    results: list = []
    threads = [threading.Thread(target=_client_loop, args=(url, [(n, photo_files[n]) for n in photo_files] * 4, expected, results))
               for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while sum(r[0] == "ok" for r in results) < CLIENTS and time.monotonic() < deadline:  # every client is busy
        time.sleep(0.05)
    terminated = time.monotonic()
    process.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(120)
    assert process.wait(60) == 0
    bad = [r for r in results if r[0] not in ("ok", "transport")]
    assert not bad, bad[:3]  # no 5xx and no wrong reply while draining
    assert any(r[0] == "ok" for r in results if r[1] < terminated)
    drained = [r for r in results if r[0] == "ok" and r[1] < terminated < r[2]]
    assert drained, "no request in flight at SIGTERM finished"
    late = [r for r in results if r[1] > terminated + 0.5]
    assert all(r[0] == "transport" for r in late), late[:3]  # new requests are refused, not served

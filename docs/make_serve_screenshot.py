"""Screenshot of `u2deploy serve`'s page for the README: two photos through a real server, in headless Chromium.

  python docs/make_serve_screenshot.py u2net_320_fp32_dynamic.onnx     # writes docs/images/serve_page.jpg

Needs Debian's chromium (/usr/bin/chromium) and Playwright's Python package (no browser download).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).parent / "images" / "serve_page.jpg"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def wait_ready(url: str, process: subprocess.Popen) -> None:
    import httpx

    for _ in range(600):
        if process.poll() is not None:
            raise SystemExit("the server exited")
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit("the server did not get ready")


def photos(folder: Path) -> list[str]:
    from PIL import Image
    from skimage import data

    paths = []
    for name in ("astronaut", "coffee"):
        path = folder / f"{name}.jpg"
        Image.fromarray(getattr(data, name)()).save(path, quality=92)
        paths.append(str(path))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    url = f"http://127.0.0.1:{args.port}"
    process = subprocess.Popen([sys.executable, "-m", "u2deploy", "serve", args.model, "--port", str(args.port),
                                "--log-level", "warning"])
    try:
        wait_ready(url, process)
        with tempfile.TemporaryDirectory() as tmp, sync_playwright() as play:
            browser = play.chromium.launch(executable_path=shutil.which("chromium"), args=ARGS)
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            page.goto(url + "/")
            page.wait_for_function("document.getElementById('model').textContent.includes('input')", timeout=60_000)
            page.set_input_files("#files", photos(Path(tmp)))
            page.wait_for_function("document.querySelectorAll(\".result[data-done='1']\").length == 2", timeout=600_000)
            page.select_option("#bgmode", "colour")
            page.dispatch_event("#bgmode", "change")
            OUT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(OUT), full_page=True, type="jpeg", quality=80)
            browser.close()
    finally:
        process.terminate()
        process.wait(60)
    print(OUT, OUT.stat().st_size // 1024, "kB")


if __name__ == "__main__":
    main()

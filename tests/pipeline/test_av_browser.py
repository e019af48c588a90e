"""A real browser (Chromium through Playwright) plays the transparent WebM with its alpha, frame by frame."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading

import numpy as np
import pytest

pytest.importorskip("av")
sync_api = pytest.importorskip("playwright.sync_api")

from u2deploy.pipeline.av_io import AvVideoSink  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
PAGE = '<html><body><video id="v" muted></video><canvas id="c" width="96" height="64"></canvas></body></html>'
# Seek, draw the frame on a cleared canvas, and read back the alpha of a pixel in each half. The file
# is loaded as a blob: http.server answers no Range requests, without which a video cannot seek.
READ_FRAME = """async (seconds) => {
  const video = document.getElementById('v');
  if (!video.src) video.src = URL.createObjectURL(await (await fetch('cut.webm')).blob());
  await new Promise((ok, bad) => { if (video.readyState >= 2) ok(); video.onloadeddata = ok;
                                   video.onerror = () => bad(String(video.error && video.error.message)); });
  video.currentTime = seconds;
  await new Promise(ok => { video.onseeked = ok; });
  const context = document.getElementById('c').getContext('2d');
  context.clearRect(0, 0, 96, 64);
  context.drawImage(video, 0, 0);
  const data = context.getImageData(0, 0, 96, 64).data;
  return [data[4 * (32 * 96 + 10) + 3], data[4 * (32 * 96 + 80) + 3], data[4 * (32 * 96 + 10)]];
}"""


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt install chromium)")
def test_chromium_plays_the_webm_transparent(tmp_path):
    sink = AvVideoSink(tmp_path / "cut.webm", fps=10)
    sink.open()
    for index in range(10):  # opaque red left half; right half's alpha rises 20 per frame
        bgra = np.zeros((64, 96, 4), np.uint8)
        bgra[:, :, 2] = 220
        bgra[:, :48, 3] = 255
        bgra[:, 48:, 3] = 20 * index
        sink.write(bgra, index)
    sink.close()
    (tmp_path / "page.html").write_text(PAGE)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)  # same origin: the canvas stays readable
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{server.server_port}/page.html")
            frames = {index: page.evaluate(READ_FRAME, index / 10 + 0.05) for index in (2, 7)}
            browser.close()
    finally:
        server.shutdown()
    for index, (left, right, red) in frames.items():
        assert left == 255 and red > 200
        assert abs(right - 20 * index) <= 6, (index, right)  # the alpha of that very frame: timing kept

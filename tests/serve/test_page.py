"""The web page in a real headless Chromium (Debian's package): upload a photo, check the cut-out's pixels, download it.

Skipped with the reason when Playwright or /usr/bin/chromium is missing (.ci/run installs Debian's chromium).
"""

from __future__ import annotations

import base64
import io
import shutil

import numpy as np
import pytest

from u2deploy import processing

from .conftest import running_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium)")
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

#: the cut-out's alpha and the mask canvas' red channel, as base64 bytes (canvas pixels are exact for alpha)
READ_PIXELS = """() => {
  const img = document.querySelector('img.cutout'), mask = document.querySelector('canvas.mask');
  const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
  const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
  const alpha = ctx.getImageData(0, 0, c.width, c.height).data, red = mask.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const a = new Uint8Array(alpha.length / 4), r = new Uint8Array(alpha.length / 4);
  for (let i = 0; i < a.length; i++) { a[i] = alpha[4 * i + 3]; r[i] = red[4 * i]; }
  const b64 = (u) => { let s = ''; for (let i = 0; i < u.length; i += 8192) s += String.fromCharCode.apply(null, u.subarray(i, i + 8192)); return btoa(s); };
  return {width: c.width, height: c.height, alpha: b64(a), mask: b64(r)};
}"""


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as play:
        chromium = play.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def test_upload_shows_exact_cutout_and_downloads_it(browser, serve_onnx, runtime, photos, tmp_path):
    from PIL import Image

    photo = tmp_path / "chelsea.png"
    Image.fromarray(photos["chelsea"]).save(photo)
    expected = processing.to_mask_u8(runtime.predict(photo))
    with running_server(serve_onnx) as (_, url):
        page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone's width
        page.goto(url + "/")
        page.wait_for_function("document.getElementById('model').textContent.includes('.onnx')", timeout=30_000)
        page.set_input_files("#files", str(photo))
        page.wait_for_selector(".result[data-done='1']", timeout=60_000)
        assert "ms round trip" in page.inner_text(".result .stats")
        pixels = page.evaluate(READ_PIXELS)
        shape = (pixels["height"], pixels["width"])
        assert shape == expected.shape
        assert np.array_equal(np.frombuffer(base64.b64decode(pixels["alpha"]), np.uint8).reshape(shape), expected)
        assert np.array_equal(np.frombuffer(base64.b64decode(pixels["mask"]), np.uint8).reshape(shape), expected)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling on a phone
        with page.expect_download() as download_info:
            page.click("a.dl[download$='_cutout.png']")
        saved = tmp_path / "download.png"
        download_info.value.save_as(saved)
        downloaded = np.asarray(Image.open(io.BytesIO(saved.read_bytes())))
        assert np.array_equal(downloaded, processing.cutout(photos["chelsea"], runtime.predict(photo)))
        page.close()

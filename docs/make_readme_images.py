"""Rebuild the README pictures with `u2deploy predict` itself.

    python docs/make_readme_images.py

Writes three sample photos, runs `u2deploy predict u2net` for masks and cut-outs, and joins
photo | mask | cut-out (over a checkerboard) into one small JPEG per photo under docs/images/.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from u2deploy.samples import sample_photos

OUT = Path(__file__).parent / "images"
PHOTOS = ("astronaut", "coffee", "motorcycle")
HEIGHT = 200


def _checkerboard(size: tuple[int, int], cell: int = 12) -> Image.Image:
    ys, xs = np.indices((size[1], size[0]))
    board = np.where(((ys // cell) + (xs // cell)) % 2, 200, 245).astype(np.uint8)
    return Image.fromarray(board).convert("RGB")


def _fit(image: Image.Image) -> Image.Image:
    return image.resize((round(image.width * HEIGHT / image.height), HEIGHT), Image.LANCZOS)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "in"
        inputs.mkdir()
        for name, image in sample_photos(PHOTOS).items():
            Image.fromarray(image).save(inputs / f"{name}.png")
        for output in ("mask", "cutout"):
            subprocess.run([sys.executable, "-m", "u2deploy", "predict", "u2net", str(inputs), "-o",
                            str(Path(tmp) / output), "--output", output], check=True)  # fmt: skip
        OUT.mkdir(exist_ok=True)
        for name in PHOTOS:
            photo = Image.open(inputs / f"{name}.png").convert("RGB")
            mask = Image.open(Path(tmp) / "mask" / f"{name}.png").convert("RGB")
            cut = Image.open(Path(tmp) / "cutout" / f"{name}.png")
            board = _checkerboard(cut.size)
            board.paste(cut, mask=cut.split()[3])
            tiles = [_fit(photo), _fit(mask), _fit(board)]
            strip = Image.new("RGB", (sum(t.width for t in tiles) + 8 * 2, HEIGHT), "white")
            x = 0
            for tile in tiles:
                strip.paste(tile, (x, 0))
                x += tile.width + 8
            strip.save(OUT / f"{name}.jpg", quality=85)
            print(OUT / f"{name}.jpg")


if __name__ == "__main__":
    main()

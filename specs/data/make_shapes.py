"""Make an image folder of drawn shapes for specs/shapes_cnn.yaml (seeded, no downloads):

    shapes/circle/0000.png ... shapes/cross/0199.jpg

Four classes (circle, square, triangle, cross), each shape in a random colour on a random
background, at a random size, place and angle; 48x48 pixels (the spec reads them at
32x32), a third of them saved as JPEG. The image_folder source reads one subfolder per class.

    python specs/data/make_shapes.py [--out DIR] [--per-class N] [--size PX]
"""
from __future__ import annotations

import argparse
import math
import random
from pathlib import Path

from PIL import Image, ImageDraw

CLASSES = ["circle", "square", "triangle", "cross"]


def _colours(rng: random.Random):
    """A background and a foreground that differ clearly in brightness."""
    while True:
        bg = tuple(rng.randrange(256) for _ in range(3))
        fg = tuple(rng.randrange(256) for _ in range(3))
        if abs(sum(bg) - sum(fg)) > 180:
            return bg, fg


def _polygon(cx, cy, r, angle, corners):
    return [(cx + r * math.cos(angle + 2 * math.pi * k / corners),
             cy + r * math.sin(angle + 2 * math.pi * k / corners)) for k in range(corners)]


def draw(kind: str, size: int, rng: random.Random) -> Image.Image:
    bg, fg = _colours(rng)
    im = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(im)
    r = rng.uniform(0.22, 0.38) * size
    cx, cy = (rng.uniform(r + 1, size - r - 1) for _ in range(2))
    angle = rng.uniform(0, 2 * math.pi)
    if kind == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
    elif kind == "square":
        d.polygon(_polygon(cx, cy, r * 1.2, angle, 4), fill=fg)
    elif kind == "triangle":
        d.polygon(_polygon(cx, cy, r * 1.25, angle, 3), fill=fg)
    else:  # a cross: two bars through the centre
        w = max(2.0, r * 0.45)
        for a in (angle, angle + math.pi / 2):
            dx, dy = math.cos(a), math.sin(a)
            px, py = -dy * w / 2, dx * w / 2
            d.polygon([(cx - dx * r + px, cy - dy * r + py), (cx + dx * r + px, cy + dy * r + py),
                       (cx + dx * r - px, cy + dy * r - py), (cx - dx * r - px, cy - dy * r - py)], fill=fg)
    return im


def make(out: Path, per_class: int = 200, size: int = 48, seed: int = 0) -> Path:
    rng = random.Random(seed)
    for kind in CLASSES:
        folder = out / kind
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            im = draw(kind, size, rng)
            if i % 3 == 2:
                im.save(folder / f"{i:04d}.jpg", quality=90)
            else:
                im.save(folder / f"{i:04d}.png")
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "shapes")
    ap.add_argument("--per-class", type=int, default=200)
    ap.add_argument("--size", type=int, default=48)
    a = ap.parse_args()
    print(f"wrote {len(CLASSES) * a.per_class} images to {make(a.out, a.per_class, a.size)}")

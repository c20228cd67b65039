"""Generate specs/data/discs.npz: a small segmentation task for the U-Net spec.

Each 24x24 grey image holds 1-4 filled discs and squares of random size and brightness on
a noisy background; the target marks the pixels of the discs only (not the squares), so
a network must look at shape, not brightness. x: uint8 [n, 1, 24, 24]; y: uint8 mask
[n, 1, 24, 24] in {0, 1} (read with task: regression).  Run: python specs/data/make_discs.py  (seeded; same file each time)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

SIZE, N = 24, 1000


def make(n=N, size=SIZE, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    x = np.zeros((n, 1, size, size), np.float32)
    y = np.zeros((n, 1, size, size), np.uint8)
    for i in range(n):
        img = rng.normal(0.15, 0.08, (size, size))
        mask = np.zeros((size, size), bool)
        for _ in range(rng.integers(1, 5)):
            r = rng.uniform(2.5, 5.5)
            cy, cx = rng.uniform(r, size - r, 2)
            shade = rng.uniform(0.5, 1.0)
            if rng.random() < 0.5:
                shape = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
                mask |= shape
            else:
                shape = (abs(yy - cy) <= r * 0.9) & (abs(xx - cx) <= r * 0.9)
                mask &= ~shape  # a square drawn over a disc hides it
            img[shape] = shade
        x[i, 0], y[i, 0] = np.clip(img, 0, 1), mask
    return ((x * 31).round() * 8).astype(np.uint8), y  # 32 grey levels: a smaller file


if __name__ == "__main__":
    x, y = make()
    out = Path(__file__).with_name("discs.npz")
    np.savez_compressed(out, x=x, y=y)
    print(f"{out}: {len(x)} images, {y.mean():.1%} disc pixels")

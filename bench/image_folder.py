"""Image-folder throughput: netspec's image_folder source against a hand-written Pillow +
DataLoader pipeline, each in its own process, alternating.

    /work/venv/bin/python bench/image_folder.py [--images 3000] [--epochs 3] [--reps 3] [--workers 2]

The folder: specs/data/make_shapes.py's shapes at 64x64 (a third JPEG), read as RGB
[3, 32, 32], shuffled batches of 64, for --epochs epochs. Timed from the start of loading
to the last batch in hand (as a tensor in [0, 1]); samples/s = images x epochs / time.

1. netspec cold:  data.load with an empty cache folder (decodes every image once into the
                  memory-mapped cache, with image_folder.workers: --workers), then the
                  epochs' batches
2. netspec warm:  the same with the cache in place (a second run, or a sweep's next trial)
3. hand-written:  torch Dataset whose __getitem__ opens, converts and resizes with Pillow,
                  DataLoader(shuffle=True, num_workers=--workers, persistent_workers)
Ratios: netspec / hand-written (goal >= 1.0x).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHAPE, BATCH = (3, 32, 32), 64


def netspec_way(folder: str, cache: str, epochs: int, workers: int) -> float:
    import torch
    os.environ["NETSPEC_CACHE"] = cache
    sys.path.insert(0, str(ROOT))
    import netspec
    from netspec import data as D
    spec = netspec.load({"name": "b", "seed": 0, "data": {"source": {"image_folder": {"path": folder, "workers": workers}}},
                         "model": {"input_shape": list(SHAPE), "layers": ["flatten", {"linear": 4}]}})
    t = time.perf_counter()
    x, y = D.load(spec).splits["train"]
    seen = 0
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
        for idx in order.split(BATCH):
            xb, yb = x[idx], y[idx]
            seen += len(xb)
    return time.perf_counter() - t, seen


def hand_way(folder: str, epochs: int, workers: int) -> float:
    import numpy as np
    import torch
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset

    class Folder(Dataset):
        def __init__(self, root):
            self.classes = sorted(p.name for p in Path(root).iterdir() if p.is_dir())
            self.items = [(f, i) for i, c in enumerate(self.classes) for f in sorted((Path(root) / c).iterdir())]

        def __len__(self):
            return len(self.items)

        def __getitem__(self, i):
            f, label = self.items[i]
            with Image.open(f) as im:
                a = np.asarray(im.convert("RGB").resize(SHAPE[1:][::-1], Image.BILINEAR), dtype=np.uint8)
            return torch.from_numpy(a.transpose(2, 0, 1).copy()).float() / 255, label

    t = time.perf_counter()
    loader = DataLoader(Folder(folder), batch_size=BATCH, shuffle=True, num_workers=workers,
                        persistent_workers=workers > 0, generator=torch.Generator().manual_seed(0))
    seen = 0
    for _ in range(epochs):
        for xb, yb in loader:
            seen += len(xb)
    return time.perf_counter() - t, seen


def child(args: list[str]) -> dict:
    r = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True)
    if r.returncode:
        sys.exit(r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=3000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--child", nargs="*")
    a = ap.parse_args()
    if a.child is not None:
        way, folder, cache = a.child[:3]
        secs, seen = (netspec_way(folder, cache, a.epochs, a.workers) if way == "netspec"
                      else hand_way(folder, a.epochs, a.workers))
        print(json.dumps({"seconds": secs, "samples": seen}))
        return
    sys.path.insert(0, str(ROOT / "specs" / "data"))
    import make_shapes
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_shapes.make(Path(tmp) / "shapes", per_class=a.images // 4, size=64)
        cache = Path(tmp) / "cache"
        rates: dict[str, list[float]] = {"netspec cold": [], "netspec warm": [], "hand-written": []}
        common = [f"--epochs={a.epochs}", f"--workers={a.workers}"]
        for _ in range(a.reps):
            shutil.rmtree(cache, ignore_errors=True)
            for name, way in (("netspec cold", "netspec"), ("netspec warm", "netspec"), ("hand-written", "hand")):
                r = child([way, str(folder), str(cache), *common])
                rates[name].append(r["samples"] / r["seconds"])
        print(f"{a.images} images 64x64 -> {list(SHAPE)}, batch {BATCH}, {a.epochs} epochs, "
              f"{a.reps} reps, hand-written with {a.workers} DataLoader workers; cpus: {os.cpu_count()}")
        hand = statistics.median(rates["hand-written"])
        for name, v in rates.items():
            med = statistics.median(v)
            print(f"  {name:13s} {med:10,.0f} samples/s  (runs: {', '.join(f'{r:,.0f}' for r in v)})"
                  + (f"   {med / hand:.1f}x hand-written" if name != "hand-written" else ""))


if __name__ == "__main__":
    main()

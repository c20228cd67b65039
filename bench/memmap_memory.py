"""Train on a .npy array larger than the memory budget and record the process's anonymous
memory (RssAnon: heap, tensors; not the file's page cache, which the kernel can drop).

    /work/venv/bin/python bench/memmap_memory.py [--gb 4] [--epochs 1] [--dir /tmp]

Writes x.npy (float32 [N, 1024], --gb gigabytes, written in chunks so this script stays
small too) and y.npy (10 classes) into a temporary folder, then runs
`netspec train` on a linear classifier with data.source npy in a child process, polling
/proc/<pid>/status every 20 ms for RssAnon and VmRSS. The goal (issue 13): RssAnon under
1.5 GB for the 4 GB file. The folder is removed at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FEATURES = 1024


def write_data(folder: Path, gb: float) -> int:
    n = int(gb * (1 << 30) / (4 * FEATURES))
    x = np.lib.format.open_memmap(folder / "x.npy", mode="w+", dtype=np.float32, shape=(n, FEATURES))
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (10, FEATURES)).astype(np.float32)
    y = rng.integers(0, 10, n)
    for a in range(0, n, 65536):
        b = min(n, a + 65536)
        x[a:b] = centres[y[a:b]] + 2 * rng.standard_normal((b - a, FEATURES), dtype=np.float32)
    x.flush()
    del x
    np.save(folder / "y.npy", y)
    return n


def status(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("RssAnon", "VmRSS", "RssFile"):
                out[k] = int(v.split()[0]) * 1024
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gb", type=float, default=4.0)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--dir", default=None)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=a.dir) as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        n = write_data(tmp, a.gb)
        print(f"wrote {n} x {FEATURES} float32 = {os.path.getsize(tmp / 'x.npy') / 2**30:.2f} GiB "
              f"in {time.perf_counter() - t:.0f}s", flush=True)
        spec = tmp / "big.yaml"
        spec.write_text(textwrap.dedent(f"""
            name: big
            seed: 0
            data:
              source: {{npy: {{x: {tmp / 'x.npy'}, y: {tmp / 'y.npy'}}}}}
              validation_split: 0.01
              test_split: 0.01
            model:
              input_shape: [{FEATURES}]
              layers: [{{linear: 10}}]
            loss: cross_entropy
            optimizer: {{sgd: {{lr: 0.01}}}}
            train: {{epochs: {a.epochs}, batch_size: {a.batch}, metrics: [accuracy], threads: 1}}
            """))
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        cmd = [str(Path(sys.executable).parent / "netspec"), "train", str(spec), "--out", str(tmp / "runs"), "-q"]
        t = time.perf_counter()
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        peak = {"RssAnon": 0, "VmRSS": 0, "RssFile": 0}
        while p.poll() is None:
            try:
                for k, v in status(p.pid).items():
                    peak[k] = max(peak[k], v)
            except (FileNotFoundError, ProcessLookupError):
                break
            time.sleep(0.02)
        out, err = p.communicate()
        wall = time.perf_counter() - t
        if p.returncode:
            sys.exit(f"netspec train failed ({p.returncode}):\n{err}")
        metrics = json.loads((tmp / "runs" / "big" / "metrics.json").read_text())
        print(json.dumps({"file_GiB": round(os.path.getsize(tmp / "x.npy") / 2**30, 2), "samples": n,
                          "epochs": a.epochs, "peak_RssAnon_GiB": round(peak["RssAnon"] / 2**30, 3),
                          "peak_RssFile_GiB": round(peak["RssFile"] / 2**30, 3),
                          "peak_VmRSS_GiB": round(peak["VmRSS"] / 2**30, 3), "wall_s": round(wall, 1),
                          "samples_per_s": round(n * 0.98 * a.epochs / wall),
                          "test/accuracy": metrics.get("test/accuracy")}, indent=1))


if __name__ == "__main__":
    main()

"""Train the digits CNN three ways, each as a whole process, alternating, and compare.

    .venv/bin/python bench/train_speed.py [--reps 5] [--epochs 30]

1. netspec:    `netspec train specs/digits_cnn.yaml` (default TensorBoard logging, a
               checkpoint every epoch, metrics.json, the progress lines)
2. dataloader: the loop most users write: TensorDataset + DataLoader(shuffle=True)
3. bare:       a loop slicing preloaded tensors, nothing else

All three train the same network (same layers, init, optimizer, batch size, epochs, data
split), validate every epoch and test at the end. Reported per way: wall time and CPU time
(user + sys) of the whole process, time inside the training function (from loading the
data to the test), peak RSS (from wait4), test accuracy; then the ratios netspec /
dataloader and netspec / bare. On a shared machine, CPU time is the steadier figure.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "digits_cnn.yaml"
SEED, BATCH, LR, VAL, TEST = 0, 64, 0.002, 0.1, 0.2


# --- the two hand-written loops (run in a child process) ---
def hand_written(mode: str, epochs: int, threads: int = 0) -> dict:
    import numpy as np
    import torch
    from torch import nn
    from sklearn.datasets import load_digits
    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()  # like netspec's metrics.json 'seconds': from loading the data to the test

    torch.manual_seed(SEED)
    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32)[:, None]
    y = torch.tensor(d.target, dtype=torch.long)
    perm = np.random.default_rng(SEED).permutation(len(x))
    n_test, n_val = round(len(x) * TEST), round(len(x) * VAL)
    test, val, train = (torch.from_numpy(np.sort(p)) for p in
                        (perm[:n_test], perm[n_test:n_test + n_val], perm[n_test + n_val:]))

    model = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.25),
        nn.Linear(64 * 4 * 4, 128), nn.ELU(), nn.Dropout(0.25),
        nn.Linear(128, 10))
    # the spec's init (the notes' TensorFlow truncated normal: within 2 std, zero bias)
    nn.init.zeros_(model[0].bias)
    nn.init.trunc_normal_(model[0].weight, std=0.01, a=-0.02, b=0.02)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = nn.CrossEntropyLoss()

    @torch.no_grad()
    def evaluate(idx):
        model.eval()
        out = model(x[idx])
        model.train()
        return loss_fn(out, y[idx]).item(), (out.argmax(1) == y[idx]).float().mean().item()

    xt, yt = x[train], y[train]
    if mode == "dataloader":
        from torch.utils.data import DataLoader, TensorDataset
        loader = DataLoader(TensorDataset(xt, yt), batch_size=BATCH, shuffle=True)
    for epoch in range(epochs):
        model.train()
        total, correct, seen = 0.0, 0, 0
        if mode == "dataloader":
            batches = loader
        else:
            # the order netspec uses (seeded per epoch), so both do exactly the same arithmetic
            order = torch.randperm(len(xt), generator=torch.Generator().manual_seed(SEED * 100_003 + epoch + 1))
            batches = ((xt[i], yt[i]) for i in order.split(BATCH))
        for xb, yb in batches:
            out = model(xb)
            loss = loss_fn(out, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if mode == "dataloader":  # what a user prints at the end of an epoch
                total += loss.item() * len(yb)
                correct += (out.argmax(1) == yb).sum().item()
                seen += len(yb)
        val_loss, val_acc = evaluate(val)
        if mode == "dataloader":
            print(f"epoch {epoch + 1}: loss {total / seen:.4f} acc {correct / seen:.4f} "
                  f"val_loss {val_loss:.4f} val_acc {val_acc:.4f}", file=sys.stderr)
    test_loss, test_acc = evaluate(test)
    return {"test/accuracy": test_acc, "seconds": time.perf_counter() - t0}


# --- the driver ---
def run_child(way: str, epochs: int, tmp: Path, threads: int) -> dict:
    """One whole process; wall time and peak RSS come from outside it."""
    if way == "netspec":
        out = tmp / f"runs-{time.monotonic_ns()}"
        cmd = [sys.executable, "-m", "netspec.cli", "train", str(SPEC), "--out", str(out),
               "--set", f"train.epochs={epochs}"] + (["--set", f"train.threads={threads}"] if threads else [])
    else:
        cmd = [sys.executable, __file__, "--child", way, "--epochs", str(epochs), "--threads", str(threads)]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    stdout, stderr = p.stdout.read(), p.stderr.read()
    if p.returncode != 0:
        sys.exit(f"{way} failed ({p.returncode}):\n{stderr[-2000:]}")
    if way == "netspec":
        m = json.loads((out / "digits-cnn" / "metrics.json").read_text())
    else:
        m = json.loads(stdout.strip().splitlines()[-1])
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "loop": m["seconds"],
            "rss_mb": usage.ru_maxrss / 1024, "acc": m["test/accuracy"]}


def in_process(reps: int, epochs: int, threads: int) -> None:
    import tempfile

    import netspec
    over = [f"train.epochs={epochs}"] + ([f"train.threads={threads}"] if threads else [])
    spec = netspec.load(SPEC, over)
    res = {"netspec": [], "bare": []}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(reps + 1):  # the first round warms up (imports, first calls) and is dropped
            def ours():
                return netspec.train(spec, out=tmp, overwrite=True, progress=False).metrics["seconds"]
            if rep % 2:  # alternate which goes first
                t, b = ours(), hand_written("bare", epochs, threads)["seconds"]
            else:
                b, t = hand_written("bare", epochs, threads)["seconds"], ours()
            if rep:
                res["netspec"].append(t)
                res["bare"].append(b)
                print(f"  rep {rep} netspec {t:6.2f}s  bare {b:6.2f}s", flush=True)
    for f in (min, statistics.median):
        n, b = f(res["netspec"]), f(res["bare"])
        print(f"{f.__name__:>6}: netspec {n:.2f}s  bare {b:.2f}s  ratio {n / b:.3f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=0, help="torch threads for all three (default: torch's own)")
    ap.add_argument("--in-process", action="store_true",
                    help="instead: netspec's fit and the bare loop alternating in this one warm process "
                         "(no start-up costs; the steadiest view of the loop itself)")
    ap.add_argument("--child", choices=["dataloader", "bare"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(hand_written(a.child, a.epochs, a.threads)))
        return
    if a.in_process:
        return in_process(a.reps, a.epochs, a.threads)
    ways = ["netspec", "dataloader", "bare"]
    res: dict[str, list[dict]] = {w: [] for w in ways}
    print(f"digits CNN, {a.epochs} epochs, {a.reps} alternating repetitions, threads {a.threads or 'default'}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} before")
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(a.reps):
            order = ways[rep % 3:] + ways[:rep % 3]  # rotate so no way always runs first
            for w in order:
                r = run_child(w, a.epochs, Path(tmp), a.threads)
                res[w].append(r)
                print(f"  rep {rep + 1} {w:<10} wall {r['wall']:6.2f}s  cpu {r['cpu']:6.2f}s  loop {r['loop']:6.2f}s  "
                      f"peak RSS {r['rss_mb']:6.0f} MB  test acc {r['acc']:.4f}", flush=True)
    med = {w: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for w, rs in res.items()}
    print("\nmedians:")
    print(f"  {'way':<10} {'wall s':>7} {'cpu s':>7} {'loop s':>7} {'peak RSS MB':>12} {'test acc':>9}")
    for w in ways:
        m = med[w]
        print(f"  {w:<10} {m['wall']:7.2f} {m['cpu']:7.2f} {m['loop']:7.2f} {m['rss_mb']:12.0f} {m['acc']:9.4f}")
    print(f"load average {os.getloadavg()[0]:.2f} after")
    n, dl, bare = med["netspec"], med["dataloader"], med["bare"]
    print("\nratios (netspec / other; < 1 means netspec is faster):")
    print(f"  wall: vs dataloader {n['wall'] / dl['wall']:.3f}   vs bare {n['wall'] / bare['wall']:.3f}")
    print(f"  cpu:  vs dataloader {n['cpu'] / dl['cpu']:.3f}   vs bare {n['cpu'] / bare['cpu']:.3f}")
    print(f"  loop: vs dataloader {n['loop'] / dl['loop']:.3f}   vs bare {n['loop'] / bare['loop']:.3f}")
    print(f"  peak RSS: vs dataloader {n['rss_mb'] / dl['rss_mb']:.3f} ({n['rss_mb'] - dl['rss_mb']:+.0f} MB)")


if __name__ == "__main__":
    main()

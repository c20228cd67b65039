"""Sweep speed: a 4-trial grid on digits with 1 and 2 workers, and the runner's per-trial cost.

    .venv/bin/python bench/sweep_speed.py [--epochs 30] [--reps 1]

Runs specs/digits_sweep.yaml (learning rate x hidden width, 4 trials) through
netspec.sweep.run_sweep in this process, into a temporary folder, as:

  1 worker  (2 threads)   the default for one worker: every core to the one trial
  1 worker  (1 thread)    train.threads=1: the same per-trial setting as 2 workers use
  2 workers (1 thread)    the default for two workers on two cores

and reports the wall time of the trial phase (first trial start to last trial end), the
speed-up of 2 workers over each 1-worker row, and per trial: wall time of its process
against the time inside training (metrics.json 'seconds'); the difference is the runner's
overhead (process start, imports, results). The same is then measured with a fresh
`python -m netspec.sweep` process per trial instead of forking from the preloaded server.
The machine may be shared: the load average is printed with the figures.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "digits_sweep.yaml"
sys.path.insert(0, str(ROOT))

from netspec import spec as S  # noqa: E402
from netspec import sweep as SW  # noqa: E402


def one(out: Path, workers: int, epochs: int, threads: int | None) -> dict:
    sets = [f"train.epochs={epochs}"] + ([f"train.threads={threads}"] if threads else [])
    t0 = time.perf_counter()
    result = SW.run_sweep(S.load(SPEC, sets), out=out, workers=workers, quiet=True)
    total = time.perf_counter() - t0
    assert result.failed == 0, [t.error for t in result.trials]
    starts = [t.started for t in result.trials]
    ends = [t.started + t.seconds for t in result.trials]
    per = [(t.seconds, t.metrics["seconds"]) for t in result.trials]
    return {"total": total, "trials": max(ends) - min(starts), "per": per}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--reps", type=int, default=1)
    args = ap.parse_args()
    print(f"{SPEC.name}: 4 trials x {args.epochs} epochs; {SW.cores()} cores; "
          f"load average before: {os.getloadavg()[0]:.1f}")
    rows = {"1 worker  (2 threads)": (1, None), "1 worker  (1 thread) ": (1, 1), "2 workers (1 thread) ": (2, None)}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        SW.forkserver()
        SW.run_sweep(S.load(SPEC, ["train.epochs=1", "sweep.grid={optimizer.sgd.lr: [0.1]}"]),
                     out=Path(tmp) / "warm", quiet=True)  # the fork server's one-time imports
        print(f"fork server start (torch, netspec, tensorboard imported once): {time.perf_counter() - t0:.1f}s")
        got = {k: [] for k in rows}
        for rep in range(args.reps):
            for name, (w, th) in rows.items():
                got[name].append(one(Path(tmp) / f"{rep}-{w}-{th}", w, args.epochs, th))
        best = {k: min(v, key=lambda r: r["trials"]) for k, v in got.items()}
        two = best["2 workers (1 thread) "]["trials"]
        print(f"\n{'':24}{'trials phase':>14}{'whole sweep':>13}{'2 workers faster by':>22}")
        for name, r in best.items():
            ratio = "" if name.startswith("2") else f"{r['trials'] / two:.2f}x"
            print(f"{name:24}{r['trials']:13.1f}s{r['total']:12.1f}s{ratio:>22}")
        per = [p for r in best.values() for p in r["per"]]
        over = [w - t for w, t in per]
        print(f"\nper trial (forked from the server): process wall {statistics.median(w for w, _ in per):.2f}s, "
              f"training {statistics.median(t for _, t in per):.2f}s, runner overhead median "
              f"{statistics.median(over):.2f}s (min {min(over):.2f}s, max {max(over):.2f}s)")
        SW.executors.FORKSERVER = False
        r = one(Path(tmp) / "spawn", 2, args.epochs, None)
        over = [w - t for w, t in r["per"]]
        print(f"per trial (a fresh `python -m netspec.sweep` each): process wall "
              f"{statistics.median(w for w, _ in r['per']):.2f}s, training "
              f"{statistics.median(t for _, t in r['per']):.2f}s, runner overhead median "
              f"{statistics.median(over):.2f}s; 2 workers' trial phase {r['trials']:.1f}s")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

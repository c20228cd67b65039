"""How long a user waits for `netspec --help`, next to the cost of importing torch.

    .venv/bin/python bench/startup.py [--reps 5]

Each command runs as a whole new process (as a user or a shell completion would run it),
`--reps` times, alternating; the best time of each is reported (the least disturbed by
other work on the machine), with the median beside it, and the ratio of the best times.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def netspec_command() -> list[str]:
    script = Path(sys.executable).parent / ("netspec.exe" if os.name == "nt" else "netspec")
    return [str(script)] if script.exists() else [sys.executable, "-m", "netspec.cli"]


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    commands = {
        "netspec --help": [*netspec_command(), "--help"],
        "netspec schema": [*netspec_command(), "schema"],
        'python -c "import torch"': [sys.executable, "-c", "import torch"],
        'python -c "pass"': [sys.executable, "-c", "pass"],
    }
    for cmd in commands.values():  # warm the file cache once
        timed(cmd)
    times: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(args.reps):
        for name, cmd in commands.items():
            times[name].append(timed(cmd))
    width = max(map(len, commands))
    print(f"best of {args.reps} runs each ({sys.platform}, Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs)")
    for name, ts in times.items():
        print(f"  {name:<{width}}  best {min(ts) * 1000:7.0f} ms   median {statistics.median(ts) * 1000:7.0f} ms")
    ratio = min(times["netspec --help"]) / min(times['python -c "import torch"'])
    print(f"netspec --help / import torch: {ratio:.2f}")


if __name__ == "__main__":
    main()

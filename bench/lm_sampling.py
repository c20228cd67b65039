"""Language-model sampling speed: keys and values cached vs re-running the window per token.

    .venv/bin/python bench/lm_sampling.py RUN [--length 500] [--reps 5] [--n 1] [--threads 1]

RUN is a trained language model's run folder (e.g. runs/char-gpt after
`netspec train specs/char_gpt.yaml`). Both paths sample the same number of tokens from the
same prime and seed, alternating, `reps` times each, one thread by default (what a 2-core
machine shared with other jobs does best); the median tokens per second of each and their
ratio are printed, with CPU time (process_time, steadier than wall time under load). The
two paths' tokens are also compared up to the window, where they must agree.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import netspec
from netspec.compiler.incremental import why_not
from netspec.kinds.network import generate


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--length", type=int, default=500)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--n", type=int, default=1, help="texts sampled together (the batch)")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    run = netspec.load_run(a.run)
    model, window = run.model.eval(), run.spec.model.input_shape[0]
    reason = why_not(model)
    if reason:
        raise SystemExit(f"{a.run}: this network samples by re-running the window only: {reason}")
    start = [run.vocab.index(c) for c in "Olga" if c in run.vocab] or [0]
    speed: dict[bool, list[float]] = {True: [], False: []}
    tokens = {}
    with torch.no_grad():
        generate(model, start, a.n, 20, 1.0, window, torch.Generator().manual_seed(0), cached=True)  # warm-up
        for _ in range(a.reps):
            for cached in (True, False):
                t = time.process_time()
                tokens[cached] = generate(model, start, a.n, a.length, 0.8, window,
                                          torch.Generator().manual_seed(0), cached=cached)
                speed[cached].append(a.n * a.length / (time.process_time() - t))
    fits = window - len(start) + 1
    same = all(c[:fits] == r[:fits] for c, r in zip(tokens[True], tokens[False]))
    cached, rerun = statistics.median(speed[True]), statistics.median(speed[False])
    print(f"{a.run}: window {window}, {sum(p.numel() for p in model.parameters()):,} parameters, "
          f"{a.length} tokens x {a.n}, {a.threads} thread(s), median of {a.reps}")
    print(f"  cached   {cached:9,.0f} tokens/s")
    print(f"  re-run   {rerun:9,.0f} tokens/s")
    print(f"  speed-up {cached / rerun:9.1f}x   (same tokens within the window: {same})")


if __name__ == "__main__":
    main()

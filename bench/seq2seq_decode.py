"""Decoding with a transformer seq2seq decoder: cached keys and values vs re-reading the prefix.

    .venv/bin/python bench/seq2seq_decode.py [--batch 64] [--reps 5] [--lengths 8 32 128]

The model is specs/sort_letters_transformer.yaml's (2 encoder + 2 decoder layers, d 64,
4 heads), built from the spec with stated vocabulary sizes and its decoder lengths set
to each of --lengths. Weights are random: the decoder is forced to run the full length
(no <EOS>), so both paths do the same number of steps.

    cached   netspec's own greedy decoding (Q.decode): one new token per step against
             each layer's cached self-attention keys/values and the memory's projections
    prefix   the same greedy decoding re-running the whole prefix every step, with no
             cache (what the exported ONNX decoder does)

Both run in this process, alternating, timed on CPU time (process_time); the medians and
their ratio are printed, with a check that both decode the same tokens.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import netspec
from netspec.kinds import seq2seq as Q
from netspec.kinds import seq2seq_search as S
from netspec.spec.seq2seq import Greedy

SPEC = Path(__file__).resolve().parent.parent / "specs" / "sort_letters_transformer.yaml"


def model(length: int):
    spec = netspec.load(SPEC, [f"decoder.max_length={length}", f"encoder.max_length={length}",
                               "vocab={source_size: 30, target_size: 30}"])
    spec.data = None  # the vocabulary sizes are stated: no data needed
    m = netspec.build(spec).eval()
    with torch.no_grad():  # never choose <EOS>: every row decodes the full length
        m["decoder"].projection.bias[Q.EOS_ID] = -1e9
    return m


def prefix_greedy(m, src, length):
    keys, _, mask = Q.encode(m["encoder"], src)
    seq = torch.full((len(src), 1), Q.GO_ID)
    for _ in range(length + 1):
        logits = m["decoder"](seq, None, (keys, mask))[0][:, -1]
        logits[:, [Q.PAD_ID, Q.GO_ID]] = float("-inf")
        seq = torch.cat([seq, logits.argmax(-1, keepdim=True)], 1)
    return [S.cut(r)[:length] for r in seq[:, 1:].tolist()]


def timed(fn):
    t = time.process_time()
    out = fn()
    return time.process_time() - t, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--lengths", type=int, nargs="+", default=[8, 32, 128])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: steadiest on a shared machine)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    print(f"batch {a.batch}, {a.reps} reps, {torch.get_num_threads()} threads; CPU seconds per batch (median)")
    print(f"{'length':>6}  {'cached':>8}  {'prefix':>8}  {'prefix/cached':>13}  {'tokens/s cached':>15}")
    for length in a.lengths:
        m = model(length)
        src = torch.randint(4, 30, (a.batch, length))
        cached, prefix = [], []
        with torch.no_grad():
            for _ in range(a.reps + 1):  # the first round warms up
                tc, oc = timed(lambda: Q.decode(m, src, Greedy(), length))
                tp, op = timed(lambda: prefix_greedy(m, src, length))
                assert oc == op, "the cached and prefix decodings differ"
                cached.append(tc)
                prefix.append(tp)
        c, p = statistics.median(cached[1:]), statistics.median(prefix[1:])
        print(f"{length:>6}  {c:>8.4f}  {p:>8.4f}  {p / c:>12.2f}x  {a.batch * (length + 1) / c:>15,.0f}")


if __name__ == "__main__":
    main()

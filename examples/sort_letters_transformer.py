"""A transformer seq2seq from Python: train specs/sort_letters_transformer.yaml, then
translate with the run, greedy and with a beam, and decode one batch by hand.

    .venv/bin/python examples/sort_letters_transformer.py              # 10 epochs (~30 s)
    .venv/bin/python examples/sort_letters_transformer.py --epochs 2 --out /tmp/runs
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

import netspec
from netspec.kinds import seq2seq as Q
from netspec.spec.seq2seq import Beam

HERE = Path(__file__).resolve().parent
WORDS = ["hello", "world", "transformer", "sort", "letters"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--out", default="runs", help="folder for the run folder (default: runs)")
    args = ap.parse_args()

    spec = netspec.load(HERE.parent / "specs" / "sort_letters_transformer.yaml", [f"train.epochs={args.epochs}"])
    result = netspec.train(spec, out=args.out, overwrite=True, progress=False)
    m = result.metrics
    print(f"test exact match {m['test/exact_match']:.3f}, BLEU {m['test/bleu']:.1f} ({result.folder})")

    run = netspec.load_run(result.folder)  # the spec says greedy; "transformer" is longer than max_length 8
    words = [w for w in WORDS if len(w) <= spec.encoder.max_length]
    print("greedy:", dict(zip(words, run.translate(words))))

    # the networks are plain modules: decode the same words with a beam of 4 by hand. Each
    # step feeds one token; the decoder keeps its keys and values in the state it returns.
    src = Q.ids([list(w) for w in words], run.info["source_vocab"])
    with torch.no_grad():
        hyps = Q.decode(run.model, src, Beam(width=4), spec.decoder.max_length)
    print("beam 4:", {w: "".join(run.info["target_vocab"][i] for i in h) for w, h in zip(words, hyps)})


if __name__ == "__main__":
    main()

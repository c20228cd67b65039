"""Forward + backward of a netspec transformer layer vs torch.nn.TransformerEncoderLayer.

    .venv/bin/python bench/transformer_layer.py [--reps 30] [--batch 32] [--steps 128] [--d 256]

The netspec layer is built from a spec (`transformer_encoder_layer`, through netspec.build),
the torch one directly, with the same sizes, the same weights (netspec's parameter names
are torch's, so the state dict loads as is), dropout 0.1, training mode. Both run in this
one process, alternating, each rep timing a forward and a backward pass on CPU time
(process_time, steadier than wall time on a shared machine) after warm-up; the median
of each and their ratio (netspec / torch) are printed. Post-norm and pre-norm are both
measured, and causal self-attention (torch given is_causal=True and its mask).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import netspec


def netspec_layer(d, heads, ff, steps, norm_first, causal):
    spec = netspec.load(f"""
name: bench
model:
  input_shape: [{steps}, {d}]
  layers:
    - transformer_encoder_layer: {{nhead: {heads}, dim_feedforward: {ff}, dropout: 0.1,
                                  norm_first: {str(norm_first).lower()}, causal: {str(causal).lower()}}}
""")
    return netspec.build(spec)


def timed(fn, x):
    x = x.detach().requires_grad_(True)
    t = time.process_time()
    fn(x).sum().backward()
    return time.process_time() - t


def compare(args, norm_first: bool, causal: bool) -> float:
    torch.manual_seed(0)
    ours = netspec_layer(args.d, args.heads, args.ff, args.steps, norm_first, causal).train()
    ref = nn.TransformerEncoderLayer(args.d, args.heads, args.ff, dropout=0.1, batch_first=True,
                                     norm_first=norm_first).train()
    ref.load_state_dict(ours.transformer_encoder_layer_1.state_dict())
    mask = nn.Transformer.generate_square_subsequent_mask(args.steps) if causal else None
    run_ref = (lambda x: ref(x, src_mask=mask, is_causal=True)) if causal else ref
    x = torch.randn(args.batch, args.steps, args.d)
    for _ in range(3):  # warm-up
        timed(ours, x), timed(run_ref, x)
    a, b = [], []
    for i in range(args.reps):  # alternate, and alternate who goes first
        if i % 2:
            a.append(timed(ours, x))
            b.append(timed(run_ref, x))
        else:
            b.append(timed(run_ref, x))
            a.append(timed(ours, x))
    ma, mb = statistics.median(a), statistics.median(b)
    name = f"{'pre' if norm_first else 'post'}-norm{', causal' if causal else ''}"
    print(f"{name:<18} netspec {ma * 1000:7.1f} ms   torch.nn {mb * 1000:7.1f} ms   ratio {ma / mb:.3f}")
    return ma / mb


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=30)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=128)
    p.add_argument("--d", type=int, default=256)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--ff", type=int, default=1024)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"forward + backward, batch {args.batch} x {args.steps} steps x {args.d} features, "
          f"{args.heads} heads, feed-forward {args.ff}, {torch.get_num_threads()} threads, "
          f"median of {args.reps} (CPU time)")
    ratios = [compare(args, nf, c) for nf, c in ((False, False), (True, False), (True, True))]
    print(f"worst ratio {max(ratios):.3f} (goal: at most 1.05)")


if __name__ == "__main__":
    main()

"""The Python side of netspec: load a spec, override a value, build, train, read the metrics.

    .venv/bin/python examples/train_digits.py            # the full 30 epochs (~10 s)
    .venv/bin/python examples/train_digits.py --epochs 2 --out /tmp/runs
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import netspec

HERE = Path(__file__).resolve().parent


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--out", default="runs", help="folder for the run folder (default: runs)")
    args = ap.parse_args()

    # overrides use the same dotted paths as `--set` on the command line and sweeps
    spec = netspec.load(HERE.parent / "specs" / "digits_cnn.yaml",
                        [f"train.epochs={args.epochs}", "name=digits-cnn-example"])
    print(f"{spec.name}: {spec.train.epochs} epochs, optimizer {spec.optimizer.type} "
          f"lr {spec.optimizer.lr}")

    model = netspec.build(spec)  # a plain torch.nn.Module, on the CPU, seeded by spec.seed
    print(f"{sum(p.numel() for p in model.parameters()):,} parameters")

    # trains its own copy of the network; overwrite=True replaces an earlier run of this name
    result = netspec.train(spec, out=args.out, overwrite=True, progress=False)

    # the metrics come back, and are also in <out>/<name>/metrics.json
    saved = json.loads((result.folder / "metrics.json").read_text())
    assert saved["test/accuracy"] == result.metrics["test/accuracy"]
    m = result.metrics
    print(f"test accuracy {m['test/accuracy']:.4f} (best {m['monitor']} {m['best']:.4f} at epoch "
          f"{m['best_epoch']}), run folder {result.folder}")


if __name__ == "__main__":
    main()

"""What a kind of training supplies to the engine (engine/loop.py), which owns everything
else: epochs, data order, devices, mixed precision, data parallelism, clipping, schedulers,
early stopping, checkpoints and resume, TensorBoard, progress and metrics.json.

A kind is a class built from the spec. The engine calls, in this order:

    tag = kind.check()                    sections and metric names; the monitored tag
    kind.setup(engine)                    data and networks (self.nets, on engine.device)
    kind.optimizers()                     {name: (optimizer spec, parameters)}; the engine builds them
    per epoch:  kind.start_epoch(epoch)
                for idx in the epoch's batches (the engine shuffles, seeded by (seed, epoch)):
                    kind.step(kind.batch(idx), engine) -> {tag: value} (averaged by the engine)
                kind.train_metrics(diagnose) -> more train/ metrics of the epoch
                kind.evaluate("val") when "val" in kind.splits
                kind.epoch_end(engine, epoch, diagnose, metrics) -> extra metrics; samples to log
    at the end: kind.evaluate("test") with the best checkpoint's weights; kind.finish(metrics)

`diagnose` is True every `train.diagnose_every` epochs and on the last one: expensive
diagnostics (sample grids, quality scores, decoding training pairs) run then.

In a step, `engine.cast` is the autocast context for forward passes, and
`engine.update(loss, name)` does backward, gradient sync across data-parallel ranks,
clipping and the step of optimizer `name`. `engine.share(t)` takes this rank's part of a
global-batch tensor (for a kind that draws its own inputs, such as a GAN's noise).
"""
from __future__ import annotations

from torch import nn


class Kind:
    drop_last = False  # full batches only (a GAN's batch norm wants like-sized batches)

    def __init__(self, spec):
        self.spec = spec
        self.nets: dict[str, nn.Module] = {}
        self.splits: set[str] = set()  # evaluated splits: "val" every epoch, "test" at the end
        self.size = 0  # training samples

    # --- before training ---
    def check(self) -> str | None:
        """Raise SpecError naming every missing section or unknown metric; return the monitored tag."""
        raise NotImplementedError

    def tags(self) -> list[str]:
        """Every metric tag a run of this spec writes (checked against monitor and sweep.metric)."""
        return []

    def setup(self, engine) -> None:
        """Load the data and build the networks on engine.device (self.nets, self.size, self.splits)."""
        raise NotImplementedError

    def optimizers(self) -> dict:
        raise NotImplementedError

    # --- training ---
    def start_epoch(self, epoch: int) -> None:
        pass

    def batch(self, idx):
        raise NotImplementedError

    def step(self, batch, engine) -> dict:
        raise NotImplementedError

    def running(self) -> dict | None:
        """The epoch's running metrics for the progress line (None: the running loss)."""
        return None

    def train_metrics(self, diagnose: bool) -> dict:
        return {}

    def evaluate(self, split: str) -> dict:
        return {}

    def epoch_end(self, engine, epoch: int, diagnose: bool, metrics: dict) -> dict:
        """After validation, with the epoch's metrics so far: log samples (engine.tb, rank 0
        only; None elsewhere), return extra metrics."""
        return {}

    def finish(self, metrics: dict) -> None:
        pass

    # --- what checkpoints keep ---
    def info(self) -> dict:
        """What using the model later needs (normalisation, classes, vocabularies)."""
        return {}

    def state(self) -> dict:
        """The kind's own resumable state, beside networks and optimizers."""
        return {}

    def load_state(self, state: dict) -> None:
        pass

    def log_start(self, tb) -> None:
        """What a new run logs once (e.g. real samples beside the generated ones)."""

    def graph(self):
        """(module, example input) for TensorBoard's graph, or None."""
        return None

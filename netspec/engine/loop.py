"""The one training loop, for every kind (network, gan, seq2seq; kinds/base.py says what a
kind supplies).

    kind.check(); kind.setup()            everything validated before the first step
    for epoch:
        order = randperm(seed, epoch)     the data order depends on (seed, epoch) only: resume is exact
        for each batch: kind.step(batch, engine)      engine.update: backward, sync, clip, step
        validate, diagnostics (every train.diagnose_every epochs), log, schedule,
        checkpoint (atomic, off the training thread), early stop
    test with the best checkpoint; metrics.json
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch

from ..kinds import kind_of
from . import board, parts
from .runs import CheckpointWriter, load_checkpoint, write_metrics


class Engine:
    """What a kind's step and epoch_end may use: the device, mixed precision, `update`, this
    rank's share of a batch, and the run's TensorBoard writer and folder (rank 0 only)."""

    def __init__(self, spec, folder: Path, device, rank: int, world: int, progress: bool):
        self.spec, self.folder, self.device = spec, folder, device
        self.rank, self.world, self.main = rank, world, rank == 0
        self.progress = progress and self.main
        self.cast, self.scaler = parts.autocast(spec.train, device)
        self.opts: dict = {}
        self.params: dict = {}
        self.tb = None
        self.step = 0
        self.global_n = 0  # the batch size before sharing among ranks

    def update(self, loss: torch.Tensor, name: str = "model") -> None:
        """One optimizer step of `name` from `loss`: backward (scaled under fp16), gradients
        averaged over data-parallel ranks, clipped, stepped."""
        opt, params, scaler = self.opts[name], self.params[name], self.scaler
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
        else:
            loss.backward()
        if self.world > 1:
            _all_reduce_grads(params, self.world)
        if scaler is not None:
            scaler.unscale_(opt)  # clipping must see the true gradients
        parts.clip(self.spec.train, params)
        if scaler is not None:
            scaler.step(opt)  # (the scale is updated once per step, after every optimizer stepped)
        else:
            opt.step()

    def share(self, t: torch.Tensor) -> torch.Tensor:
        """This rank's part of a global batch (every world-th sample; never empty, so every
        rank takes the same number of steps)."""
        if self.world == 1:
            return t
        return t[self.rank::self.world] if len(t) > self.rank else t[:1]

    def total(self, x: torch.Tensor) -> torch.Tensor:
        """The sum of `x` over data-parallel ranks (e.g. a batch's token count, so that a
        per-token mean is the global batch's, as in one process)."""
        if self.world == 1:
            return x
        import torch.distributed as dist
        x = x.detach().clone()
        dist.all_reduce(x)
        return x

    def say(self, message: str) -> None:
        if self.progress:
            print(message)


def _all_reduce_grads(params: list, world: int) -> None:
    """Average gradients over ranks in one flat buffer (what DistributedDataParallel does,
    for any number of networks and optimizers: a GAN's two take turns)."""
    import torch.distributed as dist
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    i = 0
    for g in grads:
        g.copy_(flat[i:i + g.numel()].view_as(g))
        i += g.numel()


class Log:
    """The run's TensorBoard writer, remembering what it wrote at the current step: a
    checkpoint keeps that, so a resume can drop everything from the checkpoint's step on
    (e.g. a finished segment's test/* metrics) and write those values back."""

    def __init__(self, folder: Path, purge_step: int | None):
        self.tb = board.writer(folder, purge_step=purge_step)
        self.at, self.now = None, {}

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.tb.add_scalar(tag, value, step)
        if step != self.at:
            self.at, self.now = step, {}
        self.now[tag] = float(value)

    def at_step(self, step: int) -> dict:
        return dict(self.now) if self.at == step else {}


def fit(spec, folder: Path, resume: bool = False, progress: bool = True, dist=None, report=None) -> dict:
    """Train `spec` into `folder`; returns the final metrics (also in metrics.json).

    `dist` (rank, world_size): data-parallel, each rank taking its share of every global
    batch and gradients averaged; rank 0 logs and checkpoints. `report`: print the final
    table (default: with the progress)."""
    t_start = time.perf_counter()
    tr = spec.train
    rank, world = dist or (0, 1)
    kind = kind_of(spec)
    monitor_tag = kind.check()
    parts.set_threads(tr, world)
    parts.seed_everything(spec.seed)
    engine = Engine(spec, folder, parts.device_of(tr), rank, world, progress)
    kind.setup(engine)
    opts = {k: parts.optimizer(o, params) for k, (o, params) in kind.optimizers().items()}
    engine.opts = opts
    engine.params = {k: [p for g in o.param_groups for p in g["params"]] for k, o in opts.items()}
    mon = parts.Monitor(monitor_tag or "none", tr.mode)
    es = tr.early_stopping
    stopper = parts.Monitor(es.monitor or monitor_tag, tr.mode, es.patience, es.min_delta) if es else None
    scheds = {k: s for k, o in opts.items() if (s := parts.scheduler(tr.scheduler, o, tr.epochs, mon.mode))}
    ckpt_dir = folder / "checkpoints"
    start_epoch, step, relog = 1, 0, None
    if resume:
        state = load_checkpoint(ckpt_dir / "last.pt")
        kind.load_state(state)
        start_epoch, step = parts.resume_from(state, ckpt_dir / "last.pt", kind.nets, opts, scheds,
                                              engine.scaler, mon, stopper)
        relog = state.get("logged")
    last_epoch = start_epoch - 1 if stopper is not None and stopper.stop else tr.epochs
    log = None
    if engine.main:
        # a resume drops what the interrupted run logged from the checkpoint's step on, and
        # writes back what the checkpoint says was logged at that step
        log = Log(folder, purge_step=None if not resume else step if relog is not None else step + 1)
        engine.tb = log.tb
        for k, v in (relog or {}).items():
            log.scalar(k, v, step)
        if not resume:
            kind.log_start(log.tb)
            if tr.tensorboard.graph and (g := kind.graph()) is not None:
                board.log_graph(log.tb, *g)
    n, bs = kind.size, tr.batch_size
    steps_per_epoch = n // bs if kind.drop_last else math.ceil(n / bs)
    bar = board.Progress(tr.epochs, steps_per_epoch, engine.progress)
    verbosity, every = tr.tensorboard.verbosity, tr.log_every
    metrics: dict = {}
    ckpts = CheckpointWriter()
    epoch = start_epoch - 1
    try:
        for epoch in range(start_epoch, last_epoch + 1):
            for net in kind.nets.values():
                net.train()
            kind.start_epoch(epoch)
            bar.start_epoch(epoch)
            g = torch.Generator().manual_seed(spec.seed * 100_003 + epoch)
            order = torch.randperm(n, generator=g) if tr.shuffle else torch.arange(n)
            batches = order.to(engine.device).split(bs)[:steps_per_epoch]
            sums, counts = {}, {}  # the epoch's step values, weighted by batch size
            logged, n_logged = {}, {}  # since the last log point
            for i, idx in enumerate(batches, 1):
                engine.global_n = len(idx)
                idx = engine.share(idx)
                values = kind.step(kind.batch(idx), engine)
                if engine.scaler is not None:
                    engine.scaler.update()
                step += 1
                engine.step = step
                m = len(idx)
                for k, v in values.items():
                    if not math.isfinite(v):
                        ckpts.close()  # the last good checkpoint is on disk before the message names it
                        if log is not None:
                            log.scalar(k, v, step)
                            log.tb.close()
                        raise parts.diverged(v, k, step, folder)
                    sums[k], counts[k] = sums.get(k, 0.0) + v * m, counts.get(k, 0) + m
                    logged[k], n_logged[k] = logged.get(k, 0.0) + v, n_logged.get(k, 0) + 1
                if log is not None and step % every == 0:
                    _log_steps(log, kind, logged, n_logged, step, verbosity)
                    logged, n_logged = {}, {}
                bar.step(i, next(iter(values.values()), 0.0), m, kind.running)
            if log is not None and logged:  # the epoch's last steps, so every step is in the curve
                _log_steps(log, kind, logged, n_logged, step, verbosity)
            diagnose = epoch % tr.diagnose_every == 0 or epoch == tr.epochs
            metrics = {k: sums[k] / counts[k] for k in sums}
            per_step = set(metrics)
            metrics.update(kind.train_metrics(diagnose))
            for net in kind.nets.values():
                net.eval()
            with torch.no_grad():
                if "val" in kind.splits:
                    metrics.update(kind.evaluate("val"))
                metrics.update(kind.epoch_end(engine, epoch, diagnose, metrics))
            best = mon.update(metrics, epoch) if monitor_tag else False
            if stopper is not None:
                stopper.update(metrics, epoch)
            lr = next(iter(opts.values())).param_groups[0]["lr"]  # the rate this epoch trained with
            for s in scheds.values():
                parts.step_scheduler(s, metrics.get(mon.name))
            if log is not None:
                for k, v in metrics.items():
                    if k not in per_step:  # those are the per-step curves above
                        log.scalar(k, v, step)
                log.scalar("epoch", epoch, step)
                if verbosity >= 1:
                    log.scalar("train/lr", lr, step)
                if verbosity >= 2 and epoch % tr.tensorboard.histogram_every == 0:
                    g = kind.graph()
                    for name, net in kind.nets.items():
                        sample = g[1] if verbosity >= 3 and g is not None and g[0] is net else None
                        board.histograms(log.tb, net, step, sample, prefix=f"{name}/" if len(kind.nets) > 1 else "")
            stopping = stopper is not None and stopper.stop
            save_last = epoch % tr.checkpoint_every == 0 or epoch == tr.epochs or stopping
            if engine.main and (save_last or best):
                log.tb.flush()  # every event up to this step is on disk before a checkpoint says so
                state = {**parts.snapshot(kind.nets, opts, scheds),
                         "scaler": engine.scaler.state_dict() if engine.scaler is not None else None,
                         "monitor": mon.state(), "stopper": stopper.state() if stopper else None,
                         "rng": parts.rng_state(), "epoch": epoch, "step": step, "data": kind.info(),
                         "metrics": metrics, "logged": log.at_step(step), **kind.state()}
                # best before last: a kill between the two leaves a last.pt whose monitor state
                # matches best.pt (a resume redoes the epoch and writes the same best again)
                ckpts.save(ckpt_dir / ("best.pt" if best else "last.pt"), state,
                           links=[ckpt_dir / "last.pt"] if best and save_last else [])
            bar.end_epoch(metrics, "  *" if best else "")
            if stopping:
                if engine.progress:
                    print(stopper.stopped_message(), file=sys.stderr)
                break
    finally:
        bar.close()
        ckpts.close()
    if not metrics:  # resumed a finished run: nothing left to train, report the checkpoint's metrics
        metrics = dict(load_checkpoint(ckpt_dir / "last.pt").get("metrics") or {})
    if "test" in kind.splits and engine.main:
        best_file = ckpt_dir / "best.pt"
        if best_file.exists() and mon.best_epoch != epoch:  # (the networks in hand are the best ones)
            best_state = load_checkpoint(best_file)
            for name, net in kind.nets.items():
                net.load_state_dict(best_state[name])
        for net in kind.nets.values():
            net.eval()
        with torch.no_grad():
            test = kind.evaluate("test")
        metrics.update(test)
        for k, v in test.items():
            log.scalar(k, v, step)
    kind.finish(metrics)
    metrics.update({"epochs": epoch, "steps": step, "best_epoch": mon.best_epoch,
                    "monitor": monitor_tag, "best": mon.best,
                    "seconds": round(time.perf_counter() - t_start, 3)})
    if log is not None:
        log.tb.close()
    if engine.main:
        write_metrics(folder, metrics)
        if progress if report is None else report:
            print(f"{spec.name}: done in {metrics['seconds']:.1f}s -> {folder}")
            print(board.metrics_table(metrics))
    return metrics


def _log_steps(log: Log, kind, logged: dict, n_logged: dict, step: int, verbosity: int) -> None:
    for k, v in logged.items():
        log.scalar(k, v / n_logged[k], step)
    if verbosity >= 1:
        nets = kind.nets
        for name, net in nets.items():
            log.scalar("train/grad_norm" if len(nets) == 1 else f"train/{name[0]}_grad_norm",
                       board.grad_norm(net), step)


def check(spec) -> None:
    """Everything `netspec train --dry-run` can check without data."""
    kind_of(spec).check()


"""Pieces every training loop uses: device, optimizers, schedulers, the monitored metric,
RNG state, TensorBoard writer, and the progress display."""
from __future__ import annotations

import math
import os
import random
from contextlib import nullcontext

import numpy as np
import torch

from ..errors import RunError, option
from ..spec.training import metric_mode


# --- device and precision ---
def device_of(train) -> torch.device:
    want = train.device
    if want == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if want == "cuda" and not torch.cuda.is_available():
        raise RunError("train.device is cuda but no CUDA device is available; use device: auto")
    if want == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RunError("train.device is mps but MPS is not available; use device: auto")
    return torch.device(want)


def autocast(train, device: torch.device):
    """Mixed precision where the device has it: fp16 on CUDA by default; bf16 when asked."""
    p = train.precision
    if p == "auto":
        p = "16" if device.type == "cuda" else "32"
    if p == "32":
        return nullcontext(), None
    dtype = torch.float16 if p == "16" else torch.bfloat16
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 and device.type == "cuda" else None
    return torch.autocast(device.type, dtype=dtype), scaler


def threads(train, world: int = 1) -> int | None:
    """Torch CPU threads: train.threads or NETSPEC_THREADS when set; else the cores this
    process may use, less those other processes keep busy (the 1-minute load average) and
    shared among data-parallel ranks. On a busy 2-core machine torch's default of 2 threads
    ran small networks 5-20x slower than 1 (README: the quick-start took 128 s vs 11 s)."""
    n = train.threads or int(os.environ.get("NETSPEC_THREADS", 0) or 0)
    if n:
        return n
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, (cores - int(busy + 0.5)) // world, 1)


def set_threads(train, world: int = 1) -> int:
    n = threads(train, world)
    torch.set_num_threads(n)
    return n


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every global RNG, as tensors and ints (what a weights_only checkpoint can hold)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    # as tensors: pickling each of Python's 625 state ints costs a checkpoint ~5 ms
    s = {"torch": torch.get_rng_state(), "python": torch.tensor(random.getstate()[1], dtype=torch.int64),
         "numpy": torch.from_numpy(keys.astype(np.int64)), "numpy_pos": int(pos),
         "numpy_gauss": [int(has_gauss), float(gauss)]}
    if torch.cuda.is_available():
        s["cuda"] = torch.cuda.get_rng_state_all()
    return s


def set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    py = s["python"]
    random.setstate((3, tuple(py.tolist() if isinstance(py, torch.Tensor) else py), None))
    has_gauss, gauss = s.get("numpy_gauss", (0, 0.0))
    np.random.set_state(("MT19937", s["numpy"].numpy().astype(np.uint32), s.get("numpy_pos", 624),
                         int(has_gauss), gauss))
    if s.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


# --- optimizers and schedulers ---
def optimizer(spec_opt, params) -> torch.optim.Optimizer:
    cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
           "rmsprop": torch.optim.RMSprop, "adagrad": torch.optim.Adagrad}[spec_opt.type]
    kw = spec_opt.args()
    if "betas" in kw:
        kw["betas"] = tuple(kw["betas"])
    return cls(params, **kw)


def scheduler(spec_sched, opt, epochs: int, mode: str):
    if spec_sched is None:
        return None
    s, S = spec_sched, torch.optim.lr_scheduler
    if s.type == "step":
        return S.StepLR(opt, s.step_size, s.gamma)
    if s.type == "cosine":
        return S.CosineAnnealingLR(opt, s.T_max or epochs, s.eta_min)
    if s.type == "exponential":
        return S.ExponentialLR(opt, s.gamma)
    return S.ReduceLROnPlateau(opt, mode=mode, factor=s.factor, patience=s.patience,
                               threshold=s.threshold, min_lr=s.min_lr)


def step_scheduler(sched, value) -> None:
    if sched is None:
        return
    if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
        if value is not None:
            sched.step(value)
    else:
        sched.step()


# --- the monitored metric: best checkpoint, early stopping ---
class Monitor:
    def __init__(self, name: str, mode: str = "auto", patience: int | None = None, min_delta: float = 0.0):
        self.name, self.mode = name, metric_mode(name, mode)
        self.patience, self.min_delta = patience, min_delta
        self.best, self.best_epoch, self.bad = None, 0, 0

    def update(self, metrics: dict, epoch: int) -> bool:
        """True when this epoch is the best so far."""
        v = metrics.get(self.name)
        if v is None or not math.isfinite(v):
            return False
        better = self.best is None or (v < self.best - self.min_delta if self.mode == "min"
                                       else v > self.best + self.min_delta)
        if better:
            self.best, self.best_epoch, self.bad = v, epoch, 0
        else:
            self.bad += 1
        return better

    def stopped_message(self) -> str:
        return (f"early stopping: {self.name} has not improved for {self.patience} epochs "
                f"(best {self.best:.4f} at epoch {self.best_epoch})")

    @property
    def stop(self) -> bool:
        return self.patience is not None and self.bad >= self.patience

    def state(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad": self.bad}

    def load(self, s: dict) -> None:
        self.best, self.best_epoch, self.bad = s["best"], s["best_epoch"], s["bad"]


def resume_from(state: dict, where, nets: dict, opts: dict, scheds: dict, scaler=None, mon=None, stopper=None):
    """Restore a run from a checkpoint; returns (first epoch to run, global step). Networks are
    kept under their names; one optimizer (scheduler) as "optimizer", several as a mapping."""
    try:
        for name, net in nets.items():
            net.load_state_dict(state[name])
        for name, opt in opts.items():
            opt.load_state_dict(state["optimizer"] if len(opts) == 1 else state["optimizer"][name])
        if state.get("scheduler"):
            for name, sched in scheds.items():
                sched.load_state_dict(state["scheduler"] if len(scheds) == 1 else state["scheduler"][name])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        if mon is not None:
            mon.load(state["monitor"])
        if stopper is not None and state.get("stopper"):
            stopper.load(state["stopper"])
        set_rng_state(state["rng"])
        return state["epoch"] + 1, state["step"]
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        raise RunError(f"{where} does not fit this run's networks or optimizers: "
                       f"{str(e).splitlines()[0][:200]}") from None


def snapshot(nets: dict, opts: dict, scheds: dict) -> dict:
    """The checkpoint entries resume_from reads back."""
    one = len(opts) == 1
    state = {name: net.state_dict() for name, net in nets.items()}
    state["optimizer"] = next(iter(opts.values())).state_dict() if one else \
        {k: o.state_dict() for k, o in opts.items()}
    state["scheduler"] = None if not scheds else next(iter(scheds.values())).state_dict() if len(scheds) == 1 \
        else {k: s.state_dict() for k, s in scheds.items()}
    return state


def diverged(value: float, tag: str, step: int, folder) -> RunError:
    """The error of a NaN/inf loss, saying what to do next."""
    last = folder / "checkpoints" / "last.pt"
    if last.exists():
        nxt = (f"The last good checkpoint is {last}: continue from it with {option('resume')} and a remedy, e.g. "
               f"--set train.clip_grad_norm=1, or start afresh with {option('overwrite')} and a lower learning rate.")
    else:
        nxt = (f"No checkpoint was written yet, so start afresh with {option('overwrite')} and a lower learning rate "
               "or gradient clipping (--set train.clip_grad_norm=1).")
    return RunError(f"{tag} became {value} at step {step}: training diverged. {nxt}")


def clip(train, params) -> None:
    if train.clip_grad_norm:
        torch.nn.utils.clip_grad_norm_(params, train.clip_grad_norm)
    if train.clip_grad_value:
        torch.nn.utils.clip_grad_value_(params, train.clip_grad_value)

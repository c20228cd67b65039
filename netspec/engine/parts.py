"""Pieces every training loop uses: device, optimizers, schedulers, the monitored metric,
RNG state, TensorBoard writer, and the progress display."""
from __future__ import annotations

import math
import os
import random
import shutil
import sys
import time
from contextlib import nullcontext

import numpy as np
import torch

from ..errors import RunError
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


def set_threads(train) -> None:
    n = train.threads or int(os.environ.get("NETSPEC_THREADS", 0)) or None
    if n:
        torch.set_num_threads(n)


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


def resume_from(state: dict, where, model, opt, sched=None, scaler=None, mon=None, stopper=None):
    """Restore a loop from a checkpoint; returns (first epoch to run, global step)."""
    try:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise RunError(f"{where} does not fit this run's network or optimizer: "
                       f"{str(e).splitlines()[0][:200]}") from None
    if sched is not None and state.get("scheduler"):
        sched.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    if mon is not None:
        mon.load(state["monitor"])
    if stopper is not None and state.get("stopper"):
        stopper.load(state["stopper"])
    set_rng_state(state["rng"])
    return state["epoch"] + 1, state["step"]


def check_finite(loss: float, step: int, folder, tb=None) -> None:
    """A NaN/inf loss ends the run (RunError, exit 1). With the run's writer, the failing
    value goes into the train/loss curve and the events are closed, so the curve up to the
    failure is on disk."""
    if not math.isfinite(loss):
        if tb is not None:
            tb.add_scalar("train/loss", loss, step)
            tb.close()
        last = folder / "checkpoints" / "last.pt"
        where = (f"the last good checkpoint is {last} (continue from it with --resume and e.g. "
                 "--set train.clip_grad_norm=1)" if last.exists() else "no checkpoint was written yet")
        raise RunError(f"the loss became {loss} at step {step}: training diverged; {where}. "
                       "Or start afresh (--overwrite) with a lower learning rate or gradient clipping "
                       "(train.clip_grad_norm)")


def clip(train, params) -> None:
    if train.clip_grad_norm:
        torch.nn.utils.clip_grad_norm_(params, train.clip_grad_norm)
    if train.clip_grad_value:
        torch.nn.utils.clip_grad_value_(params, train.clip_grad_value)


def writer(folder, purge_step: int | None = None):
    """The run's TensorBoard writer. With `purge_step` (a resume), TensorBoard drops the events
    an earlier, killed process wrote at that step or later."""
    from torch.utils.tensorboard import SummaryWriter
    return SummaryWriter(str(folder), purge_step=purge_step, flush_secs=10)


# --- TensorBoard extras (verbosity >= 1) ---
def grad_norm(model) -> float:
    norms = [p.grad.detach().norm() for p in model.parameters() if p.grad is not None]
    return float(torch.stack(norms).norm()) if norms else 0.0


def log_graph(tb, model, example):
    """The model graph for TensorBoard's Graphs tab. A netspec network (compile.Graph) is
    drawn from its own wiring, one node per layer as the spec names it; anything else is
    traced (SummaryWriter.add_graph, ~0.2 s of a short run)."""
    was = model.training
    model.eval()
    try:
        if hasattr(model, "wiring"):
            from tensorboard.compat.proto.event_pb2 import Event
            tb._get_file_writer().add_event(Event(graph_def=layer_graph(model, example).SerializeToString()))
        else:
            tb.add_graph(model, example)
    except Exception as e:  # the graph is a picture: it must never stop a run
        print(f"warning: the model graph could not be drawn for TensorBoard ({str(e).splitlines()[0][:120]})",
              file=sys.stderr)
    model.train(was)


@torch.no_grad()
def layer_graph(model, example):
    """A GraphDef with a node per layer (blocks as groups), wired as the spec wires them;
    each node carries its output shape, parameter count and settings."""
    from tensorboard.compat.proto.attr_value_pb2 import AttrValue
    from tensorboard.compat.proto.graph_pb2 import GraphDef
    from tensorboard.compat.proto.node_def_pb2 import NodeDef
    from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto

    shapes = {}  # module -> its output shape on the example (one forward pass, hooks removed after)

    def keep(_module, _inputs, out):
        if isinstance(out, torch.Tensor):
            shapes[_module] = tuple(out.shape)
    handles = [m.register_forward_hook(keep) for m in model.modules()]
    try:
        model(example)
    finally:
        for h in handles:
            h.remove()

    def node(name, op, inputs, shape, text=""):
        attr = {"attr": AttrValue(s=text.encode())}
        if shape is not None:  # the batch dimension shows as '?'
            dims = [TensorShapeProto.Dim(size=d) for d in (-1, *shape[1:])]
            attr["_output_shapes"] = AttrValue(list=AttrValue.ListValue(shape=[TensorShapeProto(dim=dims)]))
        return NodeDef(name=name, op=op, input=inputs, attr=attr)

    nodes = [node("input", "Input", [], tuple(example.shape))]

    def walk(module, prefix, src: str) -> str:
        """Add `module`'s nodes reading node `src`; returns the node holding its output."""
        if hasattr(module, "wiring"):  # a layer list: names and wiring from the spec
            outs = {"input": src}
            for name, inputs in module.wiring:
                sub = module._modules[name]
                if hasattr(sub, "wiring") or isinstance(sub, torch.nn.Sequential):
                    outs[name] = walk(sub, f"{prefix}{name}/", outs[inputs[0]])
                else:
                    n = sum(p.numel() for p in sub.parameters())
                    text = ", ".join(t for t in (sub.extra_repr(), f"{n:,} parameters" if n else "") if t)
                    nodes.append(node(prefix + name, type(sub).__name__, [outs[i] for i in inputs],
                                      shapes.get(sub), text))
                    outs[name] = prefix + name
            return outs[module.output]
        for i, part in enumerate(module):  # a repeated block
            src = walk(part, f"{prefix}{i}/", src)
        return src

    walk(model, "", "input")
    return GraphDef(node=nodes)


@torch.no_grad()
def histograms(tb, model, step, sample=None):
    """Weights and gradients; with a sample (verbosity 3) also every leaf layer's output on it.
    The activation hooks live only for this one pass, so training steps never pay for them."""
    for name, p in model.named_parameters():
        tb.add_histogram(f"weights/{name}", p.detach().float().cpu(), step)
        if p.grad is not None:
            tb.add_histogram(f"grads/{name}", p.grad.detach().float().cpu(), step)
    if sample is None:
        return
    acts = {}

    def keep(name):
        def hook(_module, _inputs, out):
            if isinstance(out, torch.Tensor):
                acts[name] = out
        return hook
    handles = [m.register_forward_hook(keep(name)) for name, m in model.named_modules()
               if name and not list(m.children())]
    was = model.training
    model.eval()
    try:
        model(sample)
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    for name, a in acts.items():
        tb.add_histogram(f"activations/{name}", a.float().cpu(), step)


# --- progress display ---
class Progress:
    """One live line on a terminal (epoch, step, loss, samples/s); one line per epoch otherwise."""

    def __init__(self, epochs: int, steps: int, enabled: bool = True, stream=None):
        self.epochs, self.steps, self.enabled = epochs, steps, enabled
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.t0 = time.perf_counter()
        self.seen = 0
        self.last_draw = 0.0

    def start_epoch(self, epoch):
        self.epoch, self.t0, self.seen = epoch, time.perf_counter(), 0

    def step(self, step: int, loss: float, n: int, running=None):
        """After each step; `running()` (called only when the line is redrawn, ~10 times a
        second) gives the epoch's running metrics, e.g. {"loss": 0.31, "accuracy": 0.9}."""
        self.seen += n
        if not (self.enabled and self.tty):
            return
        now = time.perf_counter()
        if now - self.last_draw < 0.1 and step < self.steps:
            return
        self.last_draw = now
        width = 20
        done = int(width * step / max(self.steps, 1))
        bar = "#" * done + "." * (width - done)
        rate = self.seen / max(now - self.t0, 1e-9)
        shown = running() if running is not None else {"loss": loss}
        values = " ".join(f"{k} {v:.4f}" for k, v in shown.items())
        line = f"epoch {self.epoch}/{self.epochs} [{bar}] {step}/{self.steps} {rate:,.0f} samples/s  {values}"
        cols = shutil.get_terminal_size().columns - 1  # a wrapped line could not be redrawn in place
        self.stream.write("\r" + line[:cols] + "\033[K")
        self.stream.flush()

    def end_epoch(self, metrics: dict, extra: str = ""):
        if not self.enabled:
            return
        dt = time.perf_counter() - self.t0
        shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
        line = f"epoch {self.epoch}/{self.epochs}  {shown}  {self.seen / max(dt, 1e-9):,.0f} samples/s  {dt:.1f}s{extra}"
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(line + "\n")
        self.stream.flush()


def metrics_table(metrics: dict) -> str:
    keys = [k for k, v in metrics.items() if isinstance(v, (int, float)) and "/" in k]
    if not keys:
        return ""
    w = max(map(len, keys))
    return "\n".join(f"  {k:<{w}}  {metrics[k]:.4f}" for k in sorted(keys))

"""What the engine shows: TensorBoard (scalars, graph, histograms), the progress line and
the final metrics table."""
from __future__ import annotations

import sys
import time

import torch


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
    import warnings
    was = model.training
    model.eval()
    try:
        with warnings.catch_warnings():  # the tracer's warnings are about tracing, not about the model
            warnings.simplefilter("ignore")
            _draw(tb, model, example)
    except Exception as e:  # the graph is a picture: it must never stop a run
        print(f"warning: the model graph could not be drawn for TensorBoard ({str(e).splitlines()[0][:120]})",
              file=sys.stderr)
    model.train(was)


def _draw(tb, model, example):
    if hasattr(model, "wiring"):
        from tensorboard.compat.proto.event_pb2 import Event
        tb._get_file_writer().add_event(Event(graph_def=layer_graph(model, example).SerializeToString()))
    else:
        tb.add_graph(model, example)


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

    def walk(module, prefix, srcs: list) -> str:
        """Add `module`'s nodes reading nodes `srcs`; returns the node holding its output."""
        if hasattr(module, "wiring"):  # a layer list: names and wiring from the spec
            outs = dict(zip(getattr(module, "inputs", ("input",)), srcs))  # a block may take several
            for name, inputs in module.wiring:
                sub = module._modules[name]
                if hasattr(sub, "wiring") or isinstance(sub, torch.nn.Sequential):
                    outs[name] = walk(sub, f"{prefix}{name}/", [outs[i] for i in inputs])
                else:
                    n = sum(p.numel() for p in sub.parameters())
                    text = ", ".join(t for t in (sub.extra_repr(), f"{n:,} parameters" if n else "") if t)
                    nodes.append(node(prefix + name, type(sub).__name__, [outs[i] for i in inputs],
                                      shapes.get(sub), text))
                    outs[name] = prefix + name
            return outs[module.output]
        for i, part in enumerate(module):  # a repeated block
            srcs = [walk(part, f"{prefix}{i}/", srcs)]
        return srcs[0]

    walk(model, "", ["input"])
    return GraphDef(node=nodes)


@torch.no_grad()
def histograms(tb, model, step, sample=None, prefix: str = ""):
    """Weights and gradients; with a sample (verbosity 3) also every leaf layer's output on it.
    The activation hooks live only for this one pass, so training steps never pay for them."""
    for name, p in model.named_parameters():
        tb.add_histogram(f"weights/{prefix}{name}", p.detach().float().cpu(), step)
        if p.grad is not None:
            tb.add_histogram(f"grads/{prefix}{name}", p.grad.detach().float().cpu(), step)
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
        tb.add_histogram(f"activations/{prefix}{name}", a.float().cpu(), step)


# --- progress display ---
class Progress:
    """On a terminal, a live bar (rich: epoch, steps, samples/s, the epoch's running metrics)
    with one line per finished epoch above it; elsewhere (logs, pipes) just the epoch lines."""

    def __init__(self, epochs: int, steps: int, enabled: bool = True, stream=None):
        self.epochs, self.steps, self.enabled = epochs, steps, enabled
        self.stream = stream or sys.stderr
        self.t0 = time.perf_counter()
        self.seen = 0
        self.last_draw = 0.0
        self.live = None
        if enabled and self.stream.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as Live, TextColumn
            self.live = Live(TextColumn("epoch {task.fields[epoch]}/" + str(epochs)), BarColumn(),
                             MofNCompleteColumn(), TextColumn("{task.fields[rate]}  {task.fields[values]}"),
                             console=Console(file=self.stream), transient=True)
            self.task = self.live.add_task("train", total=steps, epoch=0, rate="", values="")
            self.live.start()

    def start_epoch(self, epoch):
        self.epoch, self.t0, self.seen = epoch, time.perf_counter(), 0
        if self.live is not None:
            self.live.update(self.task, completed=0, epoch=epoch, rate="", values="")

    def step(self, step: int, loss: float, n: int, running=None):
        """After each step; `running()` (called only when the bar is redrawn, ~10 times a
        second) gives the epoch's running metrics, e.g. {"train/accuracy": 0.9}."""
        self.seen += n
        if self.live is None:
            return
        now = time.perf_counter()
        if now - self.last_draw < 0.1 and step < self.steps:
            return
        self.last_draw = now
        shown = (running() if running is not None else None) or {"loss": loss}
        self.live.update(self.task, completed=step, epoch=self.epoch,
                         rate=f"{self.seen / max(now - self.t0, 1e-9):,.0f} samples/s",
                         values=" ".join(f"{k} {fmt(v)}" for k, v in shown.items()))

    def end_epoch(self, metrics: dict, extra: str = ""):
        if not self.enabled:
            return
        dt = time.perf_counter() - self.t0
        shown = "  ".join(f"{k} {fmt(v)}" for k, v in metrics.items()
                          if isinstance(v, (int, float)) and not isinstance(v, bool))
        line = f"epoch {self.epoch}/{self.epochs}  {shown}  {self.seen / max(dt, 1e-9):,.0f} samples/s  {dt:.1f}s{extra}"
        if self.live is not None:
            self.live.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            self.stream.write(line + "\n")
            self.stream.flush()

    def close(self):
        if self.live is not None:
            self.live.stop()
            self.live = None


def fmt(v) -> str:
    """A metric as shown: counts as integers, the rest to 4 decimals."""
    return str(v) if isinstance(v, int) and not isinstance(v, bool) else f"{v:.4f}"


def metrics_table(metrics: dict) -> str:
    keys = [k for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and "/" in k]
    if not keys:
        return ""
    w = max(map(len, keys))
    return "\n".join(f"  {k:<{w}}  {fmt(metrics[k])}" for k in sorted(keys))

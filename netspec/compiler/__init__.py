"""Spec -> torch modules, with shape inference layer by layer.

BUILDERS is the one table from a layer tag to a small builder
`(layer, shape, ctx) -> (module, out_shape)`; `shape` is one sample's shape (no batch
dim), or a list of shapes for merge layers. Everything is first built on the meta device,
so shapes and parameter counts are known (and absurd sizes refused) before any weight is
allocated; then the module is materialised and initialised on the CPU.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import suggest
from ..spec import layers as L
from .budget import check_layers, check_size  # noqa: F401 (check_size: the kinds call it from here)

Shape = tuple


class Bad(Exception):
    """A layer that does not fit its input: becomes a Problem at the layer's line."""


# --- small modules the spec needs beyond torch.nn ---
class Reshape(nn.Module):
    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x):
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self):
        return f"shape={list(self.shape)}"


class Add(nn.Module):
    def forward(self, *xs):
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class Concat(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, *xs):
        return torch.cat(xs, dim=self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class Recurrent(nn.Module):
    """Wraps nn.RNN/LSTM/GRU (batch first) and returns what the spec asked for.

    `lengths` (per-sample true lengths), when given, packs the batch so padding changes
    nothing: 'last'/'state' then read each sequence at its true end."""

    def __init__(self, rnn: nn.RNNBase, output: str):
        super().__init__()
        self.rnn, self.output = rnn, output

    def steps(self, x, lengths=None, state=None):
        """(outputs [B, T, H*dirs], final state) of the wrapped network (seq2seq reads both)."""
        if lengths is not None:
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True,
                                                       enforce_sorted=False)
            out, h = self.rnn(packed, state)
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
            return out, h
        return self.rnn(x, state)

    def forward(self, x, lengths=None, state=None):
        out, h = self.steps(x, lengths, state)
        if self.output == "sequence":
            return out
        hn = h[0] if isinstance(h, tuple) else h  # [layers*dirs, B, H]
        if self.output == "state" or lengths is not None or self.rnn.bidirectional:
            # top layer's final state; both directions side by side
            dirs = 2 if self.rnn.bidirectional else 1
            return torch.cat([hn[-dirs + i] for i in range(dirs)], dim=-1)
        return out[:, -1]

    def extra_repr(self):
        return f"output={self.output}"


class Graph(nn.Module):
    """Layers in order, each reading the outputs named in its wiring. Submodule names are
    the spec's layer names, so printouts, checkpoints and TensorBoard graphs read like it.

    With `pad_index` set (token-id input whose vocabulary has <PAD>, padded at the end),
    every recurrent layer still at the input's time steps gets the true lengths and packs,
    so padding changes no result."""
    pad_index = None

    def __init__(self, nodes: list[tuple[str, nn.Module, list[str]]], output: str):
        super().__init__()
        self.wiring = []
        prev = "input"
        chain = True
        for name, module, inputs in nodes:
            self.add_module(name, module)
            self.wiring.append((name, inputs))
            chain = chain and inputs == [prev]
            prev = name
        self.output = output
        self.chain = chain and output == prev

    def forward(self, x):
        if self.pad_index is not None:
            return self._masked(x)
        if self.chain:
            for module in self._modules.values():
                x = module(x)
            return x
        outs = {"input": x}
        for name, inputs in self.wiring:
            outs[name] = self._modules[name](*[outs[i] for i in inputs])
        return outs[self.output]

    def _masked(self, x):
        lengths = (x != self.pad_index).sum(1).clamp_min(1)
        steps = x.shape[1]
        outs = {"input": x}
        for name, inputs in self.wiring:
            module, args = self._modules[name], [outs[i] for i in inputs]
            if isinstance(module, Recurrent) and args[0].shape[1] == steps:
                outs[name] = module(args[0], lengths)
            else:
                outs[name] = module(*args)
        return outs[self.output]


# --- builders ---
def _tuple(v, n):
    return tuple(v) * (n // len(v)) if isinstance(v, list) and len(v) in (1, n) else (
        (v,) * n if isinstance(v, int) else None)


def _need_rank(layer, shape, ranks: dict[int, str]):
    if len(shape) not in ranks:
        want = " or ".join(f"[{v}]" for v in ranks.values())
        hint = ""
        if len(shape) == 1 and max(ranks) > 1:
            hint = "; it follows a flatten or linear layer: move it before the flatten, or add a reshape"
        elif len(shape) > max(ranks):
            hint = "; add a flatten or reshape before it"
        raise Bad(f"{layer.type} expects input {want}, but gets {list(shape)}{hint}")


@contextmanager
def on_meta():
    """Build modules on the meta device without initialising their weights: materialize()
    initialises them on the CPU anyway, and torch's init functions on meta tensors import
    torch._dynamo (0.8 s of every start)."""
    import torch.nn.init as init
    names = [n for n in dir(init) if n.endswith("_") and not n.startswith("_") and callable(getattr(init, n))]
    saved = {n: getattr(init, n) for n in names}
    try:
        for n in names:
            setattr(init, n, _keep)
        with torch.device("meta"):
            yield
    finally:
        for n, f in saved.items():
            setattr(init, n, f)


def _keep(tensor, *args, **kwargs):
    return tensor


def _meta_shape(module, shape, dtype=torch.float32):
    """Output shape by running a meta tensor through the module (no memory, no compute)."""
    x = torch.empty((2, *shape), device="meta", dtype=dtype)
    try:
        with torch.no_grad():
            y = module.to("meta")(x)
    except (RuntimeError, ValueError, IndexError) as e:
        raise Bad(f"does not fit its input {list(shape)}: {str(e).splitlines()[0]}") from None
    return tuple(y.shape[1:])


def _window_check(layer, spatial, kernel, stride, padding, dilation=1):
    n = len(spatial)
    k, s = _tuple(kernel, n), _tuple(stride if stride is not None else kernel, n)
    d = _tuple(dilation, n)
    p = _tuple(padding, n) if not isinstance(padding, str) else (0,) * n
    if k is None or s is None or d is None or p is None:
        raise Bad(f"kernel_size/stride/padding/dilation need 1 or {n} values for a {n}-d input")
    if padding == "same":
        return
    for size, kk, pp, dd in zip(spatial, k, p, d):
        eff = dd * (kk - 1) + 1
        if eff > size + 2 * pp:
            raise Bad(f"kernel_size {kernel} is larger than its input {list(spatial)}"
                      f"{' plus padding' if pp else ''}; use a smaller kernel or add padding")
        if pp > kk // 2 and layer.type.startswith(("max_pool", "avg_pool")):
            raise Bad(f"padding {padding} must be at most half of kernel_size {kernel}")


def linear(layer: L.Linear, shape, ctx):
    n = layer.out_features
    if n == "vocab":
        n = ctx.get("vocab_size")
        if n is None:
            raise Bad("out_features 'vocab' needs a data source with a vocabulary (text, text_csv); "
                      "write the number of outputs instead")
    return nn.Linear(shape[-1], n, bias=layer.bias), (*shape[:-1], n)


def conv(layer, shape, ctx):
    n = {"conv1d": 1, "conv2d": 2, "conv_transpose2d": 2}[layer.type]
    _need_rank(layer, shape, {n + 1: "channels, length" if n == 1 else "channels, height, width"})
    if shape[0] % layer.groups or layer.out_channels % layer.groups:
        raise Bad(f"groups={layer.groups} must divide the input channels ({shape[0]}) and out_channels")
    cls = {"conv1d": nn.Conv1d, "conv2d": nn.Conv2d, "conv_transpose2d": nn.ConvTranspose2d}[layer.type]
    kw = layer.args(exclude=("out_channels",))
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()}
    if layer.type != "conv_transpose2d":
        if layer.padding == "same" and layer.stride not in (1, [1], [1, 1]):
            raise Bad("padding 'same' needs stride 1")
        _window_check(layer, shape[1:], layer.kernel_size, layer.stride, layer.padding, layer.dilation)
    else:  # the meta device does not check this; a real forward pass would fail
        op, st, dl = (_tuple(v, 2) for v in (layer.output_padding, layer.stride, layer.dilation))
        if op and st and dl and any(o >= s and o >= d for o, s, d in zip(op, st, dl)):
            raise Bad(f"output_padding {layer.output_padding} must be smaller than stride "
                      f"{layer.stride} or dilation {layer.dilation}")
    m = cls(shape[0], layer.out_channels, **kw)
    return m, _meta_shape(m, shape)


def pool(layer, shape, ctx):
    n = 1 if layer.type.endswith("1d") else 2
    _need_rank(layer, shape, {n + 1: "channels, length" if n == 1 else "channels, height, width"})
    _window_check(layer, shape[1:], layer.kernel_size, layer.stride, layer.padding)
    cls = {"max_pool1d": nn.MaxPool1d, "max_pool2d": nn.MaxPool2d,
           "avg_pool1d": nn.AvgPool1d, "avg_pool2d": nn.AvgPool2d}[layer.type]
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in layer.args().items()}
    m = cls(**kw)
    return m, _meta_shape(m, shape)


def adaptive_pool(layer, shape, ctx):
    _need_rank(layer, shape, {3: "channels, height, width"})
    size = tuple(layer.output_size) if isinstance(layer.output_size, list) else layer.output_size
    m = nn.AdaptiveAvgPool2d(size)
    return m, _meta_shape(m, shape)


def upsample(layer, shape, ctx):
    _need_rank(layer, shape, {2: "channels, length", 3: "channels, height, width"})
    size = tuple(layer.size) if isinstance(layer.size, list) else layer.size
    m = nn.Upsample(size=size, scale_factor=layer.scale_factor, mode=layer.mode)
    return m, _meta_shape(m, shape)


def flatten(layer, shape, ctx):
    return nn.Flatten(), (math.prod(shape),)


def reshape(layer, shape, ctx):
    target = list(layer.shape)
    total = math.prod(shape)
    if target.count(-1) > 1:
        raise Bad("reshape takes at most one -1")
    if 0 in target:
        raise Bad(f"reshape sizes must be positive (or one -1, inferred), got {target}")
    known = math.prod(v for v in target if v != -1)
    if -1 in target:
        if total % known:
            raise Bad(f"cannot reshape {list(shape)} ({total} values) to {target}")
        target[target.index(-1)] = total // known
    if math.prod(target) != total:
        raise Bad(f"cannot reshape {list(shape)} ({total} values) to {list(layer.shape)} "
                  f"({math.prod(target)} values); the sizes must multiply to {total}")
    return Reshape(target), tuple(target)


def dropout(layer, shape, ctx):
    if layer.type == "dropout2d":
        _need_rank(layer, shape, {3: "channels, height, width"})
        return nn.Dropout2d(layer.p), shape
    return nn.Dropout(layer.p), shape


def batch_norm(layer, shape, ctx):
    _need_rank(layer, shape, {1: "features", 2: "channels, length", 3: "channels, height, width"})
    cls = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
    return cls(shape[0], **layer.args()), shape


def layer_norm(layer, shape, ctx):
    return nn.LayerNorm(shape[-1], **layer.args()), shape


def embedding(layer: L.Embedding, shape, ctx):
    n = layer.num_embeddings or ctx.get("vocab_size")
    if n is None:
        raise Bad("num_embeddings is not set and no data vocabulary is known here; "
                  "write 'num_embeddings: N' (the vocabulary size)")
    if ctx.get("vocab_size") and n < ctx["vocab_size"]:
        raise Bad(f"num_embeddings {n} is smaller than the data's vocabulary of {ctx['vocab_size']} "
                  "tokens; leave num_embeddings out to take the vocabulary size")
    if layer.padding_idx is not None and not -n <= layer.padding_idx < n:
        raise Bad(f"padding_idx {layer.padding_idx} is outside the vocabulary of {n}")
    return (nn.Embedding(n, layer.embedding_dim, padding_idx=layer.padding_idx, max_norm=layer.max_norm),
            (*shape, layer.embedding_dim))


def recurrent(layer, shape, ctx):
    _need_rank(layer, shape, {2: "time, features"})
    cls = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[layer.type]
    kw = dict(hidden_size=layer.hidden_size, num_layers=layer.num_layers, bias=layer.bias,
              batch_first=True, dropout=layer.dropout if layer.num_layers > 1 else 0.0,
              bidirectional=layer.bidirectional)
    if layer.type == "rnn":
        kw["nonlinearity"] = layer.nonlinearity
    h = layer.hidden_size * (2 if layer.bidirectional else 1)
    out = (shape[0], h) if layer.output == "sequence" else (h,)
    return Recurrent(cls(shape[-1], **kw), layer.output), out


def activation(layer, shape, ctx):
    cls = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "gelu": nn.GELU,
           "selu": nn.SELU, "silu": nn.SiLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh,
           "softmax": nn.Softmax, "log_softmax": nn.LogSoftmax}[layer.type]
    if layer.type in ("softmax", "log_softmax") and not -len(shape) - 1 <= layer.dim <= len(shape):
        raise Bad(f"dim {layer.dim} is outside an input of rank {len(shape) + 1} (batch included)")
    return cls(**layer.args()), shape


def add(layer, shapes, ctx):
    if len(shapes) < 2:
        raise Bad("add needs two or more inputs: write 'inputs: [a, b]'")
    if len(set(shapes)) > 1:
        raise Bad("add needs inputs of equal shapes, got " + ", ".join(str(list(s)) for s in shapes))
    return Add(), shapes[0]


def concat(layer, shapes, ctx):
    if len(shapes) < 2:
        raise Bad("concat needs two or more inputs: write 'inputs: [a, b]'")
    rank = len(shapes[0])
    if any(len(s) != rank for s in shapes):
        raise Bad("concat needs inputs of equal rank, got " + ", ".join(str(list(s)) for s in shapes))
    if not -rank - 1 <= layer.dim <= rank or layer.dim == 0 or layer.dim == -rank - 1:
        raise Bad(f"dim {layer.dim} cannot join inputs of rank {rank + 1} (batch is dim 0)")
    d = layer.dim - 1 if layer.dim > 0 else rank + layer.dim  # index into the sample shape
    if any(s[:d] + s[d + 1:] != shapes[0][:d] + shapes[0][d + 1:] for s in shapes):
        raise Bad(f"concat along dim {layer.dim} needs the other sizes equal, got "
                  + ", ".join(str(list(s)) for s in shapes))
    out = list(shapes[0])
    out[d] = sum(s[d] for s in shapes)
    return Concat(layer.dim), tuple(out)


BUILDERS = {
    "linear": linear, "conv1d": conv, "conv2d": conv, "conv_transpose2d": conv,
    "max_pool1d": pool, "max_pool2d": pool, "avg_pool1d": pool, "avg_pool2d": pool,
    "adaptive_avg_pool2d": adaptive_pool, "upsample": upsample, "flatten": flatten,
    "reshape": reshape, "dropout": dropout, "dropout2d": dropout, "batch_norm": batch_norm,
    "layer_norm": layer_norm, "embedding": embedding, "rnn": recurrent, "lstm": recurrent,
    "gru": recurrent, "add": add, "concat": concat,
    **{c.tag(): activation for c in L.ACTIVATIONS},
}
MERGES = {"add", "concat"}
TOKEN_LAYERS = {"embedding"}  # the only layers that read token ids


# --- weight initialisation ---
def init_weights(module: nn.Module, init) -> None:
    kind, a = init.type, init
    for name, p in module.named_parameters():
        if name.endswith("bias") or "bias_" in name:
            nn.init.zeros_(p)
        elif p.dim() < 2 and kind in ("xavier_uniform", "xavier_normal", "kaiming_uniform",
                                       "kaiming_normal", "orthogonal"):
            continue  # fan-based initialisers need a matrix (norm scales keep their defaults)
        elif kind == "xavier_uniform":
            nn.init.xavier_uniform_(p, a.gain)
        elif kind == "xavier_normal":
            nn.init.xavier_normal_(p, a.gain)
        elif kind == "kaiming_uniform":
            nn.init.kaiming_uniform_(p, a.a, a.mode, a.nonlinearity)
        elif kind == "kaiming_normal":
            nn.init.kaiming_normal_(p, a.a, a.mode, a.nonlinearity)
        elif kind == "normal":
            nn.init.normal_(p, a.mean, a.std)
        elif kind == "truncated_normal":
            nn.init.trunc_normal_(p, a.mean, a.std, a.mean - 2 * a.std, a.mean + 2 * a.std)
        elif kind == "uniform":
            nn.init.uniform_(p, a.a, a.b)
        elif kind == "zeros":
            nn.init.zeros_(p)
        elif kind == "orthogonal":
            nn.init.orthogonal_(p, a.gain)


# --- compiling one network ---
@dataclass
class Row:
    name: str
    type: str
    output_shape: list
    parameters: int
    trainable: int


@dataclass
class Compiled:
    module: nn.Module
    rows: list[Row]
    input_shape: tuple
    output_shape: tuple
    inits: list = field(default_factory=list)  # (module, init spec), applied after materialising

    @property
    def parameters(self):
        return sum(r.parameters for r in self.rows)

    @property
    def trainable(self):
        return sum(r.trainable for r in self.rows)

    def report(self, kind="network") -> dict:
        return {"kind": kind, "parameters": self.parameters, "trainable_parameters": self.trainable,
                "input_shape": list(self.input_shape), "output_shape": list(self.output_shape),
                "layers": [r.__dict__ for r in self.rows]}


def _count(m: nn.Module) -> tuple[int, int]:
    ps = list(m.parameters())
    return sum(p.numel() for p in ps), sum(p.numel() for p in ps if p.requires_grad)


class _Builder:
    """Walks one layer list, collecting every problem it can (a branch after a bad layer
    is skipped, since its input shape is unknown)."""

    def __init__(self, spec, network, path: tuple, ctx: dict, problems: list):
        self.spec, self.network, self.ctx, self.problems = spec, network, ctx, problems
        self.path = path
        self.inits = []

    def bad(self, path, msg):
        self.problems.append(self.spec.problem(path, msg))

    def chain(self, layers, lpath: tuple, in_shape, in_dtype, prefix="", stack=()):
        """Build a layer list; returns (Graph|None, rows, out_shape|None)."""
        shapes = {"input": (in_shape, in_dtype)}
        nodes, rows = [], []
        counts: dict[str, int] = {}
        alias: dict[str, str] = {}  # item name -> the node holding its output (after its activation)
        prev = "input"
        names = set()
        for i, layer in enumerate(layers):
            where = lpath + (i, layer.type)
            kind = layer.use if layer.type == "block" else layer.type  # a block is named for what it uses
            counts[kind] = counts.get(kind, 0) + 1
            name = layer.name or f"{kind}_{counts[kind]}"
            if layer.name:
                if layer.name in names or layer.name == "input":
                    self.bad(lpath + (i, "name"), f"layer name '{layer.name}' is used twice; names must be unique")
                    prev = None
                    continue
                names.add(layer.name)
            while name in shapes:  # a generated name colliding with a user name
                name += "_"
            wanted = layer.inputs if layer.inputs is not None else [prev]
            wanted = [wanted] if isinstance(wanted, str) else wanted
            src = []
            for w in wanted:
                if w is None:  # the previous layer failed: skip silently
                    src = None
                    break
                real = alias.get(w, w)
                if real not in shapes:
                    known = {"input", *alias}
                    self.bad(lpath + (i, "inputs"),
                             f"unknown input '{w}'{suggest(w, known)} (inputs name earlier layers, or 'input')")
                    src = None
                    break
                src.append(real)
            if src is None or any(shapes[s] is None for s in src):
                shapes[name] = None
                alias[layer.name or name] = name
                prev = layer.name or name
                continue
            in_shapes = [shapes[s][0] for s in src]
            dtypes = {shapes[s][1] for s in src}
            try:
                if layer.type == "block":
                    module, out, sub_rows = self.block(layer, where, in_shapes, dtypes, prefix + name + ".", stack)
                    rows += sub_rows
                    dtype = "float"
                else:
                    if layer.type not in MERGES and len(src) > 1:
                        raise Bad(f"{layer.type} takes one input; merge several with add or concat first")
                    if dtypes == {"long"} and layer.type not in TOKEN_LAYERS:
                        raise Bad(f"{layer.type} gets token ids (input_dtype: long); "
                                  "put an embedding layer first")
                    if layer.type in TOKEN_LAYERS and dtypes != {"long"}:
                        raise Bad("embedding reads token ids: set model.input_dtype: long "
                                  "and put the embedding first")
                    shape = in_shapes if layer.type in MERGES else in_shapes[0]
                    with on_meta():
                        try:
                            module, out = BUILDERS[layer.type](layer, shape, self.ctx)
                        except (RuntimeError, ValueError, OverflowError, TypeError) as e:
                            if isinstance(e, TypeError) and "overflow" not in str(e).lower():
                                raise  # a bug, not a spec problem
                            if "overflow" in str(e).lower():
                                raise Bad("its sizes are too large to be represented at all; "
                                          "use smaller sizes") from None
                            raise Bad(f"cannot be built on an input of {list(shape)}: "
                                      f"{str(e).splitlines()[0]}; check its sizes") from None
                    dtype = "float"
                    p, t = _count(module)
                    rows.append(Row(prefix + name, layer.type, list(out), p, t))
                    if getattr(layer, "init", None) is not None:
                        self.inits.append((module, layer.init))
                if math.prod(out) > 2**31:
                    raise Bad(f"output {list(out)} has {math.prod(out):.3g} values per sample; "
                              "that cannot fit in memory: use smaller sizes")
                act = getattr(layer, "activation", None)
                amod = activation(act, out, self.ctx)[0] if act is not None else None
            except Bad as e:
                self.bad(where, str(e))
                shapes[name] = None
                alias[layer.name or name] = name
                prev = layer.name or name
                continue
            nodes.append((name, module, src))
            shapes[name] = (tuple(out), dtype)
            last = name
            if act is not None:
                aname = f"{name}_{act.type}"
                while aname in shapes:  # a user layer already has that name
                    aname += "_"
                nodes.append((aname, amod, [name]))
                shapes[aname] = (tuple(out), dtype)
                rows.append(Row(prefix + aname, act.type, list(out), 0, 0))
                last = aname
            alias[layer.name or name] = last
            prev = layer.name or name
        final = alias.get(prev, prev)
        if not nodes or shapes.get(final) is None:
            return None, rows, None
        return Graph(nodes, final), rows, shapes[final][0]

    def block(self, layer: L.Block, where, in_shapes, dtypes, prefix, stack):
        blocks = self.network.blocks
        if layer.use not in blocks:
            raise Bad(f"unknown block '{layer.use}'{suggest(layer.use, blocks) if blocks else '; define it under model.blocks'}")
        if layer.use in stack:
            raise Bad(f"block '{layer.use}' uses itself (through {' -> '.join(stack)})")
        if len(in_shapes) > 1:
            raise Bad("a block takes one input")
        shape, dtype = in_shapes[0], next(iter(dtypes))
        parts, rows = [], []
        bpath = self.path + ("blocks", layer.use)
        for r in range(layer.repeat):
            before = len(self.problems)
            sub_prefix = prefix + (f"{r}." if layer.repeat > 1 else "")
            g, sub_rows, out = self.chain(blocks[layer.use], bpath, shape, dtype, sub_prefix, stack + (layer.use,))
            if g is None:
                if len(self.problems) == before:
                    raise Bad(f"block '{layer.use}' is empty")
                raise Bad(f"block '{layer.use}' (repeat {r + 1} of {layer.repeat}) does not fit its input "
                          f"{list(shape)}; see the problems reported in it")
            parts.append(g)
            rows += sub_rows
            shape, dtype = out, "float"
        module = parts[0] if len(parts) == 1 else nn.Sequential(*parts)
        return module, shape, rows


def compile_network(spec, network, path: tuple, problems: list, ctx: dict,
                    input_shape=None) -> Compiled | None:
    """Build one network on the meta device. Adds to `problems`; None if it failed."""
    shape = input_shape or network.input_shape
    if shape is None:
        problems.append(spec.problem(path, "input_shape is required (one sample's shape, no batch "
                                           "dimension, e.g. [1, 28, 28])"))
        return None
    if not check_layers(spec, network, path, problems):  # before building anything
        return None
    b = _Builder(spec, network, path, ctx, problems)
    before = len(problems)
    graph, rows, out = b.chain(network.layers, path + ("layers",), tuple(shape), network.input_dtype)
    if graph is None or len(problems) > before:
        return None
    if network.input_dtype == "long" and ctx.get("pad_index") is not None:
        graph.pad_index = ctx["pad_index"]
    return Compiled(graph, rows, tuple(shape), tuple(out), b.inits)


def materialize(compiled: Compiled, seed: int | None = None) -> nn.Module:
    """Allocate the meta module on the CPU and initialise it (seeded)."""
    if seed is not None:
        torch.manual_seed(seed)
    module = compiled.module.to_empty(device="cpu")
    for m in module.modules():
        if m is not module and hasattr(m, "reset_parameters"):
            m.reset_parameters()
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.reset_running_stats()
    for m, init in compiled.inits:
        init_weights(m, init)
    return module


def format_summary(rep: dict, title: str = "") -> str:
    """A Keras-like summary table."""
    lines = []
    nets = rep.get("networks") or {"": rep}
    for net_name, net in nets.items():
        rows = [(r["name"], r["type"], str(r["output_shape"]), f"{r['parameters']:,}") for r in net["layers"]]
        head = ("Layer", "Type", "Output shape", "Params")
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
        fmt = "  ".join(f"{{:{'>' if i == 3 else '<'}{w}}}" for i, w in enumerate(widths))
        rule = "-" * (sum(widths) + 6)
        if net_name:
            lines.append(f"{net_name}:")
        lines += [fmt.format(*head), rule]
        lines.append(fmt.format("input", "input", str(net["input_shape"]), "0"))
        lines += [fmt.format(*r) for r in rows]
        lines.append(rule)
        if net_name:
            lines.append(f"{net_name} parameters: {net['parameters']:,} (trainable {net['trainable_parameters']:,})")
            lines.append("")
    lines.append(f"Total parameters:     {rep['parameters']:,}")
    lines.append(f"Trainable parameters: {rep['trainable_parameters']:,}")
    lines.append(f"Non-trainable:        {rep['parameters'] - rep['trainable_parameters']:,}")
    if title:
        lines.insert(0, title)
    return "\n".join(lines)

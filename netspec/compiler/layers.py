"""BUILDERS: the one table from a layer tag to a small builder
`(layer, shape, ctx) -> (module, out_shape)`; `shape` is one sample's shape (no batch
dim), or a list of shapes for merge layers. Builders run under the meta device."""
from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from torch import nn

from ..spec import layers as L
from . import attention as A
from .modules import Add, Concat, GlobalPool, OverTime, Permute, Recurrent, Reshape


class Bad(Exception):
    """A layer that does not fit its input: becomes a Problem at the layer's line."""


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


def over_time(build):
    """A channels-first 1-d builder made to work over a sequence [time, features]: the
    features are its channels and time its length, and the output is again a sequence."""
    def wrapped(layer, shape, ctx):
        if not (ctx.get("sequence") and len(shape) == 2):
            return build(layer, shape, ctx)
        module, out = build(layer, (shape[1], shape[0]), ctx)
        return OverTime(module), (out[1], out[0])
    wrapped.__name__ = build.__name__
    return wrapped


@over_time
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


@over_time
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


@over_time
def upsample(layer, shape, ctx):
    _need_rank(layer, shape, {2: "channels, length", 3: "channels, height, width"})
    size = tuple(layer.size) if isinstance(layer.size, list) else layer.size
    m = nn.Upsample(size=size, scale_factor=layer.scale_factor, mode=layer.mode)
    return m, _meta_shape(m, shape)


def identity(layer, shape, ctx):
    return nn.Identity(), shape


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


@over_time
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


def _sequence_in(layer, shape, what="input"):
    if len(shape) != 2:
        hint = ("; put an embedding first (token ids) or reshape to [time, features]" if len(shape) == 1
                else "; add a reshape (or flatten + reshape) to [time, features] before it")
        raise Bad(f"{layer.type} expects {what} [time, features], but gets {list(shape)}{hint}")


def _heads(layer, heads, width):
    if width % heads:
        raise Bad(f"{'num_heads' if layer.type == 'multi_head_attention' else 'nhead'} {heads} must "
                  f"divide the features ({width}); each head gets features / heads of them")


def multi_head_attention(layer: L.MultiHeadAttention, shapes, ctx):
    if len(shapes) > 2:
        raise Bad("multi_head_attention takes one input (self-attention) or two, "
                  "[query, memory] (cross-attention)")
    for s, what in zip(shapes, ("input", "memory")):
        _sequence_in(layer, s, what)
    _heads(layer, layer.num_heads, shapes[0][-1])
    kdim = shapes[1][-1] if len(shapes) == 2 else None
    return A.MultiheadAttention(shapes[0][-1], layer.num_heads, layer.dropout, layer.bias,
                                layer.causal, kdim), shapes[0]


def _transformer_kw(layer):
    return dict(dim_feedforward=layer.dim_feedforward, dropout=layer.dropout,
                activation=layer.activation, layer_norm_eps=layer.layer_norm_eps,
                norm_first=layer.norm_first, bias=layer.bias, causal=layer.causal)


def transformer_encoder_layer(layer: L.TransformerEncoderLayer, shape, ctx):
    _sequence_in(layer, shape)
    _heads(layer, layer.nhead, shape[-1])
    return A.TransformerEncoderLayer(shape[-1], layer.nhead, **_transformer_kw(layer)), shape


def transformer_decoder_layer(layer: L.TransformerDecoderLayer, shapes, ctx):
    if len(shapes) == 1 and ctx.get("memory") is not None:  # a seq2seq decoder: the memory is the encoder's
        shapes = [shapes[0], shapes[0] if ctx["memory"] == "target" else ctx["memory"]]
    if len(shapes) != 2:
        raise Bad("transformer_decoder_layer takes two inputs, [target, memory]: "
                  "write 'inputs: [<target layer>, <memory layer>]'")
    for s, what in zip(shapes, ("target", "memory")):
        _sequence_in(layer, s, what)
    _heads(layer, layer.nhead, shapes[0][-1])
    kdim = shapes[1][-1] if shapes[1][-1] != shapes[0][-1] else None
    return A.TransformerDecoderLayer(shapes[0][-1], layer.nhead, **_transformer_kw(layer), kdim=kdim), shapes[0]


def position_embedding(layer: L.PositionEmbedding, shape, ctx):
    _sequence_in(layer, shape)
    n = layer.max_length or shape[0]
    if n < shape[0]:
        raise Bad(f"max_length {n} is shorter than the input's {shape[0]} time steps")
    if n * shape[1] > 2**31:  # a fixed table is a buffer, not counted with the parameters
        raise Bad(f"max_length {n} x {shape[1]} features is too large a position table; use a smaller max_length")
    if layer.encoding == "sinusoidal" and shape[1] % 2:
        raise Bad(f"sinusoidal positions need an even number of features, got {shape[1]}")
    return A.PositionEmbedding(n, shape[1], learned=layer.encoding == "learned"), shape


def permute(layer, shape, ctx):
    dims = list(layer.dims)
    if layer.type == "transpose":
        if dims[0] == dims[1] or max(dims) >= len(shape):
            raise Bad(f"transpose needs two different dims below {len(shape)} (the sample's rank, "
                      f"batch not counted), got {dims}")
        order = list(range(len(shape)))
        order[dims[0]], order[dims[1]] = order[dims[1]], order[dims[0]]
        dims = order
    elif sorted(dims) != list(range(len(shape))):
        raise Bad(f"permute needs each of the sample's dims 0..{len(shape) - 1} once (batch not "
                  f"counted), got {dims} for an input of {list(shape)}")
    return Permute(dims), tuple(shape[d] for d in dims)


def global_pool(layer, shape, ctx):
    seq = bool(ctx.get("sequence")) and len(shape) == 2
    if len(shape) < 2:
        raise Bad(f"{layer.type} pools over time of [time, features] or over space of "
                  f"[channels, ...], but gets {list(shape)}; it follows a flatten or linear layer: "
                  "move it before the flatten")
    op = "avg" if layer.type == "global_avg_pool" else "max"
    return GlobalPool(op, over_time=seq), (shape[1],) if seq else (shape[0],)


BUILDERS = {
    "linear": linear, "conv1d": conv, "conv2d": conv, "conv_transpose2d": conv,
    "max_pool1d": pool, "max_pool2d": pool, "avg_pool1d": pool, "avg_pool2d": pool,
    "adaptive_avg_pool2d": adaptive_pool, "upsample": upsample, "flatten": flatten,
    "reshape": reshape, "dropout": dropout, "dropout2d": dropout, "batch_norm": batch_norm,
    "layer_norm": layer_norm, "embedding": embedding, "rnn": recurrent, "lstm": recurrent,
    "gru": recurrent, "add": add, "concat": concat, "multi_head_attention": multi_head_attention,
    "transformer_encoder_layer": transformer_encoder_layer,
    "transformer_decoder_layer": transformer_decoder_layer, "position_embedding": position_embedding,
    "identity": identity, "permute": permute, "transpose": permute, "global_avg_pool": global_pool, "global_max_pool": global_pool,
    **{c.tag(): activation for c in L.ACTIVATIONS},
}
MERGES = {"add", "concat"}
MULTI_INPUT = MERGES | {"multi_head_attention", "transformer_decoder_layer"}  # get a list of shapes
# How layers pass on the sequence axis ([time, features]): these make a sequence ...
MAKES_SEQUENCE = {"embedding", "multi_head_attention", "transformer_encoder_layer",
                  "transformer_decoder_layer", "position_embedding"}
# ... and these keep one a sequence (conv1d, pools, batch_norm and upsample work over time)
KEEPS_SEQUENCE = {c.tag() for c in L.ACTIVATIONS} | {
    "linear", "identity", "dropout", "layer_norm", "add", "concat", "conv1d", "max_pool1d", "avg_pool1d",
    "batch_norm", "upsample"}
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

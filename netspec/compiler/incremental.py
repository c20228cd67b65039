"""Running a causal network on new steps only, with each self-attention's keys and values cached.

A language model samples a token, appends it and runs again. Re-running the window costs
the whole window per new token; with keys and values kept, a new token costs one position
(and one query against the cached keys). That gives the same outputs only when every layer
is causal: a step's output depends on that step and earlier ones, and on nothing else.
`why_not` checks that layer by layer and names the first layer that is not; the caller then
re-runs the window instead.

Causal, as run here: token embeddings, position embeddings (read from the cached offset),
causal self-attention and causal transformer encoder layers (keys and values cached), and
layers that treat each step on its own (linear, layer norm, dropout, activations, add,
concat over features), in a chain or wired through `inputs`, blocks and repeats included.

A seq2seq transformer decoder runs the same way: its transformer_decoder_layer layers read
the encoder's outputs (the memory, given with each step; their projections are cached
too), and beam search picks cached rows with `reorder`.
"""
from __future__ import annotations

from torch import nn

from .attention import MultiheadAttention, PositionEmbedding, TransformerDecoderLayer, TransformerEncoderLayer
from .modules import Add, Concat, Graph, Repeat

# each step on its own: outputs at a step read only that step's inputs
PER_STEP = (nn.Embedding, nn.Linear, nn.LayerNorm, nn.Dropout, nn.Identity, nn.ReLU, nn.LeakyReLU,
            nn.ELU, nn.GELU, nn.SELU, nn.SiLU, nn.Sigmoid, nn.Tanh, Add)
FEATURE_DIMS = (-1, 2)  # the features of [batch, time, features]


def _attention(module):
    return module.self_attn if isinstance(module, TransformerEncoderLayer) else module


def why_not(model: nn.Module) -> str | None:
    """None when `model` can run on new steps only; otherwise why not, naming the layer."""
    if getattr(model, "pad_index", None) is not None:
        return "its token input is padded (<PAD>), and padding masks need the whole window"
    return _why_not(model, "the network", None)


def _why_not(module, name: str, wired) -> str | None:
    if isinstance(module, Graph):
        for child, inputs in module.wiring:
            reason = _why_not(module._modules[child], child, inputs)
            if reason:
                return reason
        return None
    if isinstance(module, Repeat):
        return next((r for part in module if (r := _why_not(part, name, None))), None)
    if isinstance(module, (MultiheadAttention, TransformerEncoderLayer)):
        if wired is not None and len(wired) > 1:
            return f"'{name}' attends to a second input (cross-attention)"
        if not _attention(module).causal:
            return f"'{name}' is not causal (each step attends to the whole window); set causal: true"
        return None
    if isinstance(module, (nn.Softmax, nn.LogSoftmax, Concat)):
        return None if module.dim in FEATURE_DIMS else f"'{name}' works along time (dim {module.dim})"
    if isinstance(module, PositionEmbedding) or isinstance(module, PER_STEP):
        return None
    return f"'{name}' ({type(module).__name__}) reads more than one step at a time"


class Incremental:
    """Feeds a causal network new steps only: `step(x)` takes token ids [batch, new steps]
    that follow the ones already fed and returns the network's outputs for them.
    `reset()` forgets everything fed so far (the next call starts at position 0).

    Without a model (a seq2seq decoder, whose layers are causal by construction), `chain`
    feeds new steps through a list of modules, with the encoder's memory."""

    def __init__(self, model: nn.Module | None = None):
        if model is not None:
            reason = why_not(model)
            if reason:
                raise ValueError(f"this network cannot run step by step: {reason}")
        self.model = model
        self.memory = None  # (keys [B, S, D], padding mask [B, S], True at padding) for decoder layers
        self.reset()

    def reset(self) -> None:
        self.caches: dict[nn.Module, dict] = {}
        self.offset = 0  # steps fed since the last reset (the position of the next one)

    def step(self, x):
        out = self._run(self.model, x)
        self.offset += x.shape[1]
        return out

    def chain(self, modules, x, memory=None):
        """New steps through `modules` in order, at the current position; `memory` is
        (keys, padding mask) for transformer_decoder_layer layers."""
        self.memory, out = memory, x
        for module in modules:
            out = self._run(module, out)
        self.offset += x.shape[1]
        return out

    def reorder(self, rows) -> "Incremental":
        """Keep the cached rows `rows` (beam search follows its surviving hypotheses)."""
        def pick(c):
            for k, v in c.items():
                c[k] = pick(v) if isinstance(v, dict) else v[rows]
            return c
        for c in self.caches.values():
            pick(c)
        return self

    def _run(self, module, *xs):
        if isinstance(module, Graph):
            if module.chain:
                (x,) = xs
                for child in module._modules.values():
                    x = self._run(child, x)
                return x
            outs = dict(zip(module.inputs, xs))
            for name, inputs in module.wiring:
                outs[name] = self._run(module._modules[name], *[outs[i] for i in inputs])
            return outs[module.output]
        if isinstance(module, Repeat):
            (x,) = xs
            for part in module:
                x = self._run(part, x)
            return x
        if isinstance(module, PositionEmbedding):
            return module(*xs, offset=self.offset)
        if isinstance(module, (MultiheadAttention, TransformerEncoderLayer)):
            return module(*xs, cache=self.caches.setdefault(module, {}))
        if isinstance(module, TransformerDecoderLayer) and self.memory is not None:
            # the target's own padding sits after its real tokens, which causal attention never reads
            keys, pad = self.memory
            return module(*xs, keys, cache=self.caches.setdefault(module, {}), memory_mask=pad)
        return module(*xs)

"""The small torch modules a spec needs beyond torch.nn (wiring, reshapes, recurrent
wrappers); the attention modules are in attention.py."""
from __future__ import annotations

import torch
from torch import nn


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


class Permute(nn.Module):
    """Reorders a sample's dimensions (the batch stays first)."""

    def __init__(self, dims):
        super().__init__()
        self.dims = tuple(dims)

    def forward(self, x):
        return x.permute(0, *[d + 1 for d in self.dims])

    def extra_repr(self):
        return f"dims={list(self.dims)}"


class OverTime(nn.Module):
    """Runs a channels-first torch layer (conv1d, pool1d, batch norm) over a sequence
    [batch, time, features]: features are its channels, time its length."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x.transpose(1, 2)).transpose(1, 2)


class GlobalPool(nn.Module):
    """Mean or max over time of [batch, time, features] (steps marked as padding in `mask`
    left out), or over the spatial dims of [batch, channels, ...]."""
    takes_mask = True

    def __init__(self, op: str, over_time: bool):
        super().__init__()
        self.op, self.over_time = op, over_time

    def forward(self, x, mask=None):
        if not self.over_time:
            flat = x.flatten(2)
            return flat.mean(2) if self.op == "avg" else flat.amax(2)
        if mask is None or mask.shape[1] != x.shape[1]:
            return x.mean(1) if self.op == "avg" else x.amax(1)
        keep = ~mask[:, :, None]
        if self.op == "avg":
            return (x * keep).sum(1) / keep.sum(1).clamp_min(1)
        return x.masked_fill(~keep, float("-inf")).amax(1)

    def extra_repr(self):
        return f"{self.op} over {'time' if self.over_time else 'space'}"


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

    def __init__(self, nodes: list[tuple[str, nn.Module, list[str]]], output: str, inputs=("input",)):
        super().__init__()
        self.wiring = []
        self.inputs = tuple(inputs)  # a block may take several
        prev = self.inputs[0]
        chain = len(self.inputs) == 1
        for name, module, wired in nodes:
            self.add_module(name, module)
            self.wiring.append((name, wired))
            chain = chain and wired == [prev]
            prev = name
        self.output = output
        self.chain = chain and output == prev

    def forward(self, x, *more, mask=None):
        if self.pad_index is not None:
            lengths = (x != self.pad_index).sum(1).clamp_min(1)
            # True at padding (after each sequence's true end; the first step always counts)
            mask = torch.arange(x.shape[1], device=x.device)[None, :] >= lengths[:, None]
        if mask is not None:
            return self._masked(x, mask, more)
        if self.chain:
            for module in self._modules.values():
                x = module(x)
            return x
        outs = dict(zip(self.inputs, (x, *more)))
        for name, inputs in self.wiring:
            outs[name] = self._modules[name](*[outs[i] for i in inputs])
        return outs[self.output]

    def _masked(self, x, mask, more=()):
        """The padding mask reaches every layer that uses it (recurrent layers pack with the
        true lengths; attention and global pooling leave padding steps out), blocks included."""
        steps = mask.shape[1]
        lengths = (~mask).sum(1)
        outs = dict(zip(self.inputs, (x, *more)))
        for name, inputs in self.wiring:
            module, args = self._modules[name], [outs[i] for i in inputs]
            if isinstance(module, Recurrent) and args[0].shape[1] == steps:
                outs[name] = module(args[0], lengths)
            elif getattr(module, "takes_mask", False):
                outs[name] = module(*args, mask=mask)
            else:
                outs[name] = module(*args)
        return outs[self.output]


class Repeat(nn.Sequential):
    """A block used `repeat` times: its copies in a chain, the padding mask passed along."""
    takes_mask = True

    def forward(self, x, mask=None):
        for part in self:
            x = part(x, mask=mask)
        return x


Graph.takes_mask = True

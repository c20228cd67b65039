"""Recurrent layers without packed sequences, for export.

Training and `predict` pack padded batches (pack_padded_sequence), which ONNX cannot
express. `Unrolled` computes the same thing with plain tensor operations: the cell
equations of nn.RNN/LSTM/GRU written out, one time step at a time, where a padded step
leaves the state as it was and outputs zeros. That is exactly what packing does, for both
directions (the backward direction passes the padding first, with its state unchanged,
and starts at each sequence's true end). The time dimension is unrolled, so it is fixed
at export: the padded length (model.input_shape, encoder.max_length).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..compiler import Recurrent
from ..errors import RunError


def _cell(mode: str, x_proj, h, c, w_hh, b_hh):
    """One step of a cell: x_proj is x @ W_ih^T + b_ih, already computed for every step."""
    g_h = h @ w_hh.t() + (b_hh if b_hh is not None else 0)
    if mode == "LSTM":
        i, f, g, o = (x_proj + g_h).chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c
    if mode == "GRU":
        xr, xz, xn = x_proj.chunk(3, -1)
        hr, hz, hn = g_h.chunk(3, -1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return (1 - z) * n + z * h, c
    pre = x_proj + g_h
    return (torch.tanh(pre) if mode == "RNN_TANH" else torch.relu(pre)), c


class Unrolled(Recurrent):
    """A Recurrent whose packed path (given lengths) is written as masked steps."""

    def steps(self, x, lengths=None, state=None):
        if lengths is None:
            return self.rnn(x, state)
        rnn = self.rnn
        B, T = x.shape[0], x.shape[1]
        dirs = 2 if rnn.bidirectional else 1
        lstm = rnn.mode == "LSTM"
        if state is None:
            zeros = x.new_zeros(rnn.num_layers * dirs, B, rnn.hidden_size)
            state = (zeros, zeros) if lstm else zeros
        h0, c0 = state if lstm else (state, state)
        live = (torch.arange(T, device=x.device)[None, :] < lengths[:, None]).to(x.dtype)  # [B, T]
        hs, cs = [], []
        for layer in range(rnn.num_layers):
            outs = []
            for d in range(dirs):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                w_ih, w_hh = getattr(rnn, "weight_ih" + sfx), getattr(rnn, "weight_hh" + sfx)
                b_ih = getattr(rnn, "bias_ih" + sfx) if rnn.bias else None
                b_hh = getattr(rnn, "bias_hh" + sfx) if rnn.bias else None
                proj = x @ w_ih.t() + (b_ih if b_ih is not None else 0)  # [B, T, G]
                k = layer * dirs + d
                h, c = h0[k], c0[k]
                seq = [None] * T
                for t in (range(T - 1, -1, -1) if d else range(T)):
                    m = live[:, t:t + 1]
                    nh, nc = _cell(rnn.mode, proj[:, t], h, c, w_hh, b_hh)
                    h = m * nh + (1 - m) * h
                    c = m * nc + (1 - m) * c if lstm else c
                    seq[t] = h * m
                outs.append(torch.stack(seq, 1))
                hs.append(h)
                cs.append(c)
            x = torch.cat(outs, -1) if dirs == 2 else outs[0]
        h_n = torch.stack(hs)
        return x, ((h_n, torch.stack(cs)) if lstm else h_n)


def unrolled(module: nn.Module) -> nn.Module:
    """A copy of `module` with every Recurrent layer Unrolled (the original is untouched)."""
    module = copy.deepcopy(module)
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is Recurrent:
                if getattr(child.rnn, "proj_size", 0):
                    raise RunError("export: an LSTM with proj_size cannot be exported yet")
                parent._modules[name] = Unrolled(child.rnn, child.output)
    return module

"""The seq2seq networks beyond the layer lists: attention, the bridge from the encoder's
final state to the decoder's first, and the two decoders: a recurrent one that wires its
layers around them, and a transformer one whose layers attend to the encoder themselves.

Both decoders take (tokens, state, memory) and return (logits, state); `begin(encoder
state)` gives the state decoding starts from: the bridge's output for a recurrent decoder,
an empty key/value cache for a transformer."""
from __future__ import annotations

import torch
from torch import nn

from ..compiler import Recurrent
from ..compiler.incremental import Incremental


class Attention(nn.Module):
    """Scores every encoder output against the decoder's output at each step; returns their
    softmax-weighted sum (the context) and the weights. Padding gets no weight."""

    def __init__(self, kind: str, query: int, key: int, hidden: int | None = None):
        super().__init__()
        self.kind = kind
        if kind == "general":
            self.w = nn.Linear(key, query, bias=False)
        elif kind == "additive":
            hidden = hidden or query
            self.wq, self.wk = nn.Linear(query, hidden, bias=False), nn.Linear(key, hidden)
            self.v = nn.Linear(hidden, 1, bias=False)

    def forward(self, q, keys, mask):  # q [B, T, H], keys [B, S, D], mask [B, S] (True: a real token)
        if self.kind == "dot":
            scores = q @ keys.transpose(1, 2)
        elif self.kind == "general":
            scores = q @ self.w(keys).transpose(1, 2)
        else:
            scores = self.v(torch.tanh(self.wq(q)[:, :, None] + self.wk(keys)[:, None])).squeeze(-1)
        weights = torch.softmax(scores.masked_fill(~mask[:, None, :], float("-inf")), -1)
        return weights @ keys, weights

    def extra_repr(self):
        return self.kind


class Bridge(nn.Module):
    """The encoder's final state -> the decoder's first state.

    copy: layer for layer (a bidirectional encoder's two directions side by side);
    linear: h0 = tanh(W [every encoder layer's final h]), c0 likewise without tanh when
    both are LSTMs (else zeros); zeros: the decoder starts from nothing (attention only)."""

    def __init__(self, mode: str, enc_layers: int, enc_size: int, enc_lstm: bool,
                 dec_layers: int, dec_size: int, dec_lstm: bool):
        super().__init__()
        self.mode, self.dec_layers, self.dec_size, self.dec_lstm = mode, dec_layers, dec_size, dec_lstm
        self.enc_layers = enc_layers
        if mode == "linear":
            self.h = nn.Linear(enc_layers * enc_size, dec_layers * dec_size)
            self.c = nn.Linear(enc_layers * enc_size, dec_layers * dec_size) if enc_lstm and dec_lstm else None

    def _by_layer(self, s):  # [layers*dirs, B, H] -> [layers, B, dirs*H]
        dirs = s.shape[0] // self.enc_layers
        return s.view(self.enc_layers, dirs, *s.shape[1:]).permute(0, 2, 1, 3).reshape(
            self.enc_layers, s.shape[1], dirs * s.shape[2])

    def _project(self, lin, s, squash):
        flat = s.permute(1, 0, 2).reshape(s.shape[1], -1)
        out = lin(flat)
        out = torch.tanh(out) if squash else out
        return out.view(-1, self.dec_layers, self.dec_size).permute(1, 0, 2).contiguous()

    def forward(self, state):
        if self.mode == "zeros":
            return None
        h, c = state if isinstance(state, tuple) else (state, None)
        h = self._by_layer(h)
        c = self._by_layer(c) if c is not None else None
        if self.mode == "copy":
            h0 = h.contiguous()
            c0 = c.contiguous() if c is not None else torch.zeros_like(h0)
        else:
            h0 = self._project(self.h, h, True)
            c0 = self._project(self.c, c, False) if self.c is not None else torch.zeros_like(h0)
        return (h0, c0) if self.dec_lstm else h0

    def extra_repr(self):
        return self.mode


class Decoder(nn.Module):
    """embedding -> recurrent (from a given state) -> [attention] -> layers -> projection.
    Runs a whole teacher-forced sequence at once, or one step at a time.

    Every layer is a direct submodule, named as in the summary (`decoder.lstm_1`,
    `decoder.linear_1`), so `get_submodule` takes the summary's names."""

    def __init__(self, head: list[tuple[str, nn.Module]], attention: Attention | None,
                 tail: list[tuple[str, nn.Module]], projection: nn.Linear, bridge: Bridge,
                 renamed: dict | None = None):
        super().__init__()
        self.renamed = renamed or {}  # the tail's names when compiled alone -> its names here
        self.bridge = bridge
        for name, m in head + tail:
            self.add_module(name, m)
        self.attention, self.projection = attention, projection
        self.head_names, self.tail_names = [n for n, _ in head], [n for n, _ in tail]
        self._register_load_state_dict_pre_hook(self._old_keys)

    def begin(self, state):
        return self.bridge(state)

    def forward(self, tokens, state, memory):
        keys, mask = memory
        x = tokens
        for name in self.head_names:
            m = self._modules[name]
            if isinstance(m, Recurrent):
                x, state = m.steps(x, None, state)
            else:
                x = m(x)
        if self.attention is not None:
            x = torch.cat([x, self.attention(x, keys, mask)[0]], -1)
        for name in self.tail_names:
            x = self._modules[name](x)
        return self.projection(x), state

    def _old_keys(self, state_dict, prefix, *args):
        """Checkpoints written before the layers were direct submodules kept them under
        `head.` and `tail.` (the tail numbered from 1): map those keys onto today's names."""
        for key in [k for k in state_dict if k.startswith((prefix + "head.", prefix + "tail."))]:
            part, name, param = key[len(prefix):].split(".", 2)
            name = self.renamed.get(name, name) if part == "tail" else name
            state_dict[f"{prefix}{name}.{param}"] = state_dict.pop(key)


def tail_names(head: list, tail: list) -> dict:
    """The layers after attention are compiled on their own, so their generated names count
    from 1 (`linear_1`); in the decoder they continue the count of the layers before them,
    as if the list were compiled whole (`linear_2` after a `linear_1`). Old name -> new name."""
    counts: dict[str, int] = {}
    for layer in head:
        counts[layer.type] = counts.get(layer.type, 0) + 1
    out, alone = {}, {}
    for layer in tail:
        alone[layer.type] = alone.get(layer.type, 0) + 1
        old, new = f"{layer.type}_{alone[layer.type]}", f"{layer.type}_{counts.get(layer.type, 0) + alone[layer.type]}"
        out[old] = new
        if getattr(layer, "activation", None) is not None:
            out[f"{old}_{layer.activation.type}"] = f"{new}_{layer.activation.type}"
    return out


class TransformerDecoder(nn.Module):
    """embedding -> [position_embedding] -> transformer_decoder_layer x N (each attending to
    the encoder's outputs) -> layers -> projection. A whole teacher-forced target runs in one
    causal pass; decoding feeds one token at a time, and the state (an `Incremental`) keeps
    each attention's keys and values, so a step costs one position, not the whole prefix."""

    def __init__(self, layers: list[tuple[str, nn.Module]], projection: nn.Linear):
        super().__init__()
        for name, m in layers:
            self.add_module(name, m)
        self.names, self.projection = [n for n, _ in layers], projection

    def begin(self, state) -> Incremental:
        return Incremental()

    def forward(self, tokens, state: Incremental | None, memory):
        keys, real = memory
        run = state if state is not None else Incremental()  # a whole target: nothing to keep
        # the attention modules take True at padding
        x = run.chain([self._modules[n] for n in self.names], tokens, (keys, ~real))
        return self.projection(x), state

"""Attention and transformer modules on torch's scaled_dot_product_attention.

Parameter names and shapes follow torch.nn.MultiheadAttention / TransformerEncoderLayer /
TransformerDecoderLayer, so a torch state dict loads into them as is (the tests do).
Inputs are batch first, [batch, time, features]. `mask` is the key-padding mask of the
model's token input, [batch, steps] with True at padding; a module applies it to a key
sequence only when that sequence still has the input's steps.

For decoding step by step, `cache` (a dict the caller keeps) holds each self-attention's
keys and values, so a new step costs one query against the cached keys, not a full pass;
a cross-attention keeps the memory's projected keys and values from its first step.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _keep(mask, steps):
    """Key-padding mask -> SDPA's boolean mask (True = attend), or None when it does not apply."""
    if mask is None or mask.shape[1] != steps:
        return None
    return ~mask[:, None, None, :]


class MultiheadAttention(nn.Module):
    takes_mask = True

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, causal=False, kdim=None):
        super().__init__()
        self.embed_dim, self.num_heads, self.dropout, self.causal = embed_dim, num_heads, dropout, causal
        self.kdim = kdim or embed_dim
        if self.kdim == embed_dim:
            self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        else:  # cross-attention to a memory of another width: separate projections (as torch)
            self.q_proj_weight = nn.Parameter(torch.empty(embed_dim, embed_dim))
            self.k_proj_weight = nn.Parameter(torch.empty(embed_dim, self.kdim))
            self.v_proj_weight = nn.Parameter(torch.empty(embed_dim, self.kdim))
            self.register_parameter("in_proj_weight", None)
        self.in_proj_bias = nn.Parameter(torch.empty(3 * embed_dim)) if bias else None
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.reset_parameters()

    def reset_parameters(self):
        if self.in_proj_weight is not None:
            nn.init.xavier_uniform_(self.in_proj_weight)
        else:
            for w in (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
                nn.init.xavier_uniform_(w)
        self.out_proj.reset_parameters()
        if self.in_proj_bias is not None:
            nn.init.zeros_(self.in_proj_bias)
            nn.init.zeros_(self.out_proj.bias)

    def _project(self, x, memory):
        E, b = self.embed_dim, self.in_proj_bias
        bq, bk, bv = (None, None, None) if b is None else b.chunk(3)
        if self.in_proj_weight is not None:
            if memory is None:  # self-attention: one fused projection
                return F.linear(x, self.in_proj_weight, b).chunk(3, dim=-1)
            wq, wkv = self.in_proj_weight.split([E, 2 * E])
            k, v = F.linear(memory, wkv, None if b is None else b[E:]).chunk(2, dim=-1)
            return F.linear(x, wq, bq), k, v
        memory = x if memory is None else memory
        return (F.linear(x, self.q_proj_weight, bq), F.linear(memory, self.k_proj_weight, bk),
                F.linear(memory, self.v_proj_weight, bv))

    def _query(self, x):
        b = None if self.in_proj_bias is None else self.in_proj_bias[:self.embed_dim]
        w = self.in_proj_weight[:self.embed_dim] if self.in_proj_weight is not None else self.q_proj_weight
        return F.linear(x, w, b)

    def forward(self, x, memory=None, mask=None, cache=None):
        B, T, E = x.shape
        H = self.num_heads
        heads = lambda t: t.reshape(B, t.shape[1], H, E // H).transpose(1, 2)  # noqa: E731
        offset = 0
        if cache is not None and memory is not None and "k" in cache:
            # cross-attention while decoding: the memory's keys and values were projected at the first step
            q, k, v = heads(self._query(x)), cache["k"], cache["v"]
        else:
            q, k, v = (heads(t) for t in self._project(x, memory))
            if cache is not None and memory is not None:
                cache["k"], cache["v"] = k, v
            elif cache is not None:  # incremental self-attention: keep keys and values
                if "k" in cache:
                    offset = cache["k"].shape[2]
                    k, v = torch.cat([cache["k"], k], 2), torch.cat([cache["v"], v], 2)
                cache["k"], cache["v"] = k, v
        S = k.shape[2]
        keep = _keep(mask, S)
        causal = self.causal and memory is None
        if causal and offset and T == 1 and keep is None:
            causal = False  # one new step after the cached ones sees them all: no mask to build
        elif causal and (keep is not None or offset):
            tri = torch.ones(T, S, dtype=torch.bool, device=x.device).tril(offset)
            keep = tri if keep is None else keep & tri
            causal = False
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, is_causal=bool(causal) and int(T) > 1,
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(out.transpose(1, 2).reshape(B, T, E))

    def extra_repr(self):
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, causal={self.causal}"


class _Block(nn.Module):
    """What the encoder and decoder layers share: the feed-forward part and its norms."""

    def _ff_init(self, d_model, dim_feedforward, dropout, activation, eps, norm_first, bias, norms):
        self.linear1 = nn.Linear(d_model, dim_feedforward, bias=bias)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model, bias=bias)
        self.norm_first, self.activation_name = norm_first, activation
        for i in range(1, norms + 1):
            setattr(self, f"norm{i}", nn.LayerNorm(d_model, eps=eps, bias=bias))
            setattr(self, f"dropout{i}", nn.Dropout(dropout))

    def _ff(self, x):
        act = F.gelu if self.activation_name == "gelu" else F.relu
        return self.linear2(self.dropout(act(self.linear1(x))))

    def extra_repr(self):
        return f"norm_first={self.norm_first}, activation={self.activation_name}"


class TransformerEncoderLayer(_Block):
    takes_mask = True

    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu",
                 layer_norm_eps=1e-5, norm_first=False, bias=True, causal=False):
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead, dropout, bias, causal)
        self._ff_init(d_model, dim_feedforward, dropout, activation, layer_norm_eps, norm_first, bias, 2)

    def forward(self, x, mask=None, cache=None):
        sa = lambda y: self.dropout1(self.self_attn(y, mask=mask, cache=cache))  # noqa: E731
        if self.norm_first:
            x = x + sa(self.norm1(x))
            return x + self.dropout2(self._ff(self.norm2(x)))
        x = self.norm1(x + sa(x))
        return self.norm2(x + self.dropout2(self._ff(x)))


class TransformerDecoderLayer(_Block):
    takes_mask = True

    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu",
                 layer_norm_eps=1e-5, norm_first=False, bias=True, causal=True, kdim=None):
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead, dropout, bias, causal)
        self.multihead_attn = MultiheadAttention(d_model, nhead, dropout, bias, False, kdim)
        self._ff_init(d_model, dim_feedforward, dropout, activation, layer_norm_eps, norm_first, bias, 3)

    def forward(self, x, memory, mask=None, cache=None, memory_mask=None):
        """`mask` applies to whichever of target and memory still has the input's steps;
        `memory_mask` (seq2seq) is the memory's own padding mask. `cache` (decoding step by
        step) keeps the target's keys and values and the memory's projections."""
        own = cross = None
        if cache is not None:
            own, cross = cache.setdefault("self", {}), cache.setdefault("cross", {})
        sa = lambda y: self.dropout1(self.self_attn(y, mask=mask, cache=own))  # noqa: E731
        mm = memory_mask if memory_mask is not None else mask
        ca = lambda y: self.dropout2(self.multihead_attn(y, memory, mask=mm, cache=cross))  # noqa: E731
        if self.norm_first:
            x = x + sa(self.norm1(x))
            x = x + ca(self.norm2(x))
            return x + self.dropout3(self._ff(self.norm3(x)))
        x = self.norm1(x + sa(x))
        x = self.norm2(x + ca(x))
        return self.norm3(x + self.dropout3(self._ff(x)))


class PositionEmbedding(nn.Module):
    """x + a position vector per step; learned (a table) or sinusoidal (a fixed buffer)."""

    def __init__(self, max_length, dim, learned=True):
        super().__init__()
        self.max_length, self.dim, self.learned = max_length, dim, learned
        if learned:
            self.weight = nn.Parameter(torch.empty(max_length, dim))
        else:
            self.register_buffer("table", torch.empty(max_length, dim), persistent=False)
        self.reset_parameters()

    def reset_parameters(self):
        if self.learned:
            nn.init.normal_(self.weight, std=0.02)  # GPT-2's choice
            return
        if self.table.is_meta:
            return
        pos = torch.arange(self.max_length, dtype=torch.float32)[:, None]
        freq = torch.exp(torch.arange(0, self.dim, 2, dtype=torch.float32) * (-math.log(10000.0) / self.dim))
        with torch.no_grad():
            self.table[:, 0::2] = torch.sin(pos * freq)
            self.table[:, 1::2] = torch.cos(pos * freq)[:, : self.dim // 2]

    def forward(self, x, offset: int = 0):
        table = self.weight if self.learned else self.table
        return x + table[offset: offset + x.shape[1]]

    def extra_repr(self):
        return f"max_length={self.max_length}, {'learned' if self.learned else 'sinusoidal'}"

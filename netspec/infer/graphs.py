"""The modules a finished run is used through: `Run.predict/sample/translate` call them, and
`netspec export` writes exactly these, so an exported file computes what predict reports.

    Predictor    network: samples as predict reads them -> normalise -> model -> probabilities
                 (classifier) or values (regression)
    NextToken    language model: token ids [N, T] -> next-token probabilities and logits [N, V]
    Sampler      GAN: latent [N, size] (+ labels [N]) -> samples in the data's range and shape
    Encoder      seq2seq: source ids [N, S] -> memory (keys, mask) and, for a recurrent decoder,
                 its first state
    DecoderStep  seq2seq, recurrent decoder: previous tokens [N] + state + memory ->
                 log-probabilities [N, V] + state
    PrefixStep   seq2seq, transformer decoder: tokens so far [N, t] (<GO> first) + memory ->
                 log-probabilities of the next token [N, V]; it re-reads the prefix each step
                 (netspec's own decoding caches keys and values; the graph holds no cache)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# what a network's raw outputs become for a user, by loss: (name, function)
HEADS = {"cross_entropy": ("probabilities", "softmax"), "nll": ("probabilities", "exp"),
         "bce_with_logits": ("probabilities", "sigmoid"), "bce": ("probabilities", None)}


def head_of(spec, task: str) -> tuple[str, str | None]:
    """(what predict reports, the function from outputs to it)."""
    if task != "classification":
        return "value", None
    return HEADS.get(spec.loss.type if spec.loss is not None else None, ("scores", None))


class Predictor(nn.Module):
    def __init__(self, model: nn.Module, stats: dict | None, head: str | None):
        super().__init__()
        self.model, self.head = model, head
        stats = stats or {}
        self.normalise = bool(stats)
        if stats:
            self.register_buffer("shift", torch.as_tensor(stats["shift"], dtype=torch.float32))
            self.register_buffer("scale", torch.as_tensor(stats["scale"], dtype=torch.float32))

    def forward(self, x):
        if self.normalise:
            x = (x - self.shift) / self.scale
        out = self.model(x)
        if self.head == "softmax":
            return out.softmax(-1)
        if self.head == "exp":
            return out.exp()
        if self.head == "sigmoid":
            return out.sigmoid()
        return out


class NextToken(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, ids):
        logits = self.model(ids)[:, -1]
        return logits.softmax(-1), logits


class Sampler(nn.Module):
    def __init__(self, gan, scale):
        super().__init__()
        self.generator, self.classes = gan.generator, gan.classes
        self.scale = scale

    def forward(self, z, labels=None):
        if self.classes:
            z = torch.cat([z, F.one_hot(labels, self.classes).to(z.dtype)], 1)
        return self.scale.to_data(self.generator(z))


def _state_shape(decoder) -> tuple[int, int, bool] | None:
    """(layers, hidden size, is LSTM) of the decoder's recurrent layer."""
    from ..compiler import Recurrent
    for m in decoder.modules():  # the only recurrent layer is the one before attention
        if isinstance(m, Recurrent):
            return m.rnn.num_layers, m.rnn.hidden_size, m.rnn.mode == "LSTM"
    return None


def recurrent(decoder) -> bool:
    """A recurrent decoder (a bridge and a state), not a transformer one."""
    return hasattr(decoder, "bridge")


class Encoder(nn.Module):
    """Returns (keys, mask, h[, c]): the state is the bridge's, zeros where it gives none;
    (keys, mask) for a transformer decoder."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        self.encoder, self.bridge = encoder, getattr(decoder, "bridge", None)
        if self.bridge is not None:
            self.layers, self.hidden, self.lstm = _state_shape(decoder)

    def forward(self, src):
        from ..kinds.seq2seq import encode
        keys, state, mask = encode(self.encoder, src)
        if self.bridge is None:
            return keys, mask
        state = self.bridge(state)
        if state is None:
            h = keys.new_zeros(self.layers, src.shape[0], self.hidden)
            state = (h, h) if self.lstm else h
        return (keys, mask, *state) if self.lstm else (keys, mask, state)


class DecoderStep(nn.Module):
    """One decoding step; <PAD> and <GO> are never outputs (as in netspec's own decoding)."""

    def __init__(self, decoder: nn.Module):
        super().__init__()
        self.decoder = decoder
        self.lstm = _state_shape(decoder)[2]

    def forward(self, tokens, keys, mask, h, c=None):
        from ..kinds.seq2seq_search import stepper
        logp, state = stepper(self.decoder, (keys, mask))(tokens, (h, c) if self.lstm else h)
        return (logp, *state) if self.lstm else (logp, state)


class PrefixStep(nn.Module):
    """One decoding step of a transformer decoder from the whole prefix (the last position's
    output is the next token's distribution); <PAD> and <GO> are never outputs."""

    def __init__(self, decoder: nn.Module):
        super().__init__()
        self.decoder = decoder

    def forward(self, prefix, keys, mask):
        from ..kinds.seq2seq_search import next_log_probs
        return next_log_probs(self.decoder(prefix, None, (keys, mask))[0])

"""`kind: seq2seq`: an encoder and a decoder, each a layer list in the usual layer language,
and the wiring between them.

    encoder.layers   embedding first; recurrent layers (rnn/lstm/gru, stacked with
                     num_layers) and/or position_embedding, transformer_encoder_layer and
                     multi_head_attention (padding masked); dropout, linear, layer_norm and
                     activations between. Its outputs are what the decoder attends to; the
                     final state of its last recurrent layer (if any) seeds a recurrent decoder.
    decoder.layers   one of two shapes, each ending in an added projection to the target
                     vocabulary:
                     recurrent: embedding, then exactly one recurrent layer (one-way), then
                       optional per-step layers. With attention, the layers after the
                       recurrent layer read [its output, the attention context] side by side.
                     transformer: embedding, [position_embedding], transformer_decoder_layer
                       layers (each attends causally to the target so far and to the
                       encoder's outputs), optional per-step layers; no attention or bridge
                       settings. Decoding caches each layer's keys and values.

Token ids: <PAD> 0, <GO> 1, <EOS> 2, <UNK> 3, then the data's tokens by frequency.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from .base import Component, Strict, components
from .layers import LayerSpec
from .root import BaseSpec, BlockDef
from .training import LossSpec, OptimizerSpec

Size = Annotated[int, Field(gt=0)]


# --- attention over the encoder's outputs (Luong's dot/general, Bahdanau's additive) ---
class Dot(Component):
    """score = h . e (needs the decoder's hidden size equal to the encoder's output size)."""
    type: Literal["dot"] = "dot"


class General(Component):
    """score = h . W e."""
    type: Literal["general"] = "general"


class Additive(Component):
    """score = v . tanh(W1 h + W2 e); hidden_size defaults to the decoder's."""
    type: Literal["additive"] = "additive"
    first = "hidden_size"
    hidden_size: Size | None = None


AttentionSpec = components("attention", "attention", [Dot, General, Additive])


# --- decoding at inference ---
class Greedy(Component):
    """The most likely token at each step, from <GO> until <EOS> (or decoder.max_length)."""
    type: Literal["greedy"] = "greedy"


class Beam(Component):
    """Beam search keeping `width` hypotheses; the final choice divides each hypothesis'
    log-probability by ((5 + length) / 6) ** length_penalty (0: plain log-probability)."""
    type: Literal["beam"] = "beam"
    first = "width"
    width: Size = 5
    length_penalty: Annotated[float, Field(ge=0)] = 0.0


SearchSpec = components("search", "decoding search", [Greedy, Beam])


Blocks = dict[str, Annotated[list[LayerSpec], Field(min_length=1)] | BlockDef]


class Seq2SeqEncoder(Strict):
    layers: Annotated[list[LayerSpec], Field(min_length=1)]
    blocks: Blocks = {}  # as model.blocks: named layer lists, with params, used with `block: {use: ..}`
    max_length: Size = 50  # longest source sequence, in tokens (see too_long)


class Seq2SeqDecoder(Strict):
    layers: Annotated[list[LayerSpec], Field(min_length=1)]
    blocks: Blocks = {}
    # a recurrent decoder's view of the encoder's outputs (a transformer decoder has its own)
    attention: AttentionSpec | None = None
    # how the encoder's final state starts a recurrent decoder: copy (same layers and size), linear
    # (a learned projection, tanh for h), zeros (only with attention), auto: copy when it fits,
    # zeros when the encoder has no recurrent layer
    bridge: Literal["auto", "copy", "linear", "zeros"] = "auto"
    max_length: Size = 50  # longest target (tokens before <EOS>): in training data and when decoding
    teacher_forcing: Annotated[float, Field(ge=0, le=1)] = 1.0  # share of steps fed the true token
    search: SearchSpec = "greedy"


class Vocab(Strict):
    """Vocabularies, built from the train split and saved with each checkpoint."""
    shared: bool = False  # one vocabulary and one embedding table for both sides
    min_freq: Size = 1  # rarer tokens become <UNK>
    max_size: Size | None = None  # most frequent tokens kept (special tokens not counted)
    # vocabulary sizes, the 4 special tokens included: `netspec build` then needs no data; in
    # training the data's vocabulary must fit in them (ids beyond it stay unused)
    source_size: Size | None = None
    target_size: Size | None = None


class Seq2SeqSpec(BaseSpec):
    kind: Literal["seq2seq"]
    encoder: Seq2SeqEncoder
    decoder: Seq2SeqDecoder
    vocab: Vocab = Vocab()
    too_long: Literal["error", "truncate"] = "error"  # sequences over max_length: stop, or cut and warn
    loss: LossSpec = "cross_entropy"  # over target tokens; <PAD> is always ignored
    optimizer: OptimizerSpec | None = None

    @field_validator("loss")
    @classmethod
    def _loss(cls, v):
        if v.type != "cross_entropy":
            raise ValueError(f"a seq2seq decoder outputs logits over its vocabulary: loss must be "
                             f"cross_entropy (optionally with label_smoothing), not {v.type}")
        return v

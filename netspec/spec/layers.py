"""Layer components. Argument names follow the PyTorch class each stands for, minus the
sizes netspec infers (in_features, in_channels, input_size, num_features, ...)."""
from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field, model_validator

from .base import Component, components

Size = Annotated[int, Field(gt=0)]
NonNeg = Annotated[int, Field(ge=0)]
Pair = Union[Size, Annotated[list[Size], Field(min_length=1, max_length=3)]]
PadPair = Union[NonNeg, Annotated[list[NonNeg], Field(min_length=1, max_length=3)]]
Prob = Annotated[float, Field(ge=0, lt=1)]


# --- weight initialisers (applied to a layer's weight; its bias is set to zero) ---
class Init(Component):
    pass


class XavierUniform(Init):
    type: Literal["xavier_uniform"] = "xavier_uniform"
    first = "gain"
    gain: float = 1.0


class XavierNormal(Init):
    type: Literal["xavier_normal"] = "xavier_normal"
    first = "gain"
    gain: float = 1.0


class KaimingUniform(Init):
    type: Literal["kaiming_uniform"] = "kaiming_uniform"
    first = "nonlinearity"
    nonlinearity: Literal["relu", "leaky_relu", "linear", "tanh", "sigmoid", "selu"] = "relu"
    a: float = 0.0
    mode: Literal["fan_in", "fan_out"] = "fan_in"


class KaimingNormal(KaimingUniform):
    type: Literal["kaiming_normal"] = "kaiming_normal"


class Normal(Init):
    type: Literal["normal"] = "normal"
    first = "std"
    mean: float = 0.0
    std: Annotated[float, Field(gt=0)] = 0.01


class TruncatedNormal(Init):
    """As the notes' tf.truncated_normal: values beyond two std are redrawn."""
    type: Literal["truncated_normal"] = "truncated_normal"
    first = "std"
    mean: float = 0.0
    std: Annotated[float, Field(gt=0)] = 0.01


class Uniform(Init):
    type: Literal["uniform"] = "uniform"
    first = "a"
    a: float = -0.05
    b: float = 0.05


class Zeros(Init):
    type: Literal["zeros"] = "zeros"


class Orthogonal(Init):
    type: Literal["orthogonal"] = "orthogonal"
    first = "gain"
    gain: float = 1.0


InitSpec = components("init", "initializer", [XavierUniform, XavierNormal, KaimingUniform,
                                               KaimingNormal, Normal, TruncatedNormal, Uniform,
                                               Zeros, Orthogonal])


# --- layers ---
class Layer(Component):
    """Fields every layer item may carry beside its name: wiring."""
    name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = None
    inputs: str | Annotated[list[str], Field(min_length=1)] | None = None

    def args(self, *, exclude=()):
        return super().args(exclude=("name", "inputs", "activation", "init", *exclude))


class ReLU(Layer):
    type: Literal["relu"] = "relu"


class LeakyReLU(Layer):
    type: Literal["leaky_relu"] = "leaky_relu"
    first = "negative_slope"
    negative_slope: float = 0.01


class ELU(Layer):
    type: Literal["elu"] = "elu"
    first = "alpha"
    alpha: float = 1.0


class GELU(Layer):
    type: Literal["gelu"] = "gelu"
    first = "approximate"
    approximate: Literal["none", "tanh"] = "none"


class SELU(Layer):
    type: Literal["selu"] = "selu"


class SiLU(Layer):
    type: Literal["silu"] = "silu"


class Sigmoid(Layer):
    type: Literal["sigmoid"] = "sigmoid"


class Tanh(Layer):
    type: Literal["tanh"] = "tanh"


class Softmax(Layer):
    type: Literal["softmax"] = "softmax"
    first = "dim"
    dim: int = -1


class LogSoftmax(Softmax):
    type: Literal["log_softmax"] = "log_softmax"


ACTIVATIONS = [ReLU, LeakyReLU, ELU, GELU, SELU, SiLU, Sigmoid, Tanh, Softmax, LogSoftmax]
Activation = components("activation", "activation", ACTIVATIONS)


class Weighted(Layer):
    """A layer with weights: may name an initializer and a following activation."""
    init: InitSpec | None = None
    activation: Activation | None = None

    @model_validator(mode="after")
    def _plain_activation(self):
        act = self.activation
        if act is not None and (act.name is not None or act.inputs is not None):
            raise ValueError(f"an activation inside a layer takes no name or inputs; to wire it, write "
                             f"it as its own layer ('- {act.type}' with 'name: ...' beside it)")
        return self


class Linear(Weighted):
    """out_features: a number, or `vocab` for the size of the data's vocabulary (the
    output layer of a language model)."""
    type: Literal["linear"] = "linear"
    first = "out_features"
    out_features: Size | Literal["vocab"]
    bias: bool = True


class _Conv(Weighted):
    first = "out_channels"
    out_channels: Size
    kernel_size: Pair
    stride: Pair = 1
    padding: PadPair | Literal["same", "valid"] = 0
    dilation: Pair = 1
    groups: Size = 1
    bias: bool = True


class Conv1d(_Conv):
    type: Literal["conv1d"] = "conv1d"
    padding_mode: Literal["zeros", "reflect", "replicate", "circular"] = "zeros"


class Conv2d(_Conv):
    type: Literal["conv2d"] = "conv2d"
    padding_mode: Literal["zeros", "reflect", "replicate", "circular"] = "zeros"


class ConvTranspose2d(_Conv):
    type: Literal["conv_transpose2d"] = "conv_transpose2d"
    padding: PadPair = 0
    output_padding: PadPair = 0


class _Pool(Layer):
    first = "kernel_size"
    kernel_size: Pair
    stride: Pair | None = None
    padding: PadPair = 0
    ceil_mode: bool = False


class MaxPool1d(_Pool):
    type: Literal["max_pool1d"] = "max_pool1d"


class MaxPool2d(_Pool):
    type: Literal["max_pool2d"] = "max_pool2d"


class AvgPool1d(_Pool):
    type: Literal["avg_pool1d"] = "avg_pool1d"


class AvgPool2d(_Pool):
    type: Literal["avg_pool2d"] = "avg_pool2d"


class AdaptiveAvgPool2d(Layer):
    type: Literal["adaptive_avg_pool2d"] = "adaptive_avg_pool2d"
    first = "output_size"
    output_size: Pair = 1


class Upsample(Layer):
    type: Literal["upsample"] = "upsample"
    first = "scale_factor"
    scale_factor: Annotated[float, Field(gt=0)] | None = None
    size: Pair | None = None
    mode: Literal["nearest", "bilinear", "bicubic", "linear", "nearest-exact"] = "nearest"

    @model_validator(mode="after")
    def _one_of(self):
        if (self.scale_factor is None) == (self.size is None):
            raise ValueError("give exactly one of scale_factor or size")
        return self


class Identity(Layer):
    """Passes its input on unchanged (e.g. the skip path of a residual block)."""
    type: Literal["identity"] = "identity"


class Flatten(Layer):
    type: Literal["flatten"] = "flatten"


class Reshape(Layer):
    type: Literal["reshape"] = "reshape"
    first = "shape"
    shape: Annotated[list[Annotated[int, Field(ge=-1)]], Field(min_length=1)]


class Dropout(Layer):
    type: Literal["dropout"] = "dropout"
    first = "p"
    p: Prob = 0.5


class Dropout2d(Dropout):
    type: Literal["dropout2d"] = "dropout2d"


class BatchNorm(Layer):
    """1d or 2d by the rank of its input."""
    type: Literal["batch_norm"] = "batch_norm"
    first = "momentum"
    eps: Annotated[float, Field(gt=0)] = 1e-5
    momentum: Annotated[float, Field(ge=0, le=1)] | None = 0.1
    affine: bool = True
    track_running_stats: bool = True


class LayerNorm(Layer):
    """Normalises over the last dimension."""
    type: Literal["layer_norm"] = "layer_norm"
    first = "eps"
    eps: Annotated[float, Field(gt=0)] = 1e-5
    elementwise_affine: bool = True


class Embedding(Weighted):
    """Token ids -> vectors. num_embeddings comes from the data's vocabulary when omitted."""
    type: Literal["embedding"] = "embedding"
    first = "embedding_dim"
    embedding_dim: Size
    num_embeddings: Size | None = None
    padding_idx: int | None = None
    max_norm: Annotated[float, Field(gt=0)] | None = None


class _Recurrent(Weighted):
    """Batch-first recurrent layer over [T, features]. `output` picks what it passes on:
    the whole sequence [T, H*dirs], the last step [H*dirs], or the final hidden state of
    the top layer [H*dirs] (same as last for a one-way network, but it is the state at
    each sequence's true end when lengths are known)."""
    first = "hidden_size"
    hidden_size: Size
    num_layers: Size = 1
    bidirectional: bool = False
    dropout: Prob = 0.0
    bias: bool = True
    output: Literal["sequence", "last", "state"] = "sequence"


class RNN(_Recurrent):
    type: Literal["rnn"] = "rnn"
    nonlinearity: Literal["tanh", "relu"] = "tanh"


class LSTM(_Recurrent):
    type: Literal["lstm"] = "lstm"


class GRU(_Recurrent):
    type: Literal["gru"] = "gru"


# --- attention, transformers and sequence plumbing. A sequence is [time, features]. ---
class MultiHeadAttention(Weighted):
    """Multi-head attention over [time, features] (embed_dim is the input's features).
    One input: self-attention. Two inputs [query, memory]: cross-attention (keys and values
    from the memory). Padding keys (token id 0 in the model input) are masked out; `causal`
    lets each step see only earlier steps (a GPT-style decoder)."""
    type: Literal["multi_head_attention"] = "multi_head_attention"
    first = "num_heads"
    num_heads: Size
    dropout: Prob = 0.0
    bias: bool = True
    causal: bool = False


class _Transformer(Layer):
    """`activation` here is torch's: the feed-forward network's nonlinearity."""
    first = "nhead"
    init: InitSpec | None = None
    nhead: Size
    dim_feedforward: Size = 2048
    dropout: Prob = 0.1
    activation: Literal["relu", "gelu"] = "relu"
    layer_norm_eps: Annotated[float, Field(gt=0)] = 1e-5
    norm_first: bool = False
    bias: bool = True


class TransformerEncoderLayer(_Transformer):
    """torch.nn.TransformerEncoderLayer over [time, features] (d_model is the input's
    features): self-attention and a feed-forward network, each with a residual and a layer
    norm (after, or before with norm_first: true). `causal: true` makes it a GPT-style block."""
    type: Literal["transformer_encoder_layer"] = "transformer_encoder_layer"
    causal: bool = False


class TransformerDecoderLayer(_Transformer):
    """torch.nn.TransformerDecoderLayer: inputs [target, memory]; causal self-attention over
    the target, cross-attention to the memory (the encoder's output), feed-forward."""
    type: Literal["transformer_decoder_layer"] = "transformer_decoder_layer"
    causal: bool = True


class PositionEmbedding(Layer):
    """Adds a position vector to each step of [time, features]: `learned` (a trained table,
    as GPT and Keras' TokenAndPositionEmbedding) or `sinusoidal` (fixed, as in Vaswani et al.).
    max_length defaults to the input's time steps."""
    type: Literal["position_embedding"] = "position_embedding"
    first = "encoding"
    encoding: Literal["learned", "sinusoidal"] = "learned"
    max_length: Size | None = None


class Permute(Layer):
    """Reorders the sample's dimensions (numbered without the batch, as reshape's):
    `permute: [1, 0]` turns [time, features] into [features, time]."""
    type: Literal["permute"] = "permute"
    first = "dims"
    dims: Annotated[list[NonNeg], Field(min_length=2)]


class Transpose(Layer):
    """Swaps two of the sample's dimensions (numbered without the batch): `transpose: [0, 1]`."""
    type: Literal["transpose"] = "transpose"
    first = "dims"
    dims: Annotated[list[NonNeg], Field(min_length=2, max_length=2)]


class GlobalAvgPool(Layer):
    """Mean over time of a sequence [time, features] -> [features] (padding steps left
    out), or over space of [channels, ...] -> [channels]."""
    type: Literal["global_avg_pool"] = "global_avg_pool"


class GlobalMaxPool(Layer):
    """Maximum over time of a sequence [time, features] -> [features] (padding steps left
    out), or over space of [channels, ...] -> [channels]."""
    type: Literal["global_max_pool"] = "global_max_pool"


class Add(Layer):
    """Element-wise sum of its inputs (equal shapes)."""
    type: Literal["add"] = "add"


class Concat(Layer):
    """Concatenation of its inputs along `dim` (PyTorch numbering: 0 is the batch)."""
    type: Literal["concat"] = "concat"
    first = "dim"
    dim: int = -1


class Block(Layer):
    """Use a block from model.blocks, `repeat` times in a chain. A block with params takes
    values in `params` (every repetition) and `each` (one mapping per repetition, from the
    first; e.g. `each: [{stride: 2}]` sets the stride of the first repetition only)."""
    type: Literal["block"] = "block"
    first = "use"
    use: str
    repeat: Size = 1
    params: dict[str, Any] = {}
    each: list[dict[str, Any]] = []

    @model_validator(mode="after")
    def _each_fits(self):
        if len(self.each) > self.repeat:
            raise ValueError(f"each has {len(self.each)} mappings but repeat is {self.repeat}; "
                             "give at most one per repetition")
        return self


LAYER_CLASSES = ACTIVATIONS + [
    Linear, Conv1d, Conv2d, ConvTranspose2d, MaxPool1d, MaxPool2d, AvgPool1d, AvgPool2d,
    AdaptiveAvgPool2d, Upsample, Flatten, Reshape, Dropout, Dropout2d, BatchNorm, LayerNorm,
    Embedding, RNN, LSTM, GRU, Add, Concat, Block, MultiHeadAttention, TransformerEncoderLayer,
    TransformerDecoderLayer, PositionEmbedding, Permute, Transpose, GlobalAvgPool, GlobalMaxPool,
    Identity,
]
LayerSpec = components("layer", "layer", LAYER_CLASSES, siblings=("name", "inputs"))

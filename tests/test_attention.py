"""Attention, transformer layers, position embeddings, permutes, global pooling and the
sequence axis: torch-equivalence (torch's own modules' weights loaded into netspec's),
padding and causality invariances, cached decoding, and errors at the layer's line."""
from __future__ import annotations

import textwrap

import pytest
import torch
from torch import nn

import netspec
from netspec.compiler import materialize
from netspec.compiler.attention import MultiheadAttention, TransformerDecoderLayer, TransformerEncoderLayer
from netspec.errors import SpecError
from netspec.kinds import report


def load(layers: str, shape, extra: str = ""):
    text = f"name: t\nmodel:\n  input_shape: {list(shape)}\n{extra}  layers:\n" + textwrap.indent(
        textwrap.dedent(layers).strip("\n"), "    ") + "\n"
    return netspec.load(text)


def problems(layers, shape, extra=""):
    with pytest.raises(SpecError) as e:
        netspec.build(load(layers, shape, extra))
    return [(p.path, p.line, p.message) for p in e.value.problems]


TOKENS = "  input_dtype: long\n"


# --- equivalence with torch.nn -----------------------------------------------------------
@pytest.mark.parametrize("norm_first,activation", [(False, "relu"), (True, "gelu")])
def test_encoder_layer_equals_torch_with_its_weights(norm_first, activation):
    torch.manual_seed(0)
    ref = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, activation=activation, batch_first=True,
                                     norm_first=norm_first).eval()
    ours = TransformerEncoderLayer(16, 4, 32, 0.0, activation, norm_first=norm_first).eval()
    ours.load_state_dict(ref.state_dict())  # same parameter names and shapes
    x = torch.randn(3, 7, 16)
    pad = torch.zeros(3, 7, dtype=torch.bool)
    pad[0, 5:] = True
    torch.testing.assert_close(ours(x), ref(x))
    torch.testing.assert_close(ours(x, mask=pad)[:, :5], ref(x, src_key_padding_mask=pad)[:, :5])
    causal = nn.Transformer.generate_square_subsequent_mask(7)
    ours.self_attn.causal = True
    torch.testing.assert_close(ours(x), ref(x, src_mask=causal, is_causal=True))


def test_decoder_layer_and_cross_attention_equal_torch():
    torch.manual_seed(0)
    ref = nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0, batch_first=True).eval()
    ours = TransformerDecoderLayer(8, 2, 16, 0.0).eval()
    ours.load_state_dict(ref.state_dict())
    tgt, mem = torch.randn(2, 5, 8), torch.randn(2, 6, 8)
    causal = nn.Transformer.generate_square_subsequent_mask(5)
    torch.testing.assert_close(ours(tgt, mem), ref(tgt, mem, tgt_mask=causal, tgt_is_causal=True))
    # cross-attention to a memory of another width: separate projections, as torch's kdim
    ref_mha = nn.MultiheadAttention(8, 2, kdim=4, vdim=4, batch_first=True).eval()
    mha = MultiheadAttention(8, 2, kdim=4).eval()
    mha.load_state_dict(ref_mha.state_dict())
    m4 = torch.randn(2, 6, 4)
    torch.testing.assert_close(mha(tgt, m4), ref_mha(tgt, m4, m4, need_weights=False)[0])


def test_cached_decoding_equals_a_full_causal_pass():
    torch.manual_seed(0)
    layer = TransformerEncoderLayer(8, 2, 16, 0.0, causal=True, norm_first=True).eval()
    x = torch.randn(2, 6, 8)
    full = layer(x)
    cache: dict = {}
    steps = [layer(x[:, t:t + 1], cache=cache) for t in range(6)]
    torch.testing.assert_close(torch.cat(steps, 1), full)


# --- through the spec --------------------------------------------------------------------
CLASSIFIER = """
- embedding: {embedding_dim: 16, num_embeddings: 20}
- position_embedding
- transformer_encoder_layer: {nhead: 2, dim_feedforward: 32, dropout: 0.0}
- global_avg_pool
- linear: 3
"""


def _model(layers, shape, extra=TOKENS, pad=True):
    spec = load(layers, shape, extra)
    model = netspec.build(spec).eval()
    if pad:
        model.pad_index = 0
    return model


def test_padding_changes_no_result_of_a_transformer_classifier():
    model = _model(CLASSIFIER, [8])
    x = torch.tensor([[5, 6, 7, 0, 0, 0, 0, 0]])
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x[:, :3]))  # position table sliced to 3 steps
        for pool in ("global_max_pool",):
            m = _model(CLASSIFIER.replace("global_avg_pool", pool), [8])
            torch.testing.assert_close(m(x), m(x[:, :3]))


def test_causal_attention_never_reads_later_steps():
    layers = """
    - embedding: {embedding_dim: 8, num_embeddings: 20}
    - position_embedding: sinusoidal
    - transformer_encoder_layer: {nhead: 2, dim_feedforward: 16, dropout: 0.0, causal: true}
    - multi_head_attention: {num_heads: 2, causal: true}
    - linear: 20
    """
    model = _model(layers, [6], pad=False)
    a = torch.tensor([[3, 4, 5, 6, 7, 8]])
    b = a.clone()
    b[0, 4:] = torch.tensor([9, 10])
    with torch.no_grad():
        ya, yb = model(a), model(b)
    torch.testing.assert_close(ya[:, :4], yb[:, :4])
    assert not torch.allclose(ya[:, 4:], yb[:, 4:])


def test_transformer_in_a_block_gets_the_padding_mask():
    extra = TOKENS + "  blocks:\n    enc: [{transformer_encoder_layer: {nhead: 2, dim_feedforward: 16, dropout: 0.0}}]\n"
    layers = """
    - embedding: {embedding_dim: 8, num_embeddings: 20}
    - block: {use: enc, repeat: 2}
    - global_avg_pool
    """
    model = _model(layers, [6], extra)
    x = torch.tensor([[5, 6, 0, 0, 0, 0]])
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x[:, :2]))


def test_parameter_counts_equal_torch():
    rep = report(load("- transformer_encoder_layer: {nhead: 4, dim_feedforward: 64}", [10, 32]))
    ref = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True)
    assert rep["parameters"] == sum(p.numel() for p in ref.parameters())
    rep = report(load("- linear: 32\n  name: m\n- transformer_decoder_layer: 4\n  inputs: [input, m]", [10, 32]))
    ref = nn.TransformerDecoderLayer(32, 4, batch_first=True)
    assert rep["layers"][-1]["parameters"] == sum(p.numel() for p in ref.parameters())


def test_sinusoidal_table_is_real_after_materialising():
    spec = load("- position_embedding: sinusoidal", [4, 6])
    model = netspec.build(spec)
    out = model(torch.zeros(1, 4, 6))
    assert out[0, 0, 0] == 0.0 and out[0, 0, 1] == 1.0  # sin(0), cos(0)
    assert torch.isfinite(out).all() and out[0, 1, 0] == pytest.approx(torch.sin(torch.tensor(1.0)).item())
    assert sum(p.numel() for p in model.parameters()) == 0  # a fixed table, not weights


# --- the sequence axis -------------------------------------------------------------------
def test_one_d_layers_work_over_time_on_a_sequence():
    """The issue's trap: avg_pool1d: 32 on an embedding's [200, 32] gave [200, 1]."""
    rep = report(load("- embedding: {embedding_dim: 32, num_embeddings: 50}\n- avg_pool1d: 32", [200], TOKENS))
    assert rep["output_shape"] == [6, 32]  # 200 steps pooled by 32 over time; features kept
    spec = load("- embedding: {embedding_dim: 8, num_embeddings: 50}\n- conv1d: {out_channels: 4, kernel_size: 3}",
                [10], TOKENS)
    model = materialize(netspec.compiler.compile_network(spec, spec.model, ("model",), [], {}))
    x = torch.randint(1, 50, (2, 10))
    emb, conv = model.embedding_1, model.conv1d_1.inner
    want = conv(emb(x).transpose(1, 2)).transpose(1, 2)  # features are channels, time is length
    torch.testing.assert_close(model(x), want)


def test_unknown_names_do_not_point_into_the_axis_trap():
    ps = problems("- global_average_pool1d", [4, 4])
    assert "did you mean 'global_avg_pool'?" in ps[0][2]
    ps = problems("- GlobalMaxPooling1D", [4, 4])
    assert "did you mean 'global_max_pool'?" in ps[0][2]


@pytest.mark.parametrize("layers,shape,path,words", [
    ("- multi_head_attention: 3", [5, 8], "model.layers.0.multi_head_attention", "num_heads 3 must divide the features (8)"),
    ("- transformer_encoder_layer: 2", [8], "model.layers.0.transformer_encoder_layer", "expects input [time, features]"),
    ("- transformer_decoder_layer: 2", [5, 8], "model.layers.0.transformer_decoder_layer", "takes two inputs"),
    ("- position_embedding: {max_length: 4}", [5, 8], "model.layers.0.position_embedding", "max_length 4 is shorter"),
    ("- position_embedding: sinusoidal", [5, 7], "model.layers.0.position_embedding", "even number of features"),
    ("- permute: [0, 0]", [5, 8], "model.layers.0.permute", "each of the sample's dims 0..1 once"),
    ("- transpose: [0, 2]", [5, 8], "model.layers.0.transpose", "two different dims below 2"),
    ("- flatten\n- global_avg_pool", [5, 8], "model.layers.1.global_avg_pool", "move it before the flatten"),
])
def test_errors_name_the_layer_and_the_fix(layers, shape, path, words):
    ps = problems(layers, shape)
    assert ps[0][0] == path and ps[0][1] is not None and words in ps[0][2], ps

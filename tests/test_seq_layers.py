"""Sequence layers in any network: shapes with a data vocabulary (embedding size and
`linear: vocab` from the text), packing of padded batches (padding changes no output), and
errors at the layer's line (an LSTM fed a 4-D batch, a vocabulary larger than the table)."""
from __future__ import annotations

import pytest
import torch

import netspec
from netspec.compiler import Graph, materialize
from netspec.kinds import compile_spec, report
from netspec.errors import SpecError

LM = """
name: lm
data:
  source: {{text: {{path: {path}}}}}
model:
  input_shape: [12]
  input_dtype: long
  layers:
    - embedding: 8
    - gru: {{hidden_size: 16, num_layers: 2}}
    - linear: vocab
"""


def test_embedding_and_linear_vocab_take_the_texts_vocabulary(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("abcab cba\n" * 20, encoding="utf-8")  # 5 distinct characters: a b c space newline
    spec = netspec.load(LM.format(path=f))
    rep = report(spec)
    assert rep["output_shape"] == [12, 5]
    emb, gru, lin = rep["layers"]
    assert (emb["output_shape"], emb["parameters"]) == ([12, 8], 5 * 8)
    assert gru["output_shape"] == [12, 16]
    assert (lin["output_shape"], lin["parameters"]) == ([12, 5], 16 * 5 + 5)
    model = netspec.build(spec)
    assert rep["parameters"] == sum(p.numel() for p in model.parameters())
    out = model(torch.randint(0, 5, (3, 12)))
    assert out.shape == (3, 12, 5)


def test_linear_vocab_without_a_vocabulary_is_an_error_at_its_line():
    spec = netspec.load("name: x\nmodel:\n  input_shape: [4]\n  layers:\n    - linear: vocab\n")
    with pytest.raises(SpecError) as e:
        compile_spec(spec)
    (p,) = e.value.problems
    assert (p.line, p.path) == (5, "model.layers.0.linear")
    assert "needs a data source with a vocabulary" in p.message


def test_num_embeddings_smaller_than_the_vocabulary_is_refused(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("abcdefgh" * 10, encoding="utf-8")
    spec = netspec.load(LM.format(path=f).replace("embedding: 8", "embedding: {embedding_dim: 8, num_embeddings: 4}"))
    with pytest.raises(SpecError) as e:
        compile_spec(spec)
    assert "num_embeddings 4 is smaller than the data's vocabulary of 8" in e.value.problems[0].message


def test_an_lstm_fed_a_4d_batch_is_an_error_at_its_line(cli, write_spec):
    path = write_spec("""
        name: bad
        model:
          input_shape: [3, 8, 8]
          layers:
            - conv2d: {out_channels: 4, kernel_size: 3}
            - lstm: 16
        """)
    r = cli("build", path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"{path}:6:" in r.stderr
    assert "model.layers.1.lstm: lstm expects input [time, features], but gets [4, 6, 6]" in r.stderr


# --- padding changes nothing ---------------------------------------------------------------
CLASSIFIER = """
name: c
model:
  input_shape: [9]
  input_dtype: long
  layers:
    - embedding: {{embedding_dim: 6, padding_idx: 0}}
    - {layer}
"""


@pytest.mark.parametrize("layer", [
    "rnn: {hidden_size: 5, output: sequence}",
    "rnn: {hidden_size: 5, output: last}",
    "lstm: {hidden_size: 5, output: last}",
    "lstm: {hidden_size: 5, num_layers: 2, output: state}",
    "lstm: {hidden_size: 5, bidirectional: true, output: sequence}",
    "lstm: {hidden_size: 5, bidirectional: true, output: last}",
    "gru: {hidden_size: 5, output: last}",
    "gru: {hidden_size: 5, num_layers: 2, bidirectional: true, output: state}",
])
def test_a_padded_batch_gives_the_outputs_of_the_unpadded_sequences(layer):
    spec = netspec.load(CLASSIFIER.format(layer=layer))
    # a vocabulary whose id 0 is <PAD> (as text_csv makes it): the network packs its batches
    compiled = compile_spec(spec, vocab_size=12, pad_index=0)["model"]
    model = materialize(compiled, 0).eval()
    assert model.pad_index == 0
    g = torch.Generator().manual_seed(0)
    lengths = [9, 4, 1, 6, 2]
    seqs = [torch.randint(1, 12, (n,), generator=g) for n in lengths]
    batch = torch.zeros(len(seqs), 9, dtype=torch.long)
    for i, s in enumerate(seqs):
        batch[i, :len(s)] = s
    with torch.no_grad():
        padded = model(batch)
        model.pad_index = None  # the plain path, one unpadded sequence at a time
        for i, s in enumerate(seqs):
            alone = model(s[None])[0]
            if "sequence" in layer:
                assert torch.allclose(padded[i, :len(s)], alone, atol=1e-6)
                assert torch.all(padded[i, len(s):] == 0)  # nothing is computed over padding
            else:
                assert torch.allclose(padded[i], alone, atol=1e-6), (layer, lengths[i])


def test_without_packing_padding_would_change_the_result():
    """The check above is not vacuous: the same network without lengths reads the padding."""
    spec = netspec.load(CLASSIFIER.format(layer="lstm: {hidden_size: 5, output: last}"))
    model = materialize(compile_spec(spec, vocab_size=12, pad_index=0)["model"], 0).eval()
    s = torch.tensor([[3, 4, 5, 0, 0, 0, 0, 0, 0]])
    with torch.no_grad():
        packed = model(s)
        model.pad_index = None
        plain = model(s)
        alone = model(s[:, :3])
    assert torch.allclose(packed, alone, atol=1e-6)
    assert not torch.allclose(plain, alone, atol=1e-3)


def test_a_network_without_a_padded_vocabulary_does_not_pack():
    spec = netspec.load(CLASSIFIER.format(layer="gru: 4"))
    graph = compile_spec(spec, vocab_size=12)["model"].module
    assert isinstance(graph, Graph) and graph.pad_index is None

"""kind: seq2seq with transformer layers: the report without data, cached step-by-step
decoding against a full causal pass, beam search over the cache, padding, mixed wirings,
the wiring's errors at their lines, export, and the transformer spec trained end to end."""
from __future__ import annotations

import json

import pytest
import torch

import netspec
from netspec.errors import SpecError
from netspec.kinds import report
from netspec.kinds import seq2seq as Q
from netspec.kinds import seq2seq_search as S
from netspec.spec.seq2seq import Beam, Greedy

SPEC = """
name: s2s-transformer
kind: seq2seq
seed: 0
vocab: {{source_size: 12, target_size: 12}}
encoder:
  max_length: 6
  layers:
    - embedding: 16
    - {enc}
decoder:
  max_length: 6
  layers:
    - embedding: 16
    - {dec}
{extra}
optimizer: {{adam: 0.01}}
"""
ENC = "transformer_encoder_layer: {nhead: 2, dim_feedforward: 32, dropout: 0.0}"
LAYER = "transformer_decoder_layer: {nhead: 2, dim_feedforward: 32, dropout: 0.0}"
DEC = "position_embedding\n    - " + LAYER


def load(enc=ENC, dec=DEC, extra=""):
    return netspec.load(SPEC.format(enc=enc, dec=dec, extra=extra))


def model(seed=0, **kw):
    spec = load(**kw)
    torch.manual_seed(seed)
    m = netspec.build(spec).eval()
    with torch.no_grad():  # sharper logits than the initial ones, so greedy and beam can differ
        for p in m.parameters():
            p.mul_(3)
    return spec, m


SRC = torch.tensor([[5, 6, 7, 8, 9, 10], [9, 4, 0, 0, 0, 0], [6, 6, 11, 0, 0, 0]])


def test_build_without_data_reports_what_is_built():
    spec = load(dec=DEC + "\n    - " + LAYER)
    rep = report(spec)
    dec = rep["networks"]["decoder"]
    names = [r["name"] for r in dec["layers"]]
    assert names == ["embedding_1", "position_embedding_1", "transformer_decoder_layer_1",
                         "transformer_decoder_layer_2", "projection"]
    assert dec["layers"][-1]["output_shape"] == [7, 12]  # <GO> + 6 tokens, 12 target tokens
    m = netspec.build(spec)
    assert rep["parameters"] == sum(p.numel() for p in m.parameters())
    # torch's TransformerDecoderLayer has the same parameters
    ref = torch.nn.TransformerDecoderLayer(16, 2, 32, 0.0, batch_first=True)
    assert sum(p.numel() for p in m["decoder"].transformer_decoder_layer_1.parameters()) == \
        sum(p.numel() for p in ref.parameters())


def test_cached_steps_equal_the_full_causal_pass():
    """Each decoding step (one token against cached keys and values) gives the logits of
    the teacher-forced pass over the whole prefix."""
    spec, m = model(dec=DEC + "\n    - " + LAYER)
    tgt = torch.tensor([[1, 5, 6, 7, 2, 0, 0], [1, 4, 4, 2, 0, 0, 0], [1, 11, 10, 9, 8, 7, 6]])
    with torch.no_grad():
        full = Q.teacher_forced(m, SRC, tgt)
        keys, state, mask = Q.encode(m["encoder"], SRC)
        state = m["decoder"].begin(state)
        steps = [m["decoder"](tgt[:, t:t + 1], state, (keys, mask))[0] for t in range(tgt.shape[1] - 1)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)


def _no_cache_greedy(m, src, max_length):
    """Greedy decoding the slow way: re-run the whole prefix every step, no cache."""
    keys, _, mask = Q.encode(m["encoder"], src)
    seq = torch.full((len(src), 1), Q.GO_ID)
    for _ in range(max_length + 1):
        logits = m["decoder"](seq, None, (keys, mask))[0][:, -1]
        logits[:, [Q.PAD_ID, Q.GO_ID]] = float("-inf")
        seq = torch.cat([seq, logits.argmax(-1, keepdim=True)], 1)
    return [S.cut(r)[:max_length] for r in seq[:, 1:].tolist()]


def test_greedy_and_beam_decode_over_the_cache():
    spec, m = model()
    with torch.no_grad():
        greedy = Q.decode(m, SRC, Greedy(), max_length=6)
        assert greedy == _no_cache_greedy(m, SRC, 6)
        assert Q.decode(m, SRC, Beam(width=1), max_length=6) == greedy
        beams = Q.decode(m, SRC, Beam(width=4), max_length=6)
    # beam search reorders the cache as hypotheses change places: its choice is at least as
    # likely as greedy's (scored by the teacher-forced model, which uses no cache)
    for row, g, b in zip(SRC, greedy, beams):
        def logp(hyp):
            tgt = torch.tensor([[Q.GO_ID, *hyp, Q.EOS_ID]])[:, :8]
            with torch.no_grad():
                lp = torch.log_softmax(Q.teacher_forced(m, row[None], tgt)[0].float().index_fill(
                    -1, torch.tensor([Q.PAD_ID, Q.GO_ID]), float("-inf")), -1)
            return float(lp.gather(1, tgt[0, 1:, None]).sum())
        assert logp(b) >= logp(g) - 1e-4


def test_a_padded_source_decodes_as_the_unpadded_one():
    spec, m = model()
    with torch.no_grad():
        short = Q.decode(m, torch.tensor([[9, 4]]), Greedy(), 6)
        padded = Q.decode(m, torch.tensor([[9, 4, 0, 0, 0, 0]]), Greedy(), 6)
        alone = Q.teacher_forced(m, torch.tensor([[9, 4]]), torch.tensor([[1, 5, 6, 2]]))
        beside = Q.teacher_forced(m, SRC[:2], torch.tensor([[1, 5, 6, 2], [1, 5, 6, 2]]))[1:]
    assert short == padded
    torch.testing.assert_close(alone, beside, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("enc, dec, extra, rows", [
    # a recurrent encoder under a transformer decoder: the LSTM's outputs are the memory (24 wide: kdim)
    ("lstm: 24", DEC, "", ["transformer_decoder_layer_1"]),
    # a transformer encoder under a recurrent decoder: no final state, so the bridge starts it from zeros
    (ENC, "lstm: 16", "  attention: general", ["bridge", "attention"]),
])
def test_mixed_wirings_build_and_decode(enc, dec, extra, rows):
    spec = load(enc=enc, dec=dec, extra=extra)
    rep = report(spec)
    names = [r["name"] for r in rep["networks"]["decoder"]["layers"]]
    assert all(r in names for r in rows), names
    if "bridge" in rows:
        assert rep["networks"]["decoder"]["layers"][0]["type"] == "bridge (zeros)"
    m = netspec.build(spec).eval()
    with torch.no_grad():
        out = Q.decode(m, SRC, Beam(width=3), 6)
    assert len(out) == 3 and all(len(h) <= 6 for h in out)


def _problems(**kw):
    with pytest.raises(SpecError) as e:
        report(load(**kw))
    return e.value.problems


@pytest.mark.parametrize("kw, path, message", [
    (dict(extra="  attention: general"), "decoder.attention", "remove decoder.attention"),
    (dict(extra="  bridge: linear"), "decoder.bridge", "no recurrent state"),
    (dict(dec="transformer_decoder_layer: {nhead: 2, causal: false}"),
     "decoder.layers.1.transformer_decoder_layer.causal", "must not see later tokens"),
    (dict(dec=DEC + "\n    - transformer_encoder_layer: 2"), "decoder.layers.3.transformer_encoder_layer.causal",
     "set causal: true"),
    (dict(enc=LAYER), "encoder.layers.1.transformer_decoder_layer", "belongs in the decoder"),
    (dict(dec="transformer_decoder_layer: 3"), "decoder.layers.1.transformer_decoder_layer", "must divide"),
    (dict(dec="position_embedding: {max_length: 3}\n    - " + LAYER), "decoder.layers.1.position_embedding",
     "shorter than"),
    (dict(dec="linear: 16"), "decoder.layers", "or it is a transformer"),
])
def test_wiring_errors_point_at_their_line(kw, path, message):
    ps = _problems(**kw)
    assert any(p.path == path and message in p.message and p.line for p in ps), [str(p) for p in ps]


def test_an_encoder_error_does_not_hide_the_decoders():
    ps = _problems(enc="transformer_encoder_layer: 3", dec="transformer_decoder_layer: 5")
    assert {p.path for p in ps} == {"encoder.layers.1.transformer_encoder_layer",
                                    "decoder.layers.1.transformer_decoder_layer"}, [str(p) for p in ps]


def test_the_transformer_spec_trains_translates_and_exports(cli, tmp_path):
    r = cli("train", "specs/sort_letters_transformer.yaml", "--out", tmp_path, "-q",
            "--set", "train.epochs=4", "--set", "data.source.sort_letters.samples=4000",
            "--set", "optimizer.adam.lr=0.003", "--set", "decoder.search={beam: {width: 3}}")
    assert r.returncode == 0, r.stderr
    run = tmp_path / "sort-letters-transformer"
    metrics = json.loads((run / "metrics.json").read_text())
    # 4 short epochs: most letters already in order (measured 0.94 token accuracy, 0.69
    # exact match; an untrained network is near 1/26 and 0)
    assert metrics["val/accuracy"] > 0.85 and metrics["test/exact_match"] > 0.4, metrics
    out = netspec.load_run(run).translate(["dcba", "hello"])
    assert len(out) == 2 and all(isinstance(t, str) for t in out)
    r = cli("export", str(run), "--format", "onnx")
    assert r.returncode == 0, r.stderr
    assert "largest difference" in r.stdout + r.stderr
    # the exported pair decodes greedily, prefix by prefix in onnxruntime, as netspec does
    import numpy as np
    import onnxruntime as ort
    meta = json.loads((run / "sort-letters-transformer.json").read_text())
    assert meta["decoder_input"] == "prefix"
    encoder, decoder = (ort.InferenceSession(str(run / f"sort-letters-transformer.{p}.onnx"))
                        for p in ("encoder", "decoder"))
    words = ["hello", "cab", "zebra", "sort", "ox"]
    src = Q.ids([list(w) for w in words], meta["source_vocab"])
    pad = np.zeros((len(words), meta["source_length"]), np.int64)
    pad[:, :src.shape[1]] = src.numpy()
    keys, mask = encoder.run(None, {"src": pad})
    prefix = np.full((len(words), 1), Q.GO_ID, np.int64)
    for _ in range(meta["max_length"] + 1):
        logp = decoder.run(None, {"prefix": prefix, "keys": keys, "mask": mask})[0]
        prefix = np.concatenate([prefix, logp.argmax(-1)[:, None]], 1)
    got = [S.cut(row)[:meta["max_length"]] for row in prefix[:, 1:].tolist()]
    with torch.no_grad():
        assert got == Q.decode(netspec.load_run(run).model, src, Greedy(), meta["max_length"])


def test_a_shared_vocabulary_ties_the_transformer_embeddings():
    spec = netspec.load(SPEC.format(enc=ENC, dec=DEC, extra="").replace("vocab: {", "vocab: {shared: true, "))
    m = netspec.build(spec)
    assert m["encoder"].embedding_1 is m["decoder"].embedding_1
    assert report(spec)["parameters"] == sum(p.numel() for p in m.parameters())  # the table counted once


def test_the_python_example_runs(tmp_path):
    import subprocess
    import sys
    from conftest import ROOT
    p = subprocess.run([sys.executable, ROOT / "examples" / "sort_letters_transformer.py", "--epochs", "1",
                        "--out", tmp_path], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("test exact match") and lines[1].startswith("greedy: {'hello': ")
    assert lines[2].startswith("beam 4: {'hello': ")


def test_settings_problems_come_with_the_layer_problems_found_by_building():
    ps = _problems(dec="transformer_decoder_layer: {nhead: 5, causal: false}", extra="  attention: general")
    assert {p.path for p in ps} == {"decoder.layers.1.transformer_decoder_layer.causal", "decoder.attention",
                                    "decoder.layers.1.transformer_decoder_layer"}, [str(p) for p in ps]


BLOCKS = """
name: s2s-blocks
kind: seq2seq
vocab: {source_size: 12, target_size: 12}
encoder:
  max_length: 6
  blocks:
    layer: [{transformer_encoder_layer: {nhead: 2, dim_feedforward: 32, dropout: 0.0, norm_first: true}}]
  layers:
    - embedding: 16
    - position_embedding
    - block: {use: layer, repeat: 3}
    - layer_norm
decoder:
  max_length: 6
  blocks:
    layer:                      # a decoder layer and a residual feed-forward, with a parameter
      params: {ff: 32}
      layers:
        - transformer_decoder_layer: {nhead: 2, dim_feedforward: $ff, dropout: 0.0}
          name: att
        - linear: 16
        - add:
          inputs: [att, linear_1]
  layers:
    - embedding: 16
    - position_embedding
    - block: {use: layer, repeat: 2, each: [{ff: 8}]}
optimizer: adam
"""


def test_blocks_build_repeat_and_decode_over_the_cache():
    spec = netspec.load(BLOCKS)
    rep = report(spec)
    names = [r["name"] for r in rep["networks"]["decoder"]["layers"]]
    assert "layer_1.0.att" in names and "layer_1.1.add_1" in names, names
    torch.manual_seed(0)
    m = netspec.build(spec).eval()
    assert m["decoder"].get_submodule("layer_1.0.att").linear1.out_features == 8  # each: the first copy
    assert m["decoder"].get_submodule("layer_1.1.att").linear1.out_features == 32
    assert rep["parameters"] == sum(p.numel() for p in m.parameters())
    tgt = torch.tensor([[1, 5, 6, 7, 2, 0, 0], [1, 4, 4, 2, 0, 0, 0], [1, 11, 10, 9, 8, 7, 6]])
    with torch.no_grad():
        full = Q.teacher_forced(m, SRC, tgt)
        keys, state, mask = Q.encode(m["encoder"], SRC)
        state = m["decoder"].begin(state)
        steps = [m["decoder"](tgt[:, t:t + 1], state, (keys, mask))[0] for t in range(6)]
        torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
        assert Q.decode(m, SRC, Greedy(), 6) == _no_cache_greedy(m, SRC, 6)


@pytest.mark.parametrize("old, new, path, message", [
    ("    layer: [{transformer_encoder_layer:", "    layer: [{lstm: 16}, {transformer_encoder_layer:",
     "encoder.blocks.layer.0.lstm", "cannot be in a seq2seq encoder's block"),
    ("        - linear: 16\n", "        - linear: 16\n        - flatten\n",
     "decoder.blocks.layer.layers.2.flatten", "cannot be in a seq2seq decoder"),
    ("    - block: {use: layer, repeat: 3}", "    - block: {use: layers, repeat: 3}",
     "encoder.layers.2.block", "did you mean 'layer'"),
    ("dim_feedforward: $ff, dropout: 0.0}", "dim_feedforward: $ff, dropout: 0.0, causal: false}",
     "decoder.blocks.layer.layers.0.transformer_decoder_layer.causal", "must not see later tokens"),
])
def test_block_problems_point_into_the_block(old, new, path, message):
    assert old in BLOCKS
    with pytest.raises(SpecError) as e:
        report(netspec.load(BLOCKS.replace(old, new)))
    assert any(p.path == path and message in p.message and p.line for p in e.value.problems), \
        [str(p) for p in e.value.problems]


def test_problems_are_listed_in_the_order_of_the_file():
    ps = _problems(dec="transformer_decoder_layer: {nhead: 5, causal: false}", extra="  attention: general")
    lines = [(p.line, p.col) for p in ps]
    assert lines == sorted(lines) and len(ps) == 3

"""kind: seq2seq: the report of both networks, the wiring's errors at their lines, teacher
forcing against step-by-step decoding, beam search on a hand-built model, BLEU by hand, bad
data, and the letter-sorting spec trained end to end through the CLI."""
from __future__ import annotations

import json
import math
import subprocess

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import netspec
from netspec.kinds import seq2seq as Q
from netspec.kinds import seq2seq_search as S
from netspec.kinds import report
from netspec.errors import RunError, SpecError
from netspec.engine.runs import evaluate_run
from netspec.infer.commands import predict_run
from netspec.spec.seq2seq import Beam, Greedy
from netspec.data.text import bleu

from conftest import ROOT, netspec_command

SPEC = """
name: s2s
kind: seq2seq
seed: 0
data:
  source: {{sort_letters: {{samples: 300, min_length: 2, max_length: 5, alphabet: abcdef}}}}
  validation_split: 0.2
encoder:
  max_length: 5
  layers:
    - embedding: 8
    - {enc}
decoder:
  max_length: 5
  layers:
    - embedding: 8
    - {dec}
{extra}
optimizer: {{adam: 0.01}}
"""


def load(enc="lstm: {hidden_size: 16, num_layers: 2}", dec="lstm: {hidden_size: 16, num_layers: 2}", extra=""):
    return netspec.load(SPEC.format(enc=enc, dec=dec, extra=extra))


def problems(**kw) -> list:
    with pytest.raises(SpecError) as e:
        report(load(**kw))
    return e.value.problems


def test_build_json_reports_both_networks_and_their_sum(cli):
    r = cli("build", "specs/sort_letters.yaml", "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["kind"] == "seq2seq"
    enc, dec = rep["networks"]["encoder"], rep["networks"]["decoder"]
    for net in (enc, dec):
        assert {"parameters", "trainable_parameters", "output_shape", "layers"} <= set(net)
        assert net["parameters"] == sum(x["parameters"] for x in net["layers"])
    assert rep["parameters"] == enc["parameters"] + dec["parameters"]
    vocab = 4 + 26  # <PAD> <GO> <EOS> <UNK> + the letters
    assert enc["output_shape"] == [8, 128] and dec["output_shape"] == [9, vocab] == rep["output_shape"]
    assert [x["name"] for x in dec["layers"]] == ["bridge", "embedding_1", "lstm_1", "projection"]
    model = netspec.build(netspec.load(ROOT / "specs/sort_letters.yaml"))
    assert rep["parameters"] == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("att", ["dot", "general", "{additive: 12}"])
def test_attention_and_a_tail_layer_are_rows_with_real_shapes(att):
    spec = load(dec="lstm: 16\n    - linear: {out_features: 10, activation: tanh}",
                enc="lstm: {hidden_size: 8, bidirectional: true}", extra=f"  attention: {att}\n  bridge: linear")
    rep = report(spec)
    rows = {x["name"]: x for x in rep["networks"]["decoder"]["layers"]}
    assert rows["attention"]["output_shape"] == [6, 16 + 16]  # [decoder output, context]
    assert rows["linear_1"]["output_shape"] == [6, 10]
    model = netspec.build(spec)
    assert rep["parameters"] == sum(p.numel() for p in model.parameters())
    src = torch.tensor([[5, 6, 7, 0, 0], [4, 4, 5, 6, 7]])
    tgt = torch.tensor([[1, 5, 6, 2, 0], [1, 4, 5, 6, 2]])
    assert Q.teacher_forced(model, src, tgt).shape == (2, 4, rep["output_shape"][-1])


def test_linear_bridge_between_different_cells_and_sizes():
    spec = load(enc="gru: {hidden_size: 12, bidirectional: true}", dec="lstm: {hidden_size: 7, num_layers: 3}")
    rows = report(spec)["networks"]["decoder"]["layers"]
    assert rows[0]["type"] == "bridge (linear)" and rows[0]["output_shape"] == [3, 7]
    model = netspec.build(spec)
    _, state, _ = Q.encode(model["encoder"], torch.tensor([[5, 6, 0]]))
    h, c = model["decoder"].bridge(state)
    assert h.shape == c.shape == (3, 1, 7)


def test_shared_vocabulary_ties_the_embeddings():
    spec = load(extra="vocab: {shared: true}")
    model = netspec.build(spec)
    assert model["encoder"].embedding_1 is model["decoder"].embedding_1
    rep = report(spec)
    assert rep["parameters"] == sum(p.numel() for p in model.parameters())  # counted once
    text = SPEC.format(enc="lstm: 16", dec="lstm: 16", extra="vocab: {shared: true}")
    head, _, tail = text.rpartition("    - embedding: 8\n")  # the decoder's
    text = head + "    - embedding: 5\n" + tail
    with pytest.raises(SpecError) as e:
        report(netspec.load(text))
    (p,) = e.value.problems
    assert p.path == "decoder.layers.0.embedding" and "ties the decoder's embedding" in p.message


@pytest.mark.parametrize("kw, path, message", [
    (dict(dec="lstm: 16\n    - gru: 16"), "decoder.layers", "exactly one recurrent layer"),
    (dict(dec="lstm: {hidden_size: 16, bidirectional: true}"), "decoder.layers.1.lstm.bidirectional",
     "cannot be bidirectional"),
    (dict(enc="conv1d: {out_channels: 4, kernel_size: 3}"), "encoder.layers.1.conv1d", "cannot be in a seq2seq"),
    (dict(enc="lstm: {hidden_size: 16, output: last}"), "encoder.layers.1.lstm.output", "whole sequence"),
    (dict(enc="linear: 16"), "encoder.layers", "no final state starts the decoder"),
    (dict(enc="linear: 16", extra="  attention: general\n  bridge: copy"), "decoder.bridge", "use bridge: zeros"),
    (dict(dec="lstm: 16\n    - multi_head_attention: 2"), "decoder.layers.2.multi_head_attention",
     "cannot be in a recurrent decoder"),
    (dict(enc="lstm: 32", extra="  attention: dot"), "decoder.attention", "dot attention compares"),
    (dict(enc="lstm: 32", extra="  bridge: copy"), "decoder.bridge", "use bridge: linear"),
    (dict(extra="  bridge: zeros"), "decoder.bridge", "never sees the source"),
    (dict(dec="lstm: 16\n    - conv1d: {out_channels: 4, kernel_size: 1}"), "decoder.layers.2.conv1d",
     "cannot be in a seq2seq decoder"),
    (dict(dec="lstm: 16\n    - embedding: 4"), "decoder.layers.2.embedding", "token ids"),
])
def test_wiring_errors_point_at_their_line(kw, path, message):
    ps = problems(**kw)
    assert any(p.path == path and message in p.message and p.line for p in ps), [str(p) for p in ps]


def test_loss_must_be_cross_entropy_and_sequence_metrics_need_seq2seq():
    with pytest.raises(SpecError) as e:
        load(extra="loss: mse")
    assert e.value.problems[0].path == "loss" and "must be cross_entropy" in e.value.problems[0].message
    net = netspec.load("name: n\ndata: {source: digits}\nmodel: {input_shape: [1, 8, 8], layers: [flatten, "
                       "{linear: 10}]}\nloss: cross_entropy\noptimizer: adam\ntrain: {metrics: [accuracy, bleu]}\n")
    from netspec.kinds.network import check_monitor
    with pytest.raises(SpecError) as e:
        check_monitor(net)
    assert e.value.problems[0].path == "train.metrics.1" and "seq2seq metric" in e.value.problems[0].message


# --- decoding --------------------------------------------------------------------------
def _model(seed=0):
    spec = load(extra="  attention: general")
    torch.manual_seed(seed)
    return spec, netspec.build(spec).eval()


def test_teacher_forcing_and_step_by_step_decoding_agree():
    """Greedy decoding one step at a time = the teacher-forced path fed the greedy tokens."""
    spec, model = _model()
    src = torch.tensor([[5, 6, 7, 8, 0], [9, 4, 0, 0, 0], [6, 6, 6, 6, 6]])
    with torch.no_grad():
        out = Q.decode(model, src, spec.decoder.search, max_length=5)
        for row, hyp in zip(src, out):
            tgt = torch.tensor([[Q.GO_ID, *hyp, Q.EOS_ID]])
            logits = Q.teacher_forced(model, row[None], tgt)[0]
            logits[:, [Q.PAD_ID, Q.GO_ID]] = float("-inf")
            chosen = logits.argmax(-1).tolist()
            assert chosen[:len(hyp)] == hyp
            if len(hyp) < 5:
                assert chosen[len(hyp)] == Q.EOS_ID
        # teacher_forcing 0: each step is fed the model's own guess, which is what greedy does
        torch.manual_seed(0)
        tgt = torch.full((3, 6), Q.GO_ID)
        free = Q.teacher_forced(model, src, tgt, ratio=0.0)
        forced = Q.teacher_forced(model, src, tgt, ratio=1.0)
        assert not torch.allclose(free[:, 1:], forced[:, 1:])  # the inputs differ after <GO>
        assert torch.allclose(free[:, 0], forced[:, 0], atol=1e-6)


def test_a_padded_source_decodes_as_the_unpadded_one():
    spec, model = _model()
    with torch.no_grad():
        k1, s1, _ = Q.encode(model["encoder"], torch.tensor([[5, 6, 7]]))
        k2, s2, m2 = Q.encode(model["encoder"], torch.tensor([[5, 6, 7, 0, 0]]))
    assert torch.allclose(s1[0], s2[0], atol=1e-6) and torch.allclose(s1[1], s2[1], atol=1e-6)
    assert torch.allclose(k1[0], k2[0, :3], atol=1e-6) and m2.tolist() == [[True] * 3 + [False] * 2]


class Table:
    """A hand-built 'model': the next token's probabilities depend on the last token only.
    Vocabulary: <PAD> <GO> <EOS> <UNK> a(4) b(5). From <GO>: a 0.6, b 0.4. After a: <EOS> 0.4,
    a 0.3, b 0.3. After b: <EOS> 0.9. Greedy takes a (0.6), then <EOS>: 0.6 * 0.4 = 0.24; the
    most likely sequence is b <EOS> (0.4 * 0.9 = 0.36)."""
    P = {1: {4: 0.6, 5: 0.4}, 4: {2: 0.4, 4: 0.3, 5: 0.3}, 5: {2: 0.9, 4: 0.05, 5: 0.05}}

    def __call__(self, tokens, state):
        logp = torch.full((len(tokens), 6), float("-inf"))
        for i, t in enumerate(tokens.tolist()):
            for nxt, p in self.P.get(t, {2: 1.0}).items():
                logp[i, nxt] = math.log(p)
        return logp, state


def test_beam_search_finds_the_best_sequence_that_greedy_misses():
    step = Table()
    assert S.greedy(step, None, 1, max_length=4) == [[4]]  # a <EOS>
    assert S.beam_search(step, None, 1, width=2, max_length=4) == [[5]]  # b, then <EOS>
    assert S.beam_search(step, None, 3, width=3, max_length=4) == [[5]] * 3  # batched samples


def test_beam_of_width_one_is_greedy_on_a_real_model():
    spec, model = _model(seed=3)
    src = torch.tensor([[5, 6, 7, 8, 0], [9, 4, 0, 0, 0]])
    greedy = Q.decode(model, src, Greedy(), 5)
    beam1 = Q.decode(model, src, Beam(width=1), 5)
    beam4 = Q.decode(model, src, Beam(width=4), 5)
    assert greedy == beam1
    assert len(beam4) == 2 and all(len(h) <= 5 for h in beam4)


def test_bleu_by_hand():
    same = [list("abcdef"), list("xyzw")]
    assert bleu(same, same) == pytest.approx(100.0)
    assert bleu([list("abcd")], [list("wxyz")]) == 0.0
    # p1..p4 = 5/6, 4/5, 3/4, 2/3; equal lengths: no brevity penalty
    assert bleu([list("abcdef")], [list("abcdeg")]) == pytest.approx(100 * (1 / 3) ** 0.25)
    # every n-gram right but 4 tokens for 6: brevity penalty exp(1 - 6/4)
    assert bleu([list("abcd")], [list("abcdef")]) == pytest.approx(100 * math.exp(-0.5))


# --- bad data ------------------------------------------------------------------------------
def _tsv_spec(write_spec, path, extra=""):
    return write_spec(f"""
        name: t
        kind: seq2seq
        data:
          source: {{tsv: {{path: {path}}}}}
        encoder:
          max_length: 4
          layers: [{{embedding: 4}}, {{gru: 8}}]
        decoder:
          max_length: 4
          layers: [{{embedding: 4}}, {{gru: 8}}]
        optimizer: adam
        {extra}
        """)


def test_bad_tsv_and_text_files_are_spec_errors(write_spec, tmp_path):
    one = tmp_path / "one.tsv"
    one.write_text("a b\tb a\nlonely line\n", encoding="utf-8")
    with pytest.raises(SpecError) as e:
        report(netspec.load(_tsv_spec(write_spec, one)))
    (p,) = e.value.problems
    assert (p.path, p.line) == ("data.source.tsv.path", 4)
    assert p.message == f"{one} line 2 has 1 column; each line is 'source<TAB>target'"
    latin = tmp_path / "latin.tsv"
    latin.write_bytes("caf\xe9\tcafe\n".encode("latin-1"))
    with pytest.raises(SpecError, match="not UTF-8 text .* line 1"):
        report(netspec.load(_tsv_spec(write_spec, latin)))
    empty = tmp_path / "empty.tsv"
    empty.write_text("\n \n", encoding="utf-8")
    with pytest.raises(SpecError, match="is empty"):
        report(netspec.load(_tsv_spec(write_spec, empty)))


def test_too_long_sequences_error_or_truncate_as_the_spec_says(write_spec, tmp_path, capsys):
    f = tmp_path / "p.tsv"
    f.write_text("a b\tb a\na b c d e f\tf e d c b a\n", encoding="utf-8")
    with pytest.raises(SpecError) as e:
        report(netspec.load(_tsv_spec(write_spec, f)))
    p = e.value.problems[0]
    assert p.path == "encoder.max_length" and p.line == 6
    assert "1 source sequences are longer than encoder.max_length (4 tokens; the longest has 6)" in p.message
    assert "too_long: truncate" in p.message
    spec = netspec.load(_tsv_spec(write_spec, f, "too_long: truncate"))
    corpus = Q.read_pairs(spec)
    assert max(len(s) for s in corpus.splits["train"][0]) == 4
    assert "1 source sequences cut to 4 tokens" in capsys.readouterr().err


def test_sources_must_fit_the_kind(write_spec, tmp_path):
    txt = tmp_path / "t.txt"
    txt.write_text("hello world\n", encoding="utf-8")
    spec = netspec.load(_tsv_spec(write_spec, txt).read_text().replace("tsv:", "text:"))
    with pytest.raises(SpecError, match="seq2seq trains on sequence pairs"):
        Q.read_pairs(spec)
    net = netspec.load("name: n\ndata: {source: {sort_letters: 100}}\nmodel: {input_shape: [4], "
                       "input_dtype: long, layers: [{embedding: 3}]}\n")
    with pytest.raises(SpecError, match="use it in a 'kind: seq2seq' spec"):
        report(net)


def test_parallel_files_must_have_as_many_lines(write_spec, tmp_path):
    (tmp_path / "a.txt").write_text("x y\nz\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("y x\n", encoding="utf-8")
    text = _tsv_spec(write_spec, "unused").read_text().replace(
        "{tsv: {path: unused}}", f"{{parallel: {{source: {tmp_path / 'a.txt'}, target: {tmp_path / 'b.txt'}}}}}")
    with pytest.raises(SpecError, match="has 2 lines but .* has 1"):
        report(netspec.load(text))


def test_sort_letters_words_are_distinct_and_seeded():
    spec = load()
    a, b = Q.read_pairs(spec), Q.read_pairs(spec)
    assert a.splits == b.splits
    words = ["".join(w) for split in a.splits.values() for w in split[0]]
    assert len(words) == len(set(words)) == 300
    for src, tgt in zip(*a.splits["train"]):
        assert tgt == sorted(src)
    other = Q.read_pairs(netspec.load(SPEC.format(enc="lstm: 4", dec="lstm: 4", extra="").replace("seed: 0", "seed: 1")))
    assert other.splits != a.splits


# --- end to end ----------------------------------------------------------------------------
SMALL = ["--set", "data.source.sort_letters.samples=2000", "--set", "data.source.sort_letters.alphabet=abcdefgh",
         "--set", "data.source.sort_letters.max_length=6", "--set", "encoder.layers.1.lstm.hidden_size=64",
         "--set", "decoder.layers.1.lstm.hidden_size=64", "--set", "train.batch_size=32",
         "--set", "optimizer.adam.lr=0.01", "--set", "train.epochs=3", "--set", "train.threads=1"]


@pytest.mark.slow
def test_letter_sorting_trains_end_to_end(cli, tmp_path):
    """The shipped spec, made smaller (8 letters, words of 3-6, 2,000 of them, LSTMs of 64):
    three epochs reach >= 0.9 exact match on held-out words with greedy decoding."""
    r = cli("train", "specs/sort_letters.yaml", "--out", tmp_path, "-q", *SMALL)
    assert r.returncode == 0, r.stderr
    run = tmp_path / "sort-letters"
    m = json.loads((run / "metrics.json").read_text())
    assert m["test/exact_match"] >= 0.9, m
    assert m["val/exact_match"] >= 0.9 and m["test/accuracy"] >= 0.95 and m["test/bleu"] >= 90
    assert m["epochs"] == 3 and m["monitor"] == "val/exact_match"
    ev = EventAccumulator(str(run), size_guidance={"tensors": 0, "scalars": 0}).Reload()
    tags = ev.Tags()
    for t in ("train/loss", "val/loss", "val/accuracy", "val/exact_match", "val/bleu", "test/exact_match"):
        assert t in tags["scalars"], t
    texts = [e for e in ev.Tensors("samples/text_summary")]
    assert len(texts) == 3  # one table of decoded examples per epoch
    assert "| source | decoded | target |" in texts[-1].tensor_proto.string_val[0].decode()
    # predict: lines from stdin -> sorted letters; an empty line stays empty
    p = subprocess.run([*netspec_command(), "predict", str(run)], input="bad\n\nhcfa\ncab\n", text=True,
                       capture_output=True, cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["abd", "", "acfh", "abc"]
    # evaluate the best checkpoint: the same test metrics
    assert evaluate_run(run)["test/exact_match"] == pytest.approx(m["test/exact_match"])
    # a source longer than encoder.max_length: the spec says error
    long = tmp_path / "long.txt"
    long.write_text("abc\nabcdefghabc\n", encoding="utf-8")
    with pytest.raises(RunError, match="1 input lines are longer than encoder.max_length .* line 2"):
        predict_run(run, str(long))
    # the vocabularies travel with the checkpoint
    state = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert state["data"]["target_vocab"][:4] == ["<PAD>", "<GO>", "<EOS>", "<UNK>"]
    assert sorted(state["data"]["target_vocab"][4:]) == list("abcdefgh")


def test_a_checkpoint_keeps_its_vocabularies(write_spec, tmp_path):
    """Resuming on changed pairs is refused; evaluating encodes new data with the checkpoint's
    vocabularies (unseen tokens become <UNK>)."""
    f = tmp_path / "p.tsv"
    f.write_text("".join(f"{a} {b}\t{b} {a}\n" for a in "abcd" for b in "efgh"), encoding="utf-8")
    spec = netspec.load(_tsv_spec(write_spec, f, "train: {epochs: 1, batch_size: 8, threads: 1, metrics: [bleu]}"))
    netspec.train(spec, out=tmp_path / "runs", progress=False)
    run = tmp_path / "runs" / "t"
    f.write_text("".join(f"{a} {b}\t{b} {a}\n" for a in "abcz" for b in "efgh"), encoding="utf-8")
    with pytest.raises(RunError, match="vocabularies differ from the checkpoint's"):
        netspec.train(spec, out=tmp_path / "runs", resume=True, progress=False)
    res = evaluate_run(run, split="train")
    assert set(res) == {"train/loss", "train/bleu"} and res["train/loss"] > 0

"""Text sources and the models on them: a character-level language model trained through
the CLI (loss, perplexity, samples in TensorBoard, `netspec sample` with a prime and a
temperature), a sequence classifier on a text+label CSV (`netspec predict` on lines of
text), and bad text data."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import netspec
from netspec import data as D
from netspec.errors import RunError, SpecError
from netspec.engine.runs import evaluate_run
from netspec.infer.commands import predict_run, sample_run
from netspec.data.text import bleu, build_vocab, detokenize, tokenize

LM = """
name: lm
seed: 0
data:
  source: {{text: {{path: {path}}}}}
  validation_split: 0.2
model:
  input_shape: [{T}]
  input_dtype: long
  layers:
    - embedding: 8
    - lstm: 32
    - linear: vocab
loss: cross_entropy
optimizer: {{adam: 0.02}}
train: {{epochs: 3, batch_size: 16, threads: 1, metrics: [accuracy, perplexity]}}
"""


def lm_spec(path, T=16):
    return netspec.load(LM.format(path=path, T=T))


def test_text_windows_predict_the_next_token(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("abcdefghij" * 10, encoding="utf-8")
    spec = lm_spec(f, T=4)
    arrays = D.SOURCES["text"](spec.data.source, spec)
    assert arrays.vocab == list("abcdefghij") and arrays.task == "tokens"
    assert arrays.x.shape == arrays.y.shape == (24, 4)  # (100 - 1 - 4) // 4 + 1 windows, no overlap
    assert np.array_equal(arrays.x[0], [0, 1, 2, 3]) and np.array_equal(arrays.y[0], [1, 2, 3, 4])
    assert np.array_equal(arrays.x[1], [4, 5, 6, 7])


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (b" \n\n", "is empty"),
    ("Anna Karénina".encode("latin-1"), "is not UTF-8 text (byte 0xe9 on line 1"),
    (b"short", "has 5 char tokens; windows of 16 (model.input_shape) need at least 18"),
])
def test_bad_text_files_are_spec_errors_at_the_source(tmp_path, content, message):
    f = tmp_path / "bad.txt"
    f.write_bytes(content)
    with pytest.raises(SpecError) as e:
        D.load(lm_spec(f))
    (p,) = e.value.problems
    assert p.path == "data.source.text.path" and p.line == 5 and message in p.message


def test_a_missing_text_file_fails_the_build_at_its_line(write_spec):
    path = write_spec(LM.format(path="nowhere.txt", T=8))
    with pytest.raises(SpecError) as e:
        netspec.build(netspec.load(path))  # the vocabulary sizes the network needs come from the file
    assert str(e.value) == (f"{path}:4:25: data.source.text.path: no such file: nowhere.txt (relative paths "
                            f"start from the current directory, {Path.cwd()})")


def test_tokenizers_and_vocabularies():
    assert tokenize("Hello, world!", "word", lowercase=True) == ["hello", ",", "world", "!"]
    assert tokenize("ab c", "char") == ["a", "b", " ", "c"]
    assert detokenize(["a", "b"], "char") == "ab" and detokenize(["a", "b"], "word") == "a b"
    v = build_vocab([["b", "a", "b"], ["c", "b", "a", "d"]], ["<PAD>", "<UNK>"], min_freq=2)
    assert v == ["<PAD>", "<UNK>", "b", "a"]  # by frequency; c and d are too rare
    assert build_vocab([list("aabbbc")], [], max_size=2) == ["b", "a"]
    assert bleu([["x"]], [["x"]]) == 0.0  # no 4-grams at all: BLEU without smoothing is 0


@pytest.mark.slow
def test_char_lm_trains_and_samples(tmp_path, cli):
    text = tmp_path / "verse.txt"
    text.write_text("the cat sat on the mat. the dog sat on the log.\n" * 40, encoding="utf-8")
    spec = tmp_path / "lm.yaml"
    spec.write_text(LM.format(path=text, T=16), encoding="utf-8")
    r = cli("train", spec, "--out", tmp_path / "runs", "-q", "--set", "train.diagnose_every=2")
    assert r.returncode == 0, r.stderr
    run = tmp_path / "runs" / "lm"
    m = json.loads((run / "metrics.json").read_text())
    assert m["val/perplexity"] == pytest.approx(math.exp(m["val/loss"]))
    assert m["val/perplexity"] < 4  # a very repetitive text: far below the 15 characters' uniform guess
    assert m["val/accuracy"] > 0.6
    ev = EventAccumulator(str(run), size_guidance={"tensors": 0, "scalars": 0}).Reload()
    assert {"train/loss", "val/loss", "val/perplexity"} <= set(ev.Tags()["scalars"])
    samples = ev.Tensors("samples/text_summary")
    assert [e.step for e in samples] == [2 * m["steps"] // 3, m["steps"]]  # epochs 2 and 3 (the last)
    # netspec sample: the prime, then `length` characters; the same seed gives the same text
    a = cli("sample", run, "--prime", "the cat", "--length", "40", "--temperature", "0.5", "--seed", "1")
    assert a.returncode == 0, a.stderr
    assert a.stdout.startswith("the cat") and len(a.stdout.rstrip("\n")) == 7 + 40
    assert set(a.stdout.rstrip("\n")) <= set("the cat sat on mat. dog log\n")
    again = sample_run(run, n=1, prime="the cat", length=40, temperature=0.5, seed=1)
    assert again == [a.stdout.rstrip("\n")]
    cold = sample_run(run, n=3, prime="the cat", length=40, temperature=0.05, seed=2)
    hot = sample_run(run, n=3, prime="the cat", length=40, temperature=5.0, seed=2)
    assert len(set(cold)) < len(set(hot)) == 3  # low temperature: (nearly) always the likeliest text
    greedy = sample_run(run, n=2, prime="the cat", length=40, temperature=0, seed=1)
    assert greedy[0] == greedy[1] == sample_run(run, prime="the cat", length=40, temperature=0, seed=2)[0]
    with pytest.raises(SpecError, match="temperature -1: give 0 \\(always the most likely token\\) or more"):
        sample_run(run, prime="the cat", temperature=-1)
    sample_run(run, n=2, length=10, out=tmp_path / "s.txt")
    assert (tmp_path / "s.txt").read_text().count("--- sample") == 2
    with pytest.raises(RunError, match="never saw: 'x', 'y', 'z'"):
        sample_run(run, prime="xyz")
    # evaluating on another text: encoded with the model's vocabulary; unseen characters are refused
    other = tmp_path / "other.txt"
    other.write_text("the dog sat on the cat. " * 20, encoding="utf-8")
    res = evaluate_run(run, split="val", overrides=[f"data.source.text.path={other}"])
    assert res["val/loss"] > 0
    other.write_text("ZEBRAS " * 50, encoding="utf-8")
    with pytest.raises(SpecError, match="tokens the trained model never saw"):
        evaluate_run(run, split="val", overrides=[f"data.source.text.path={other}"])


CLASSIFIER = """
name: clf
seed: 0
data:
  source: {{text_csv: {{path: {path}, text: review, label: stars}}}}
  validation_split: 0.2
model:
  input_shape: [{T}]
  input_dtype: long
  layers:
    - embedding: 8
    - gru: {{hidden_size: 16, output: last}}
    - linear: 2
loss: cross_entropy
optimizer: {{adam: 0.03}}
train: {{epochs: 6, batch_size: 16, threads: 1, metrics: [accuracy]}}
"""


def _reviews(tmp_path, n=240):
    rng = np.random.default_rng(0)
    rows = ["review,stars"]
    for _ in range(n):
        good = rng.random() < 0.5
        word = rng.choice(["fine", "great", "nice"] if good else ["awful", "broken", "bad"])
        filler = " ".join(rng.choice(["the", "item", "was", "really", "quite"], rng.integers(0, 5)))
        rows.append(f"{filler} {word},{'high' if good else 'low'}")
    f = tmp_path / "reviews.csv"
    f.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return f


def test_text_csv_pads_and_builds_the_vocabulary_from_the_train_split(tmp_path):
    f = tmp_path / "r.csv"
    f.write_text('review,stars\n"good, very good",high\nbad,low\nzebra,low\n', encoding="utf-8")
    spec = netspec.load(CLASSIFIER.format(path=f, T=5).replace("validation_split: 0.2", "test_split: 0.34"))
    data = D.load(spec)
    assert data.classes == ["high", "low"] and data.vocab[:2] == ["<PAD>", "<UNK>"]
    texts = [["good", ",", "very", "good"], ["bad"], ["zebra"]]
    idx = D.split_indices(3, 0.0, 0.34, 0)
    assert set(data.vocab[2:]) == {t for i in idx["train"] for t in texts[i]}
    (held_out,) = idx["test"]
    test_x = data.splits["test"][0][0].tolist()
    n = len(texts[held_out])
    assert test_x[n:] == [0] * (5 - n)  # padded with <PAD> at the end
    unseen = [t for t in texts[held_out] if t not in data.vocab]
    assert unseen and test_x[:n] == [data.vocab.index(t) if t in data.vocab else 1 for t in texts[held_out]]


def test_text_csv_too_long_error_or_truncate(tmp_path, capsys):
    f = tmp_path / "r.csv"
    f.write_text("review,stars\none two three four five six,high\nok,low\n", encoding="utf-8")
    with pytest.raises(SpecError) as e:
        D.load(netspec.load(CLASSIFIER.format(path=f, T=4)))
    assert "1 texts are longer than model.input_shape (4 tokens; the longest has 6)" in e.value.problems[0].message
    spec = netspec.load(CLASSIFIER.format(path=f, T=4).replace("label: stars}", "label: stars, too_long: truncate}"))
    assert D.load(spec).splits["train"][0].shape[1] == 4
    assert "1 texts cut to 4 tokens" in capsys.readouterr().err


@pytest.mark.slow
def test_sequence_classifier_trains_and_predicts_lines(tmp_path, cli):
    spec = tmp_path / "clf.yaml"
    spec.write_text(CLASSIFIER.format(path=_reviews(tmp_path), T=8), encoding="utf-8")
    r = cli("train", spec, "--out", tmp_path / "runs", "-q")
    assert r.returncode == 0, r.stderr
    run = tmp_path / "runs" / "clf"
    m = json.loads((run / "metrics.json").read_text())
    assert m["val/accuracy"] >= 0.9, m  # the label is one word, anywhere among fillers
    lines = tmp_path / "lines.txt"
    lines.write_text("the item was great\nreally broken\n", encoding="utf-8")
    predict_run(run, str(lines), output=str(tmp_path / "out.jsonl"))
    out = (tmp_path / "out.jsonl").read_text().splitlines()
    assert [json.loads(line)["class"] for line in out] == ["high", "low"]


def test_resuming_on_a_changed_text_is_refused(tmp_path):
    """Token ids are positions in the vocabulary: a text with other characters would give the
    trained weights new meanings, even at the same vocabulary size."""
    f = tmp_path / "t.txt"
    f.write_text("abcabcabd\n" * 30, encoding="utf-8")
    spec = netspec.load(LM.format(path=f, T=8).replace("epochs: 3", "epochs: 1"))
    netspec.train(spec, out=tmp_path / "runs", progress=False)
    f.write_text("abcabcabx\n" * 30, encoding="utf-8")  # d -> x: same size, other tokens
    more = netspec.load(LM.format(path=f, T=8).replace("epochs: 3", "epochs: 2"))
    with pytest.raises(RunError, match=r"vocabulary \(5 tokens\) differs from the one in .*last.pt \(5 tokens\)"):
        netspec.train(more, out=tmp_path / "runs", resume=True, progress=False)

"""`netspec export`: the real exporter and onnxruntime, for every kind. Each exported graph
must agree with what `netspec predict` / `Run` computes (1e-4), and the ONNX files must run
where neither torch nor netspec can be imported."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

import netspec
from netspec.infer.export import export
from netspec.infer.unroll import unrolled

from conftest import ROOT, invoke, run_cli

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

NO_TORCH = "import sys\nsys.modules['torch'] = None\nsys.modules['netspec'] = None\n"  # imports fail


def readme_block(title: str, nth: int = 0) -> str:
    """The nth ```python block after a README heading containing `title`."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index(title):]
    return re.findall(r"```python\n(.*?)```", section, re.S)[nth]


def train(tmp_path, spec_file, *overrides):
    spec = netspec.load(ROOT / "specs" / spec_file, ["train.threads=1", *overrides])
    return netspec.train(spec, out=tmp_path / "runs", progress=False).folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    return {
        "digits": train(tmp, "digits_cnn.yaml", "train.epochs=2"),
        "gan": train(tmp, "digits_dcgan_conditional.yaml", "train.epochs=1"),
        "lm": train(tmp, "char_lm.yaml", "train.epochs=1", "data.source.text.max_tokens=3000",
                    f"data.source.text.path={ROOT / 'specs/data/tales.txt'}", "model.input_shape=[30]"),
        "clf": train(tmp, "seq_classifier.yaml", "train.epochs=2", "model.input_shape=[12]",
                     "data.source.text_csv.too_long=truncate",
                     f"data.source.text_csv.path={ROOT / 'specs/data/reviews.csv'}"),
        # attention over a bidirectional encoder whose padding is packed in training
        "s2s": train(tmp, "sort_letters_attention.yaml", "train.epochs=2", "data.source.sort_letters.samples=1500",
                     "encoder.layers.1.lstm={hidden_size: 32, bidirectional: true}",
                     "decoder.layers.1.lstm.hidden_size=32", "decoder.bridge=linear", "decoder.search=greedy"),
    }


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_network_onnx_agrees_with_netspec_predict(runs, tmp_path):
    run = runs["digits"]
    r = run_cli("export", run, "-o", tmp_path / "digits.onnx")
    assert r.returncode == 0, r.stderr
    diff = float(re.search(r"largest difference (\S+)\)", r.stdout).group(1))
    assert diff < 1e-4, r.stdout
    meta = json.loads((tmp_path / "digits.json").read_text())
    assert meta["classes"] == list(range(10)) and meta["input_shape"] == [1, 8, 8] and meta["output"] == "probabilities"
    from sklearn.datasets import load_digits
    x = (load_digits().images[:50] / 16).astype(np.float32)
    np.savez(tmp_path / "x.npz", x=x)
    r = invoke("predict", run, tmp_path / "x.npz", "-o", tmp_path / "p.jsonl")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    sess = session(tmp_path / "digits.onnx")
    assert [i.name for i in sess.get_inputs()] == ["x"] and sess.get_inputs()[0].shape[0] == "batch"
    got = sess.run(None, {"x": x[:, None]})[0]  # samples exactly as predict read them; batch 50
    assert np.abs(got - np.array([r["probabilities"] for r in rows])).max() < 1e-4
    assert [int(meta["classes"][k]) for k in got.argmax(1)] == [r["class"] for r in rows]
    # batch 1 too (dynamic batch), in a process where torch and netspec cannot be imported
    code = NO_TORCH + (f"import numpy as np, onnxruntime as ort\ns = ort.InferenceSession({str(tmp_path / 'digits.onnx')!r})\n"
                       f"x = np.load({str(tmp_path / 'x.npz')!r})['x'][:1, None]\nprint(s.run(None, {{'x': x}})[0].sum())")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert float(p.stdout) == pytest.approx(1.0, abs=1e-5)


def test_regression_normalisation_is_inside_the_graph(tmp_path, write_spec):
    spec = netspec.load(write_spec("""
        name: reg
        data: {source: {synthetic_regression: {samples: 200, outputs: 2}}, validation_split: 0.2, normalize: standard}
        model: {input_shape: [5], layers: [{linear: 16}, relu, {linear: 2}]}
        loss: mse
        optimizer: {adam: 0.01}
        train: {epochs: 2, batch_size: 32, threads: 1}
        """))
    folder = netspec.train(spec, out=tmp_path / "runs", progress=False).folder
    out = export(folder, "onnx", tmp_path / "reg.onnx", say=lambda s: None)
    x = (np.random.default_rng(0).normal(size=(9, 5)) * 3 + 2).astype(np.float32)  # raw, unnormalised
    got = session(out[0]).run(["value"], {"x": x})[0]
    want = netspec.load_run(folder).predict(x)
    assert want.what == "value" and np.abs(got - want.outputs).max() < 1e-4


def test_gan_exports_its_generator_in_the_data_range(runs, tmp_path):
    run = netspec.load_run(runs["gan"])
    export(run, "onnx", tmp_path / "g.onnx", say=lambda s: None)
    sess = session(tmp_path / "g.onnx")
    assert [i.name for i in sess.get_inputs()] == ["z", "labels"]
    meta = json.loads((tmp_path / "g.json").read_text())
    assert meta["latent_size"] == 32 and meta["conditional"] and meta["sample_shape"] == [1, 8, 8]
    z = run.model.noise(12, torch.Generator().manual_seed(5)).numpy()
    labels = np.full(12, 3, np.int64)
    got = sess.run(None, {"z": z, "labels": labels})[0]
    want = run.sample(12, label=3, seed=5)  # the same noise: Run.sample draws it with this seed
    assert got.shape == (12, 1, 8, 8) and np.abs(got - want).max() < 1e-4
    lo, hi = meta["data_range"]
    assert lo - 1e-6 <= got.min() and got.max() <= hi + 1e-6 and (lo, hi) == (0.0, 1.0)


def test_seq2seq_exports_encoder_and_decoder_step_and_the_readme_loop_runs(runs, tmp_path):
    run = netspec.load_run(runs["s2s"])
    files = export(run, "onnx", tmp_path / "s2s.onnx", say=lambda s: None)
    assert [f.name for f in files] == ["s2s.encoder.onnx", "s2s.decoder.onnx", "s2s.json"]
    # one decoder step agrees with netspec's own (packed) encoder and step
    words = ["hello", "cab", "abc", "zebra", "sort", "letters", "ox"]
    from netspec.kinds.seq2seq import ids
    from netspec.kinds.seq2seq_search import stepper
    src = ids([list(w) for w in words], run.info["source_vocab"])
    pad = np.zeros((len(words), run.spec.encoder.max_length), np.int64)
    pad[:, :src.shape[1]] = src.numpy()
    keys, mask, h, c = session(files[0]).run(None, {"src": pad})
    go = np.ones(len(words), np.int64)
    logp = session(files[1]).run(None, {"tokens": go, "keys": keys, "mask": mask, "h": h, "c": c})[0]
    from netspec.kinds.seq2seq import encode
    with torch.no_grad():
        k, state, m = encode(run.model["encoder"], src)
        dec = run.model["decoder"]
        want = stepper(dec, (k, m))(torch.ones(len(words), dtype=torch.long), dec.bridge(state))[0].numpy()
    finite = np.isfinite(want)
    assert (np.isfinite(logp) == finite).all() and np.abs(logp[finite] - want[finite]).max() < 1e-4
    # the README's numpy decode loop, without torch or netspec, translates as netspec does
    loop = readme_block("The seq2seq decode loop").replace('"runs/sort-letters/sort-letters"', repr(str(tmp_path / "s2s")))
    loop = loop.replace('print(translate(["hello", "world"]))', f"print(json.dumps(translate({words!r})))")
    p = subprocess.run([sys.executable, "-c", NO_TORCH + loop], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == run.translate(words)


def test_language_model_exports_next_token_probabilities(runs, tmp_path):
    run = netspec.load_run(runs["lm"])
    export(run, "onnx", tmp_path / "lm.onnx", say=lambda s: None)
    meta = json.loads((tmp_path / "lm.json").read_text())
    sess = session(tmp_path / "lm.onnx")
    texts = ["Once upon a time", "The", "and then the king said"]
    want = run.predict(texts)
    index = {t: i for i, t in enumerate(meta["vocab"])}
    for text, p in zip(texts, want.outputs):  # each at its own length: time is dynamic
        ids = np.array([[index[ch] for ch in text[-meta["window"]:]]], np.int64)
        probs, logits = sess.run(None, {"ids": ids})
        assert np.abs(probs[0] - p).max() < 1e-4
    assert want.labels == [meta["vocab"][i] for i in want.outputs.argmax(1)]
    # the README's sampling loop, without torch or netspec
    loop = readme_block("A language model samples the same way").replace('"runs/char-lm/char-lm"',
                                                                          repr(str(tmp_path / "lm")))
    loop = loop.replace('print(sample("Anna"))', 'print(sample("The", length=40))')
    p = subprocess.run([sys.executable, "-c", NO_TORCH + loop], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    text = p.stdout[:-1]
    assert text.startswith("The") and len(text) == 43 and set(text) <= set(meta["vocab"])


def test_sequence_classifier_unrolled_lstm_agrees_with_packed_predict(runs, tmp_path):
    run = runs["clf"]
    lines = tmp_path / "lines.txt"
    lines.write_text("the lamp is not bad\ngreat\nit broke after a day and the seller never answered\n")
    r = invoke("predict", run, lines)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert {row["class"] for row in rows} <= {"positive", "negative"}
    export(run, "onnx", tmp_path / "clf.onnx", say=lambda s: None)
    x = netspec.load_run(run)._encode_lines(lines.read_text().splitlines(), "lines").numpy()
    got = session(tmp_path / "clf.onnx").run(None, {"ids": x})[0]
    assert np.abs(got - np.array([row["probabilities"] for row in rows])).max() < 1e-4


@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN"])
def test_unrolled_recurrent_layers_equal_packed_ones(mode):
    """Masked steps compute what pack_padded_sequence does, both directions, stacked layers."""
    from netspec.compiler import Recurrent
    torch.manual_seed(0)
    rnn = getattr(torch.nn, mode)(6, 5, num_layers=2, bidirectional=True, batch_first=True)
    for output in ("sequence", "state", "last"):
        layer = Recurrent(rnn, output).eval()
        x, lengths = torch.randn(4, 7, 6), torch.tensor([7, 3, 1, 5])
        with torch.no_grad():
            assert torch.allclose(unrolled(layer)(x, lengths), layer(x, lengths), atol=1e-5)
            (a, sa), (b, sb) = unrolled(layer).steps(x, lengths), layer.steps(x, lengths)
        assert torch.allclose(a, b, atol=1e-5)
        for u, v in zip(sa if isinstance(sa, tuple) else (sa,), sb if isinstance(sb, tuple) else (sb,)):
            assert torch.allclose(u, v, atol=1e-5)


def test_torchscript_and_safetensors(runs, tmp_path):
    run = runs["digits"]
    x = torch.rand(5, 1, 8, 8)
    want = netspec.load_run(run).predict(x.numpy()).outputs
    r = invoke("export", run, "--format", "torchscript", "-o", tmp_path / "d.pt", "--checkpoint", "last")
    assert r.returncode == 0, r.stderr
    last = netspec.load_run(run, checkpoint="last").predict(x.numpy()).outputs
    with torch.no_grad():
        assert np.abs(torch.jit.load(str(tmp_path / "d.pt"))(x).numpy() - last).max() < 1e-5
    # safetensors (default: next to spec.yaml): netspec.build + load_state_dict, nothing unpickled
    r = invoke("export", run, "--format", "safetensors")
    assert r.returncode == 0, r.stderr
    code = readme_block("safetensors holds the state dict").replace("runs/digits-cnn", str(run))
    scope: dict = {}
    exec(code, scope)
    got = scope["model"].eval()(x).softmax(-1).detach().numpy()
    assert np.abs(got - want).max() < 1e-5
    # every kind: the names match netspec.build(spec), strictly
    from safetensors.torch import load_file
    for kind in ("gan", "s2s", "lm"):
        out = export(runs[kind], "safetensors", tmp_path / f"{kind}.safetensors", say=lambda s: None)
        model = netspec.build(netspec.load(runs[kind] / "spec.yaml"))
        model.load_state_dict(load_file(str(out[0])))


def test_export_errors_are_clear(runs, tmp_path):
    r = invoke("export", runs["digits"], "-o", tmp_path)
    assert r.returncode == 2 and "is a folder" in r.stderr and "Traceback" not in r.stderr
    r = invoke("export", runs["digits"], "-o", tmp_path / "missing" / "m.onnx")
    assert r.returncode == 2 and "does not exist" in r.stderr
    r = invoke("export", tmp_path)
    assert r.returncode == 2 and "not a run folder" in r.stderr

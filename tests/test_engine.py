"""The one engine, for every kind: what a run logs and reports, whatever its kind."""
from __future__ import annotations

import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import netspec
from conftest import run_cli
from netspec.engine.runs import evaluate_run

MLP = """
name: mlp
seed: 0
data: {source: digits, validation_split: 0.1, test_split: 0.2}
model:
  input_shape: [1, 8, 8]
  layers: [flatten, {linear: 32}, relu, {linear: 10}]
loss: cross_entropy
optimizer: {adam: {lr: 0.01}}
train: {epochs: 2, batch_size: 128, metrics: [accuracy], threads: 1}
"""

GAN = """
name: g
kind: gan
seed: 0
data: {source: digits}
latent: {size: 16}
generator:
  layers: [{linear: 64}, relu, {linear: 64}, sigmoid, {reshape: [1, 8, 8]}]
discriminator:
  layers: [flatten, {linear: 64}, {leaky_relu: 0.2}, {linear: 1}]
optimizer:
  generator: {adam: {lr: 0.001, betas: [0.5, 0.999]}}
  discriminator: {adam: {lr: 0.001, betas: [0.5, 0.999]}}
train: {epochs: 1, batch_size: 128, threads: 1, tensorboard: {graph: false}}
"""


def scalars(folder, tag):
    ev = EventAccumulator(str(folder), size_guidance={"scalars": 0}).Reload()
    return [(e.step, e.value) for e in ev.Scalars(tag)]


def test_a_resumed_run_logs_its_test_metrics_once(write_spec, tmp_path):
    spec = write_spec(MLP)
    out = tmp_path / "runs"
    netspec.train(netspec.load(spec), out=out, progress=False)
    for epochs in (3, 4):  # two more segments, each ending with a test
        netspec.train(netspec.load(spec, [f"train.epochs={epochs}"]), out=out, resume=True, progress=False)
    run = out / "mlp"
    steps = json.loads((run / "metrics.json").read_text())["steps"]
    assert [s for s, _ in scalars(run, "test/accuracy")] == [steps]  # one point, for the finished run
    assert [s for s, _ in scalars(run, "val/loss")] == [steps // 4 * e for e in (1, 2, 3, 4)]  # every epoch once


def test_quiet_silences_progress_not_the_result(write_spec, tmp_path):
    r = run_cli("train", write_spec(MLP), "--out", tmp_path, "-q")
    assert r.returncode == 0, r.stderr
    assert "test/accuracy" in r.stdout and "done in" in r.stdout
    assert "epoch 1/2" not in r.stdout + r.stderr


def test_evaluate_means_something_for_every_kind(write_spec, tmp_path):
    netspec.train(netspec.load(write_spec(GAN)), out=tmp_path, progress=False)
    m = evaluate_run(tmp_path / "g")  # no test split: the quality of the generator's samples
    assert 1 <= m["quality/score"] <= 10 and 0 <= m["quality/classes"] <= 10
    lm = write_spec(MLP.replace("test_split: 0.2", "test_split: 0"), "no_test.yaml")
    netspec.train(netspec.load(lm), out=tmp_path / "nt", progress=False)
    assert "val/accuracy" in evaluate_run(tmp_path / "nt" / "mlp")  # no test split: validation


def test_gan_metrics_do_not_depend_on_the_judge_cache(write_spec, tmp_path, monkeypatch):
    monkeypatch.setenv("NETSPEC_CACHE", str(tmp_path / "cache"))
    spec = netspec.load(write_spec(GAN))
    cold = netspec.train(spec, out=tmp_path / "cold", progress=False).metrics
    assert list((tmp_path / "cache").glob("quality-*.pt"))  # the judge is now cached
    warm = netspec.train(spec, out=tmp_path / "warm", progress=False).metrics
    for k in ("train/d_loss", "train/g_loss", "quality/score"):
        assert warm[k] == cold[k], k


def test_a_corrupt_judge_cache_is_trained_again(write_spec, tmp_path, monkeypatch):
    monkeypatch.setenv("NETSPEC_CACHE", str(tmp_path / "cache"))
    spec = netspec.load(write_spec(GAN))
    first = netspec.train(spec, out=tmp_path / "a", progress=False).metrics
    for f in (tmp_path / "cache").glob("quality-*.pt"):
        f.write_bytes(b"not a checkpoint")
    again = netspec.train(spec, out=tmp_path / "b", progress=False).metrics
    assert again["quality/score"] == first["quality/score"]


def test_seq2seq_runs_draw_their_graph(tmp_path):
    spec = netspec.load("specs/sort_letters.yaml", ["train.epochs=1", "data.source.sort_letters.samples=300"])
    netspec.train(spec, out=tmp_path, progress=False)
    ev = EventAccumulator(str(tmp_path / "sort-letters")).Reload()
    assert ev.Tags()["graph"]


@pytest.mark.parametrize("load, threads", [(0.0, 2), (1.0, 1), (5.0, 1)])
def test_threads_leave_busy_cores_alone(monkeypatch, load, threads):
    from netspec.engine import parts
    monkeypatch.delenv("NETSPEC_THREADS", raising=False)
    monkeypatch.setattr(parts.os, "sched_getaffinity", lambda _: {0, 1})
    monkeypatch.setattr(parts.os, "getloadavg", lambda: (load, load, load))
    train = netspec.load(MLP, ["train.threads=null"]).train
    assert parts.threads(train) == threads
    assert parts.threads(netspec.load(MLP).train) == 1  # train.threads wins
    monkeypatch.setenv("NETSPEC_THREADS", "2")
    assert parts.threads(train) == 2


def _epoch(path):
    from netspec.engine.runs import load_checkpoint
    try:
        return load_checkpoint(path)["epoch"]
    except Exception:  # not there yet
        return 0


@pytest.mark.parametrize("kind", ["gan", "seq2seq"])
def test_every_kind_resumes_after_sigkill_exactly(write_spec, tmp_path, kind):
    import signal
    import subprocess
    import time

    from conftest import netspec_command
    if kind == "gan":
        spec, name = write_spec(GAN), "g"
        extra = ["--set", "train.epochs=8", "--set", "train.batch_size=64", "--set", "train.diagnose_every=3"]
    else:
        spec, name = "specs/sort_letters.yaml", "sort-letters"
        extra = ["--set", "train.epochs=6", "--set", "data.source.sort_letters.samples=800",
                 "--set", "train.diagnose_every=2"]
    cmd = [*netspec_command(), "train", str(spec), *extra, "-q"]
    whole = subprocess.Popen([*cmd, "--out", str(tmp_path / "whole")], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    killed = subprocess.Popen([*cmd, "--out", str(tmp_path / "killed")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    last = tmp_path / "killed" / name / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 180
    while _epoch(last) < 2:
        assert killed.poll() is None, "the run finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    r = subprocess.run([*cmd, "--out", str(tmp_path / "killed"), "--resume"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert whole.wait() == 0, whole.stderr.read()
    a = json.loads((tmp_path / "whole" / name / "metrics.json").read_text())
    b = json.loads((tmp_path / "killed" / name / "metrics.json").read_text())
    keys = [k for k, v in a.items() if "/" in k and isinstance(v, float)]
    assert keys and a["steps"] == b["steps"]
    assert [b[k] for k in keys] == pytest.approx([a[k] for k in keys], abs=1e-6)


@pytest.mark.parametrize("spec", ["mlp", "gan", "specs/sort_letters.yaml"])
def test_mixed_precision_for_every_kind(write_spec, tmp_path, spec):
    """bf16 autocast on the CPU here; on CUDA the same path runs fp16 with a gradient scaler."""
    path = {"mlp": lambda: write_spec(MLP), "gan": lambda: write_spec(GAN)}.get(spec, lambda: spec)()
    s = netspec.load(path, ["train.precision=bf16", "train.epochs=1"]
                     + (["data.source.sort_letters.samples=300"] if "sort" in str(path) else []))
    m = netspec.train(s, out=tmp_path, progress=False).metrics
    assert all(v == v for k, v in m.items() if isinstance(v, float))  # no NaN

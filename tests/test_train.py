"""The supervised loop end to end: real `netspec train/evaluate/predict` processes reading
back metrics.json, checkpoints and TensorBoard event files, resume after SIGKILL, NaN stop,
and the loop's features (early stopping, schedulers, clipping, one-hot losses, logging
levels) on tiny synthetic specs."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import netspec
from netspec.engine.runs import evaluate_run, load_checkpoint
from netspec.infer.commands import predict_run

TINY = """
name: tiny
seed: 1
data:
  source: {synthetic_classification: {samples: 240, classes: 3, noise: 0.8}}
  validation_split: 0.25
  test_split: 0.25
model:
  input_shape: [4]
  layers:
    - linear: {out_features: 16, activation: relu}
    - dropout: 0.2
    - linear: 3
loss: cross_entropy
optimizer: {adam: 0.02}
train:
  epochs: 3
  batch_size: 16
  threads: 1
  metrics: [accuracy, {top_k_accuracy: 2}]
"""

REGRESSION = """
name: reg
seed: 2
data:
  source: {synthetic_regression: {samples: 300, outputs: 2, noise: 0.05}}
  validation_split: 0.2
  normalize: standard
model:
  input_shape: [5]
  layers: [{linear: 32}, relu, {linear: 2}]
loss: mse
optimizer: {adam: 0.01}
train: {epochs: 4, batch_size: 16, threads: 1, metrics: [mae, mse]}
"""

CLI = [sys.executable, "-m", "netspec.cli"]
NUMBERS = ("loss", "accuracy", "top_k_accuracy", "mae", "mse")


def events(folder) -> EventAccumulator:
    ea = EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 0})
    ea.Reload()
    return ea


def scalars(ea, tag) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in ea.Scalars(tag)]


def metric_values(m: dict) -> dict:
    """The metrics a run computes (not its wall time)."""
    return {k: v for k, v in m.items() if k != "seconds"}


def fit(write_spec, text, tmp_path, *overrides, name="spec.yaml"):
    spec = netspec.load(write_spec(text, name), list(overrides))
    return netspec.train(spec, out=tmp_path / "runs", progress=False, overwrite=True)


# --- the command line, end to end ---
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One real `netspec train` of the tiny spec; shared by the tests that read its outputs."""
    tmp = tmp_path_factory.mktemp("e2e")
    spec = tmp / "tiny.yaml"
    spec.write_text(TINY)
    r = subprocess.run([*CLI, "train", spec, "--out", tmp / "runs"], capture_output=True, text=True, cwd=tmp)
    assert r.returncode == 0, r.stderr
    return tmp, spec, tmp / "runs" / "tiny", r


def test_train_writes_the_run_folder(trained):
    tmp, spec, run, r = trained
    # progress lines (one per epoch when not on a terminal) and the final table
    assert [line.split()[1] for line in r.stderr.splitlines() if line.startswith("epoch ")] == ["1/3", "2/3", "3/3"]
    assert "samples/s" in r.stderr and "val/accuracy" in r.stderr
    assert "test/accuracy" in r.stdout and "done in" in r.stdout
    m = json.loads((run / "metrics.json").read_text())
    for split in ("train", "val", "test"):
        for k in ("loss", "accuracy", "top_k_accuracy"):
            assert 0 <= m[f"{split}/{k}"] < (1.0001 if k != "loss" else 10)
    assert m["epochs"] == 3 and m["steps"] == 3 * math.ceil(120 / 16)
    assert m["val/top_k_accuracy"] >= m["val/accuracy"]
    # the resolved spec loads back and is the spec that ran, every default written out
    again = netspec.load(run / "spec.yaml")
    assert again.train.epochs == 3 and again.train.log_every == 10 and again.data.normalize == "none"
    # checkpoints: last is the final epoch; best is the monitored best (val/loss by default)
    last, best = load_checkpoint(run / "checkpoints/last.pt"), load_checkpoint(run / "checkpoints/best.pt")
    assert last["epoch"] == 3 and last["step"] == m["steps"]
    assert best["epoch"] == m["best_epoch"] and best["metrics"]["val/loss"] == m["best"]


def test_event_files_hold_step_and_epoch_scalars_and_the_graph(trained):
    *_, run, _ = trained
    m = json.loads((run / "metrics.json").read_text())
    ea = events(run)
    tags = set(ea.Tags()["scalars"])
    assert {"train/loss", "train/accuracy", "val/loss", "val/accuracy", "val/top_k_accuracy",
            "test/accuracy", "test/loss", "epoch"} <= tags
    # the graph: one node per layer, named and wired as in the spec, with output shapes
    graph = {n.name: n for n in ea.Graph().node}
    assert list(graph) == ["input", "linear_1", "linear_1_relu", "dropout_1", "linear_2"]
    assert list(graph["linear_2"].input) == ["dropout_1"] and graph["linear_2"].op == "Linear"
    assert [d.size for d in graph["linear_1"].attr["_output_shapes"].list.shape[0].dim] == [-1, 16]
    # per-step loss: every log_every steps plus each epoch's tail, up to the last step
    steps = [s for s, _ in scalars(ea, "train/loss")]
    assert steps == sorted(set(steps)) and steps[0] == 8 and steps[-1] == m["steps"]
    # per-epoch values at each epoch's last step; the last one is what metrics.json says
    val = scalars(ea, "val/accuracy")
    assert [s for s, _ in val] == [8, 16, 24]
    assert val[-1][1] == pytest.approx(m["val/accuracy"], rel=1e-6)
    assert scalars(ea, "test/accuracy")[-1][1] == pytest.approx(m["test/accuracy"], rel=1e-6)
    # default verbosity 0 is cheap: no histograms, no lr or gradient-norm curves
    assert not ea.Tags()["histograms"] and "train/lr" not in tags and "train/grad_norm" not in tags


def test_evaluate_and_predict_a_trained_run(trained, tmp_path):
    tmp, _, run, _ = trained
    m = json.loads((run / "metrics.json").read_text())
    r = subprocess.run([*CLI, "evaluate", run], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got == pytest.approx({k: m[k] for k in ("test/loss", "test/accuracy", "test/top_k_accuracy")}, abs=1e-6)
    # the validation split with the last checkpoint is what the last epoch reported
    val = ("val/loss", "val/accuracy", "val/top_k_accuracy")
    assert evaluate_run(run, split="val", which="last") == pytest.approx({k: m[k] for k in val}, abs=1e-6)

    x = np.random.default_rng(0).normal(size=(7, 4)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    r = subprocess.run([*CLI, "predict", run, tmp_path / "in.npz", "-o", tmp_path / "out.jsonl"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(rows) == 7
    # the same answers as the best checkpoint's network on those inputs
    model = netspec.build(netspec.load(run / "spec.yaml"))
    model.load_state_dict(load_checkpoint(run / "checkpoints/best.pt")["model"])
    probs = model.eval()(torch.from_numpy(x)).softmax(-1).detach()
    for row, p in zip(rows, probs):
        assert row["class"] == int(p.argmax())
        assert row["probabilities"] == pytest.approx(p.tolist(), abs=1e-5)
    # inputs that do not fit are a command-line error (exit 2), naming the file
    np.savez(tmp_path / "bad.npz", x=np.zeros((2, 5), np.float32))
    with pytest.raises(netspec.SpecError) as e:
        predict_run(run, tmp_path / "bad.npz")
    assert "bad.npz" in str(e.value) and "the model reads [4]" in str(e.value)
    with pytest.raises(netspec.SpecError, match="no such file"):
        predict_run(run, tmp_path / "none.npz")


def test_existing_run_is_refused_without_overwrite_and_reruns_are_identical(trained):
    tmp, spec, run, _ = trained
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    m1 = json.loads((run / "metrics.json").read_text())
    r = subprocess.run([*CLI, "train", spec, "--out", tmp / "runs"], capture_output=True, text=True)
    assert r.returncode == 2 and "already holds a run" in r.stderr and "--overwrite" in r.stderr
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before  # nothing touched
    r = subprocess.run([*CLI, "train", spec, "--out", tmp / "runs", "--resume", "--overwrite"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "pick one" in r.stderr
    # --overwrite starts afresh; the same seed on the same machine gives the same numbers
    r = subprocess.run([*CLI, "train", spec, "--out", tmp / "runs", "--overwrite", "-q"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert len(list(run.glob("events.out.tfevents.*"))) == 1  # the old run's events are gone
    m2 = json.loads((run / "metrics.json").read_text())
    assert metric_values(m2) == metric_values(m1)


# --- resume after SIGKILL ---
RESUME = """
name: res
seed: 3
data:
  source: {synthetic_classification: {samples: 1500, classes: 4, noise: 1.5}}
  validation_split: 0.2
  test_split: 0.2
model:
  input_shape: [8]
  layers:
    - linear: {out_features: 32, activation: relu}
    - dropout: 0.3
    - linear: 4
loss: cross_entropy
optimizer: {sgd: {lr: 0.02, momentum: 0.9}}
train:
  epochs: 14
  batch_size: 8
  threads: 1
  metrics: [accuracy]
  monitor: train/loss          # improves nearly every epoch: a best.pt after each last.pt
  checkpoint_every: 3
  log_every: 7
  scheduler: {step: {step_size: 4, gamma: 0.5}}
  early_stopping: {patience: 50, monitor: val/loss}
"""


def _epoch(path):
    try:
        return load_checkpoint(path)["epoch"]
    except Exception:  # not there yet
        return 0


def test_resume_after_sigkill_ends_like_an_uninterrupted_run(tmp_path):
    spec = tmp_path / "res.yaml"
    spec.write_text(RESUME)
    whole = subprocess.Popen([*CLI, "train", spec, "--out", tmp_path / "whole", "-q"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = subprocess.Popen([*CLI, "train", spec, "--out", tmp_path / "killed", "-q"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = tmp_path / "killed" / "res"
    ckpt = run / "checkpoints"
    deadline = time.monotonic() + 120
    # kill once last.pt holds epoch >= 3 and a later best.pt is on disk: the killed run has
    # then logged events past its last checkpoint, which the resumed run must replace
    while not (_epoch(ckpt / "last.pt") >= 3 and _epoch(ckpt / "best.pt") > _epoch(ckpt / "last.pt")):
        assert killed.poll() is None, "the run finished before it could be killed; give it more epochs"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL
    last = load_checkpoint(ckpt / "last.pt")
    assert last["epoch"] < 14 and not (run / "metrics.json").exists()
    assert max(s for s, _ in scalars(events(run), "val/loss")) > last["step"]

    r = subprocess.run([*CLI, "train", spec, "--out", tmp_path / "killed", "--resume", "-q"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out, err = whole.communicate()
    assert whole.returncode == 0, err
    a = json.loads((tmp_path / "whole" / "res" / "metrics.json").read_text())
    b = json.loads((run / "metrics.json").read_text())
    assert a["epochs"] == b["epochs"] == 14 and a["steps"] == b["steps"]
    assert metric_values(b) == pytest.approx(metric_values(a), abs=1e-6)
    # TensorBoard: the purge dropped the killed run's events after its checkpoint, so each
    # curve has every step once, with the uninterrupted run's values
    ea, eb = events(tmp_path / "whole" / "res"), events(run)
    assert set(ea.Tags()["scalars"]) == set(eb.Tags()["scalars"])
    for tag in ea.Tags()["scalars"]:
        sa, sb = scalars(ea, tag), scalars(eb, tag)
        assert [s for s, _ in sb] == [s for s, _ in sa], tag
        assert [v for _, v in sb] == pytest.approx([v for _, v in sa], abs=1e-5), tag

    # resuming a finished run trains nothing more and reports the same
    c = netspec.train(netspec.load(spec), out=tmp_path / "killed", resume=True, progress=False).metrics
    assert metric_values(c) == pytest.approx(metric_values(b), abs=1e-6)


def test_resume_refuses_a_corrupt_or_foreign_checkpoint(write_spec, tmp_path):
    fit(write_spec, TINY, tmp_path, "train.epochs=1")
    spec = netspec.load(tmp_path / "spec.yaml")
    last = tmp_path / "runs" / "tiny" / "checkpoints" / "last.pt"
    cases = {"corrupt": lambda: last.write_bytes(last.read_bytes()[:1000]),
             "foreign": lambda: torch.save({"state_dict": torch.zeros(2)}, last),
             "pickled code": lambda: torch.save(torch.nn.Linear(2, 2), last)}
    for name, spoil in cases.items():
        spoil()
        with pytest.raises(netspec.RunError) as e:
            netspec.train(spec, out=tmp_path / "runs", resume=True, progress=False)
        assert str(last) in str(e.value), name
        assert "not a netspec checkpoint" in str(e.value) or "not a readable checkpoint" in str(e.value), name


# --- a diverging loss ---
def test_nan_loss_stops_with_exit_1_naming_the_step_and_checkpoint(write_spec, tmp_path):
    # the learning rate jumps a millionfold after epoch 1: epoch 2 diverges
    path = write_spec(REGRESSION.replace("adam: 0.01", "sgd: 0.01").replace(
        "metrics: [mae, mse]", "metrics: [mae], scheduler: {step: {step_size: 1, gamma: 1.0e+9}}"))
    r = subprocess.run([*CLI, "train", path, "--out", tmp_path / "runs"], capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    msg = r.stderr.strip().splitlines()[-1]
    step = int(msg.split(" at step ")[1].split(":")[0])
    per_epoch = math.ceil(240 / 16)
    assert per_epoch < step <= 2 * per_epoch, msg
    assert "diverged" in msg and str(tmp_path / "runs" / "reg" / "checkpoints" / "last.pt") in msg
    assert not (tmp_path / "runs" / "reg" / "metrics.json").exists()
    # the loss curve up to the failure is on disk, ending with the bad value
    curve = scalars(events(tmp_path / "runs" / "reg"), "train/loss")
    assert curve[-1][0] == step and not math.isfinite(curve[-1][1])
    assert all(math.isfinite(v) for _, v in curve[:-1])


# --- the loop's features, in process ---
def test_early_stopping_and_resuming_a_stopped_run(write_spec, tmp_path):
    r = fit(write_spec, TINY, tmp_path, "train.epochs=30",
            "train.early_stopping={patience: 2, min_delta: 10}")  # nothing improves by 10
    assert r.metrics["epochs"] == 3  # epoch 1 was the stopper's best; 2 and 3 did not beat it by 10
    again = netspec.train(netspec.load(tmp_path / "spec.yaml", ["train.epochs=30",
                                                                 "train.early_stopping={patience: 2, min_delta: 10}"]),
                          out=tmp_path / "runs", resume=True, progress=False)
    assert metric_values(again.metrics) == metric_values(r.metrics)


@pytest.mark.parametrize("sched, lrs", [
    ("{step: {step_size: 1, gamma: 0.5}}", [0.02, 0.01, 0.005]),
    ("{cosine: {T_max: 4}}", [0.02 * (1 + math.cos(math.pi * e / 4)) / 2 for e in (0, 1, 2)]),
    # threshold 0.99: epoch 2 does not improve on epoch 1 enough, so epoch 3 trains at half
    ("{plateau: {patience: 0, factor: 0.5, threshold: 0.99}}", [0.02, 0.02, 0.01]),
])
def test_schedulers_set_the_learning_rate_each_epoch(write_spec, tmp_path, sched, lrs):
    r = fit(write_spec, TINY, tmp_path, "optimizer={sgd: 0.02}", f"train.scheduler={sched}",
            "train.tensorboard.verbosity=1")
    got = [v for _, v in scalars(events(r.folder), "train/lr")]
    assert got == pytest.approx(lrs, rel=1e-6)


def test_gradient_clipping(write_spec, tmp_path):
    r = fit(write_spec, TINY, tmp_path, "train.clip_grad_norm=0.05", "train.tensorboard.verbosity=1",
            "train.log_every=1", "train.epochs=1")
    norms = [v for _, v in scalars(events(r.folder), "train/grad_norm")]
    assert len(norms) == 8 and max(norms) <= 0.05 * 1.001
    free = fit(write_spec, TINY, tmp_path, "train.tensorboard.verbosity=1", "train.log_every=1",
               "train.epochs=1", name="free.yaml")
    assert max(v for _, v in scalars(events(free.folder), "train/grad_norm")) > 0.05  # it had work to do
    r = fit(write_spec, TINY, tmp_path, "train.clip_grad_value=0.001", "train.tensorboard.verbosity=2",
            "train.epochs=1")
    ea = events(r.folder)
    grads = [t for t in ea.Tags()["histograms"] if t.startswith("grads/")]
    bound = 0.001 * 1.0001  # (float32)
    assert grads and all(-bound <= ea.Histograms(t)[-1].histogram_value.min and
                         ea.Histograms(t)[-1].histogram_value.max <= bound for t in grads)


def test_weight_decay_shrinks_the_weights(write_spec, tmp_path):
    def norm(run):
        state = load_checkpoint(run.folder / "checkpoints" / "last.pt")["model"]
        return sum(float(v.norm()) for k, v in state.items() if k.endswith("weight"))
    plain = norm(fit(write_spec, TINY, tmp_path, "optimizer={sgd: 0.05}"))
    decayed = norm(fit(write_spec, TINY, tmp_path, "optimizer={sgd: {lr: 0.05, weight_decay: 0.5}}"))
    assert decayed < 0.95 * plain


def test_regression_with_mse_and_mae(write_spec, tmp_path):
    r = fit(write_spec, REGRESSION, tmp_path)
    m = r.metrics
    assert {"train/mae", "val/mae", "val/mse", "val/loss"} <= set(m) and "val/accuracy" not in m
    assert m["val/mse"] == pytest.approx(m["val/loss"], rel=1e-5)  # the loss is the mean squared error
    mae = [v for _, v in scalars(events(r.folder), "val/mae")]
    assert len(mae) == 4 and mae[-1] < 0.5 * mae[0]
    # evaluate and predict normalise inputs with the run's own training statistics
    assert evaluate_run(r.folder, split="val", which="last") == pytest.approx(
        {k: m[k] for k in ("val/loss", "val/mae", "val/mse")}, abs=1e-6)
    x = np.random.default_rng(1).normal(size=(3, 5)).astype(np.float32)
    np.savez(tmp_path / "x.npz", x=x)
    out = tmp_path / "pred.jsonl"
    predict_run(r.folder, tmp_path / "x.npz", which="last", output=out)
    state = load_checkpoint(r.folder / "checkpoints" / "last.pt")
    model = netspec.build(netspec.load(r.folder / "spec.yaml"))
    model.load_state_dict(state["model"])
    stats = state["data"]["stats"]
    want = model.eval()((torch.from_numpy(x) - stats["shift"]) / stats["scale"]).detach()
    got = torch.tensor([json.loads(line)["value"] for line in out.read_text().splitlines()])
    assert torch.allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("loss", ["mse", "bce_with_logits"])
def test_one_hot_losses_on_class_labels(write_spec, tmp_path, loss):
    r = fit(write_spec, TINY, tmp_path, f"loss={loss}", "train.epochs=4")
    m = r.metrics
    assert m["val/accuracy"] > 0.6 and m["test/accuracy"] > 0.6  # 3 classes: chance is 1/3


def test_binary_bce_on_one_sigmoid_output(write_spec, tmp_path):
    r = fit(write_spec, TINY, tmp_path, "data.source.synthetic_classification.classes=2",
            "model.layers.2={linear: {out_features: 1, activation: sigmoid}}", "loss=bce", "train.epochs=4",
            "train.metrics=[accuracy]")
    assert r.metrics["val/accuracy"] > 0.7


@pytest.mark.parametrize("level", [0, 2, 3])
def test_tensorboard_verbosity_levels(write_spec, tmp_path, level):
    r = fit(write_spec, TINY, tmp_path, f"train.tensorboard.verbosity={level}", "train.epochs=2",
            "train.tensorboard.histogram_every=2")
    ea = events(r.folder)
    hist = ea.Tags()["histograms"]
    kinds = {t.split("/")[0] for t in hist}
    assert kinds == {0: set(), 2: {"weights", "grads"}, 3: {"weights", "grads", "activations"}}[level]
    if level:
        assert "weights/linear_1.weight" in hist and ea.Histograms("weights/linear_1.weight")[0].step == 16
        assert ("train/lr" in ea.Tags()["scalars"]) and ("train/grad_norm" in ea.Tags()["scalars"])


def test_bf16_mixed_precision_on_cpu(write_spec, tmp_path):
    r = fit(write_spec, TINY, tmp_path, "train.precision=bf16", "train.epochs=4")
    assert r.metrics["val/accuracy"] > 0.6


def test_python_api_after_the_module_was_imported(write_spec, tmp_path):
    import netspec.kinds.network  # noqa: F401 (importing a kind must not shadow the function)
    r = netspec.train(netspec.load(write_spec(TINY), ["train.epochs=1"]), out=tmp_path / "r", progress=False)
    assert r.metrics["epochs"] == 1 and (r.folder / "metrics.json").exists()


def test_example_script_trains_and_reads_the_metrics(tmp_path):
    r = subprocess.run([sys.executable, Path(__file__).parent.parent / "examples" / "train_digits.py", "--epochs", "1", "--out", tmp_path],
                       capture_output=True, text=True, env={**os.environ, "NETSPEC_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "digits-cnn-example" / "metrics.json").read_text())
    assert m["epochs"] == 1 and f"test accuracy {m['test/accuracy']:.4f}" in r.stdout


@pytest.mark.parametrize("name, least", [("digits_mlp", 0.97), ("digits_cnn", 0.98)])
def test_digits_specs_reach_high_test_accuracy(tmp_path, name, least):
    spec = netspec.load(Path(__file__).parent.parent / "specs" / f"{name}.yaml", ["train.threads=1"])
    r = netspec.train(spec, out=tmp_path, progress=False)
    assert r.metrics["test/accuracy"] >= least

"""Data-parallel training: `netspec train --nproc 2` (DistributedDataParallel, gloo on CPU)
learns the same curve as one process, with rank 0 alone writing the run folder."""
from __future__ import annotations

import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import run_cli

SPEC = """
name: ddp
seed: 0
data: {source: digits, validation_split: 0.1, test_split: 0.2}
model:
  input_shape: [1, 8, 8]
  layers: [flatten, {linear: 32}, relu, {linear: 10}]
loss: cross_entropy
optimizer: {sgd: {lr: 0.1, momentum: 0.9}}
train: {epochs: 4, batch_size: 100, metrics: [accuracy], threads: 1, tensorboard: {graph: false}}
"""


def _curves(folder):
    ea = EventAccumulator(str(folder))
    ea.Reload()
    return {tag: [(e.step, e.value) for e in ea.Scalars(tag)] for tag in ("train/loss", "val/loss")}


def test_two_processes_learn_the_same_curve_as_one(write_spec, tmp_path):
    spec = write_spec(SPEC)
    one = run_cli("train", spec, "--out", tmp_path / "one", "-q")
    two = run_cli("train", spec, "--out", tmp_path / "two", "--nproc", "2")
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    assert "Traceback" not in two.stderr
    a, b = _curves(tmp_path / "one" / "ddp"), _curves(tmp_path / "two" / "ddp")
    # the same global batch each step: the same number of steps, and the same model after each
    # (DDP averages the two half-batch gradients into the full batch's gradient)
    assert [s for s, _ in a["val/loss"]] == [s for s, _ in b["val/loss"]]
    for (_, x), (_, y) in zip(a["val/loss"], b["val/loss"]):
        assert y == pytest.approx(x, rel=1e-4)
    assert b["val/loss"][-1][1] < 0.5 * b["val/loss"][0][1]  # it learned
    # train/loss is rank 0's half of each batch: the same curve, not the same numbers
    assert [s for s, _ in a["train/loss"]] == [s for s, _ in b["train/loss"]]
    for (_, x), (_, y) in zip(a["train/loss"], b["train/loss"]):
        assert y == pytest.approx(x, abs=0.15)
    assert b["train/loss"][-1][1] < 0.25 * b["train/loss"][0][1]
    # rank 0 alone wrote the run: one event file, one metrics.json, its checkpoints
    folder = tmp_path / "two" / "ddp"
    assert len(list(folder.glob("events.out.tfevents.*"))) == 1
    metrics = json.loads((folder / "metrics.json").read_text())
    ref = json.loads((tmp_path / "one" / "ddp" / "metrics.json").read_text())
    assert metrics["epochs"] == 4 and metrics["steps"] == ref["steps"]
    assert metrics["test/accuracy"] == pytest.approx(ref["test/accuracy"], abs=0.01)
    assert (folder / "checkpoints" / "last.pt").exists() and (folder / "checkpoints" / "best.pt").exists()


def test_an_earlier_run_in_the_way_is_refused_before_any_rank_starts(write_spec, tmp_path):
    spec = write_spec(SPEC)
    (tmp_path / "ddp").mkdir()
    (tmp_path / "ddp" / "metrics.json").write_text("{}")  # an earlier run is in the way
    r = run_cli("train", spec, "--out", tmp_path, "--nproc", "2")
    assert r.returncode == 2, r.stderr
    assert "already holds a run" in r.stderr and "Traceback" not in r.stderr


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
train: {epochs: 1, batch_size: 64, threads: 1, tensorboard: {graph: false}}
"""


def _weights(folder):
    import torch
    return torch.load(folder / "checkpoints" / "last.pt", weights_only=True)


@pytest.mark.parametrize("kind", ["gan", "seq2seq"])
def test_every_kind_trains_data_parallel_to_the_same_weights(write_spec, tmp_path, kind):
    """The same global batch in two processes (noise drawn for the global batch and shared
    out; seq2seq's per-token mean over the global batch's tokens): the same weights."""
    if kind == "gan":
        spec, name, nets, extra = write_spec(GAN), "g", ("generator", "discriminator"), []
    else:
        spec, name, nets = "specs/sort_letters.yaml", "sort-letters", ("model",)
        extra = ["--set", "train.epochs=1", "--set", "data.source.sort_letters.samples=600"]
    one = run_cli("train", spec, "--out", tmp_path / "one", "-q", *extra)
    two = run_cli("train", spec, "--out", tmp_path / "two", "--nproc", "2", "-q", *extra)
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    a, b = _weights(tmp_path / "one" / name), _weights(tmp_path / "two" / name)
    for net in nets:
        worst = max(float((a[net][k].float() - b[net][k].float()).abs().max()) for k in a[net])
        assert worst < 1e-4, (net, worst)
    assert a["step"] == b["step"]

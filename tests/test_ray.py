"""The Ray executor on a real local Ray instance: the same trials, folders and results as
the local executor."""
from __future__ import annotations

import csv
import json

import pytest
import ray  # the 'ray' extra (pip install -e '.[test,ray]', as CI does): a missing Ray fails, never skips

import netspec.spec as S
from netspec.sweep import run_sweep

SPEC = """
name: tiny
data: {source: digits, validation_split: 0.1}
model:
  input_shape: [1, 8, 8]
  layers: [flatten, {linear: 16}, relu, {linear: 10}]
loss: cross_entropy
optimizer: {sgd: {lr: 0.1}}
train: {epochs: 2, metrics: [accuracy], tensorboard: {graph: false}}
sweep:
  grid:
    optimizer.sgd.lr: [0.2, 0.05]
"""


def _layout(folder):
    """Every file of a sweep, with event files named by kind (their names hold pid and time)."""
    out = set()
    for p in folder.rglob("*"):
        if p.is_file():
            rel = p.relative_to(folder)
            name = ("<events>.hparams" if p.name.endswith(".hparams") else "<events>") if "tfevents" in p.name else p.name
            out.add(str(rel.parent / name))
    return out


def test_ray_executor_runs_the_same_trials_as_local_processes(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(SPEC)
    local = run_sweep(S.load(spec_file), out=tmp_path / "local", workers=2, quiet=True)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        remote = run_sweep(S.load(spec_file), out=tmp_path / "ray", workers=2, executor="ray", quiet=True)
        assert ray.is_initialized()  # an instance the caller started is left to the caller
    finally:
        ray.shutdown()
    assert remote.failed == 0 and local.failed == 0
    assert [t.name for t in remote.trials] == [t.name for t in local.trials] == ["lr=0.2", "lr=0.05"]
    assert _layout(remote.folder) == _layout(local.folder)
    rows = {k: list(csv.DictReader((tmp_path / k / "tiny" / "results.csv").open())) for k in ("local", "ray")}
    assert [r["trial"] for r in rows["ray"]] == [r["trial"] for r in rows["local"]]
    for a, b in zip(rows["ray"], rows["local"]):
        assert a["status"] == b["status"] == "ok"
        for col in ("val/loss", "val/accuracy", "train/loss"):  # same seed, same threads: same numbers
            assert float(a[col]) == pytest.approx(float(b[col]), rel=1e-6)
    for t in remote.trials:
        m = json.loads((remote.folder / t.name / "metrics.json").read_text())
        assert m["epochs"] == 2 and (remote.folder / t.name / "checkpoints" / "last.pt").exists()

"""Sweeps: expansion (grid, random, paths into lists, errors at their line), and real sweeps
through the CLI: 2 workers with HParams in each trial's event file, a diverging trial, and
Ctrl-C followed by --resume."""
from __future__ import annotations

import csv
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, netspec_command, run_cli

import netspec.spec as S
from netspec.errors import SpecError
from netspec.sweep import expand, run_sweep, safe_name, short_names

BASE = """
name: tiny
data: {source: digits, validation_split: 0.1}
model:
  input_shape: [1, 8, 8]
  layers:
    - flatten
    - linear: 16
    - relu
    - linear: 10
loss: cross_entropy
optimizer: sgd
train: {epochs: 2, batch_size: 64, metrics: [accuracy], tensorboard: {graph: false}}
"""


def load(write_spec, sweep: str, overrides=()):
    return S.load(write_spec(BASE + sweep), list(overrides))


# --- expansion ---
def test_grid_is_the_cartesian_product_in_written_order(write_spec):
    spec = load(write_spec, """
sweep:
  grid:
    optimizer.sgd.lr: [0.1, 0.01]
    model.layers.1.linear: [8, 16, 32]
""")
    trials, dups = expand(spec)
    assert dups == 0
    assert [t.name for t in trials] == [f"lr={lr},linear={h}" for lr in ("0.1", "0.01") for h in (8, 16, 32)]
    for t in trials:
        assert t.spec.sweep is None
        assert t.spec.optimizer.lr == t.params["optimizer.sgd.lr"]
        assert t.spec.model.layers[1].out_features == t.params["model.layers.1.linear"]
        assert t.spec.optimizer.momentum == 0.0  # the rest of the spec is as written


def test_random_search_is_seeded_and_within_its_distributions(write_spec):
    text = """
sweep:
  random:
    trials: 6
    seed: {seed}
    params:
      optimizer.sgd.lr: {{log_uniform: [0.0001, 0.1]}}
      optimizer.sgd.momentum: {{uniform: [0.5, 0.9]}}
      train.batch_size: {{int: [16, 128]}}
      model.layers.2: {{choice: [relu, tanh, elu]}}
"""
    trials = expand(load(write_spec, text.format(seed=3)))[0]
    again = expand(load(write_spec, text.format(seed=3)))[0]
    other = expand(load(write_spec, text.format(seed=4)))[0]
    assert len(trials) == 6
    assert [t.params for t in trials] == [t.params for t in again]
    assert [t.params for t in trials] != [t.params for t in other]
    for t in trials:
        p = t.params
        assert 1e-4 <= p["optimizer.sgd.lr"] <= 0.1 and 0.5 <= p["optimizer.sgd.momentum"] <= 0.9
        assert isinstance(p["train.batch_size"], int) and 16 <= p["train.batch_size"] <= 128
        assert t.spec.train.batch_size == p["train.batch_size"]
        assert t.spec.model.layers[2].type == p["model.layers.2"]
    lrs = sorted(math.log10(t.params["optimizer.sgd.lr"]) for t in trials)
    assert lrs[-1] - lrs[0] > 0.5  # log-uniform spreads over decades, not clustered near 0.1


def test_paths_into_lists_and_shorthand_components(write_spec):
    # `- linear: 16` is shorthand for {linear: {out_features: 16}}; `optimizer: sgd` a bare name
    spec = load(write_spec, """
sweep:
  grid:
    model.layers.1.linear.out_features: [12]
    model.layers.3.linear.bias: [false]
    optimizer.sgd.momentum: [0.5]
""")
    (t,), _ = expand(spec)
    assert t.spec.model.layers[1].out_features == 12
    assert t.spec.model.layers[3].out_features == 10 and t.spec.model.layers[3].bias is False
    assert t.spec.optimizer.momentum == 0.5 and t.spec.optimizer.lr == 0.01


def test_set_applies_before_expansion_and_duplicates_are_removed(write_spec):
    spec = load(write_spec, """
sweep:
  grid:
    optimizer.sgd.lr: [0.1, 1.0e-1, 0.01]
""", ["optimizer.sgd.momentum=0.7", "train.epochs=1"])
    trials, dups = expand(spec)
    assert dups == 1  # 0.1 and 1.0e-1 are the same trial
    assert [t.params for t in trials] == [{"optimizer.sgd.lr": 0.1}, {"optimizer.sgd.lr": 0.01}]
    assert all(t.spec.optimizer.momentum == 0.7 and t.spec.train.epochs == 1 for t in trials)
    # --set can replace the grid itself
    spec = load(write_spec, "sweep: {grid: {optimizer.sgd.lr: [0.1]}}\n",
                ["sweep.grid={train.epochs: [1, 3], optimizer.sgd.lr: [0.5]}"])
    assert [t.name for t in expand(spec)[0]] == ["epochs=1,lr=0.5", "epochs=3,lr=0.5"]


BAD = BASE + """
sweep:
  grid:
    optimizer.sgd.lr:
      - 0.1
      - -1
    optimizer.sgd.momentm: [0.9]
    model.layers.1.linear: [16, 0]
    model.layers.7.linear: [3]
  metric: val/accuracy
"""


def test_every_bad_value_and_path_is_reported_at_its_line(write_spec):
    path = write_spec(BAD)
    lines = path.read_text().splitlines()
    with pytest.raises(SpecError) as e:
        expand(S.load(path))
    got = {p.path: p for p in e.value.problems}
    assert set(got) == {"optimizer.sgd.lr", "optimizer.sgd.momentm", "model.layers.1.linear",
                        "sweep.grid.model.layers.7.linear"}
    for p in got.values():
        assert p.file == str(path)
    # a bad value points at the value itself, naming how many trials it spoils
    assert lines[got["optimizer.sgd.lr"].line - 1].strip() == "- -1"
    assert "greater than 0" in got["optimizer.sgd.lr"].message and "of 4 sweep trials" in got["optimizer.sgd.lr"].message
    assert "[16, 0]" in lines[got["model.layers.1.linear"].line - 1]
    assert got["model.layers.1.linear"].col == lines[got["model.layers.1.linear"].line - 1].index("0]") + 1
    # a path that does not exist points at its sweep key, with the fix
    typo = got["optimizer.sgd.momentm"]
    assert lines[typo.line - 1].strip().startswith("optimizer.sgd.momentm:")
    assert "did you mean 'momentum'" in typo.message
    index = got["sweep.grid.model.layers.7.linear"]
    assert lines[index.line - 1].strip().startswith("model.layers.7.linear:")
    assert "list of 4 items" in index.message


def test_cli_bad_sweep_exits_2_without_traceback(write_spec):
    bad = run_cli("train", write_spec(BAD), "--dry-run")
    assert bad.returncode == 2, bad.stderr
    assert "Traceback" not in bad.stderr + bad.stdout
    assert "4 problems found." in bad.stderr
    assert all(line.startswith(f"{write_spec(BAD)}:") for line in bad.stderr.splitlines()[:-1])


def test_sweep_metric_must_be_a_metric_the_trials_write(write_spec):
    path = write_spec(BASE + "sweep: {grid: {optimizer.sgd.lr: [0.1]}, metric: val/acc}\n")
    with pytest.raises(SpecError) as e:
        expand(S.load(path))
    (p,) = e.value.problems
    assert p.path == "sweep.metric" and "did you mean 'val/accuracy'" in p.message
    assert path.read_text().splitlines()[p.line - 1][p.col - 1:].startswith("val/acc}")


def test_dry_run_lists_the_trials_and_writes_nothing(write_spec, tmp_path, capsys):
    spec = load(write_spec, "sweep: {grid: {optimizer.sgd.lr: [0.1, 0.01]}}\n")
    assert run_sweep(spec, out=tmp_path / "out", dry_run=True) is None
    out = capsys.readouterr().out
    assert "2 trials" in out and "lr=0.1" in out and "lr=0.01" in out
    assert not (tmp_path / "out").exists()


def test_trial_names_are_short_unique_and_filesystem_safe():
    assert short_names(["optimizer.adam.lr", "model.layers.1.linear", "model.layers.3.linear", "model.layers.2"]) == {
        "optimizer.adam.lr": "lr", "model.layers.1.linear": "layers.1.linear", "model.layers.3.linear": "layers.3.linear",
        "model.layers.2": "layers.2"}
    taken = set()
    names = [safe_name(x, taken) for x in ("act=a/b", "act=a b", "ACT=A B", "x=" + "9" * 300)]
    assert names[:3] == ["act=a_b", "act=a_b-2", "ACT=A_B-3"]  # unique even on case-blind file systems
    assert len(names[3]) <= 100
    assert all(n and "/" not in n and not n.startswith(".") for n in names)


# --- real sweeps ---
def _hparams(folder: Path) -> dict:
    """The HParams plugin data of one trial's TensorBoard run, read back with TensorBoard."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2
    ea = EventAccumulator(str(folder))
    ea.Reload()
    out = {tag: plugin_data_pb2.HParamsPluginData.FromString(content)
           for tag, content in ea.PluginTagToContent("hparams").items()}
    return {"plugin": out, "scalars": set(ea.Tags()["scalars"]), "ea": ea}


def test_sweep_with_two_workers_writes_hparams_per_trial_and_isolates_a_diverging_trial(write_spec, tmp_path):
    spec = write_spec(BASE + """
sweep:
  grid:
    optimizer.sgd.lr: [0.2, 0.05, 0.01, 1.0e+12]   # the last one diverges
    model.layers.1.linear: [16]
  metric: val/accuracy
""")
    r = run_cli("train", spec, "--workers", "2", "--out", tmp_path)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert "1 of 4 trials failed" in r.stderr
    sweep = tmp_path / "tiny"
    rows = list(csv.DictReader((sweep / "results.csv").open()))
    assert len(rows) == 4
    status = {row["trial"]: row["status"] for row in rows}
    assert status == {"lr=0.2,linear=16": "ok", "lr=0.05,linear=16": "ok", "lr=0.01,linear=16": "ok",
                      "lr=1e+12,linear=16": "failed"}
    failed = next(row for row in rows if row["status"] == "failed")
    assert "nan" in failed["error"] and "diverged" in failed["error"]
    ok = [row for row in rows if row["status"] == "ok"]
    accs = [float(row["val/accuracy"]) for row in ok]
    assert accs == sorted(accs, reverse=True) and rows[-1]["status"] == "failed"  # leaderboard order
    assert rows[0]["optimizer.sgd.lr"] and rows[0]["model.layers.1.linear"] == "16"
    doc = json.loads((sweep / "results.json").read_text())
    assert doc["metric"] == "val/accuracy" and doc["best"] == rows[0]["trial"]
    # two workers: the first two trials ran at the same time
    first = sorted(doc["trials"], key=lambda t: t["started"])[:2]
    assert first[1]["started"] < first[0]["started"] + first[0]["seconds"]
    # each trial: a run folder as for a single run, and the HParams row in its own run
    for row in rows:
        folder = sweep / row["trial"]
        assert (folder / "spec.yaml").exists()
        assert not [p for p in folder.rglob("*tfevents*") if p.parent != folder]  # no extra runs
        hp = _hparams(folder)
        plugin = hp["plugin"]
        # no experiment summary: TensorBoard would take one trial's columns for every sweep in
        # the log folder (test_hparams_tensorboard.py checks the tab through TensorBoard itself)
        assert set(plugin) == {"_hparams_/session_start_info", "_hparams_/session_end_info"}
        metric_tags = {"val/accuracy", "val/loss", "train/loss"}
        start = plugin["_hparams_/session_start_info"].session_start_info
        assert start.hparams["optimizer.sgd.lr"].number_value == float(row["optimizer.sgd.lr"])
        end = plugin["_hparams_/session_end_info"].session_end_info.status
        if row["status"] == "ok":
            assert end == 1  # STATUS_SUCCESS
            assert metric_tags <= hp["scalars"]  # metric tags are the logged scalar tags
            metrics = json.loads((folder / "metrics.json").read_text())
            for tag in metric_tags:  # the last value of each tag is the final metric (HParams shows it)
                assert hp["ea"].Scalars(tag)[-1].value == pytest.approx(metrics[tag], rel=1e-6)
            assert metrics["epochs"] == 2
        else:
            assert end == 2  # STATUS_FAILURE
            assert not (folder / "metrics.json").exists()


def test_ctrl_c_keeps_finished_trials_and_resume_finishes_the_rest(write_spec, tmp_path, capsys):
    spec = write_spec(BASE + """
sweep:
  grid:
    train.epochs: [2, 100]
""")
    proc = subprocess.Popen([*netspec_command(), "train", str(spec), "--workers", "2", "--out", str(tmp_path)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    short, long = tmp_path / "tiny" / "epochs=2", tmp_path / "tiny" / "epochs=100"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        done = (short / "trial.json").exists() and json.loads((short / "trial.json").read_text())["status"] == "ok"
        if done and (long / "checkpoints" / "last.pt").exists():
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in out + err and "continue with --resume" in err
    status = {t["trial"]: t["status"] for t in json.loads((tmp_path / "tiny" / "results.json").read_text())["trials"]}
    assert status == {"epochs=2": "ok", "epochs=100": "interrupted"}
    kept = (short / "metrics.json").stat().st_mtime_ns
    stopped_at = json.loads(subprocess.run(
        [sys.executable, "-c", "import json,sys,torch; s=torch.load(sys.argv[1], weights_only=True); "
                               "print(json.dumps(s['epoch']))", str(long / "checkpoints" / "last.pt")],
        capture_output=True, text=True).stdout)
    assert 1 <= stopped_at < 100

    # --resume, here through the library call the CLI makes (no second interpreter to start)
    result = run_sweep(S.load(spec), out=tmp_path, workers=2, resume=True)
    assert result.failed == 0
    assert "1 finished, 1 from a checkpoint" in capsys.readouterr().err
    assert (short / "metrics.json").stat().st_mtime_ns == kept  # the finished trial was not rerun
    log = (long / "trial.log").read_text()
    assert log.count(" resume (") == 1
    assert f"epoch {stopped_at + 1}/100" in log.split(" resume (")[1] and "epoch 1/100" not in log.split(" resume (")[1]
    metrics = json.loads((long / "metrics.json").read_text())
    assert metrics["epochs"] == 100
    rows = list(csv.DictReader((tmp_path / "tiny" / "results.csv").open()))
    assert {row["status"] for row in rows} == {"ok"} and len(rows) == 2
    steps = [e.step for e in _hparams(long)["ea"].Scalars("val/loss")]
    assert steps == sorted(set(steps)) and len(steps) == 100  # one point per epoch, none twice

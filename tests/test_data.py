"""Data sources, splits, normalisation, and the errors a user sees for data that does not fit."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import netspec
from netspec import data as D
from netspec.kinds.network import setup

BASE = """
name: d
seed: 0
data:
  source: {SOURCE}
  validation_split: 0.2
  test_split: 0.2
model:
  input_shape: [4]
  layers:
    - linear: {out_features: 8, activation: relu}
    - linear: 3
loss: cross_entropy
optimizer: {adam: 0.01}
train: {epochs: 1, threads: 1}
"""


def line_of(path, needle: str) -> int:
    """1-based line of the first line holding `needle`."""
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def problems(path, overrides=()):
    """Every problem loading the data and fitting it to the network reports."""
    spec = netspec.load(path, list(overrides))
    with pytest.raises(netspec.SpecError) as e:
        setup(spec, D.load(spec))
    return e.value.problems


def write_npz(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.fixture
def blobs(tmp_path):
    rng = np.random.default_rng(0)
    return write_npz(tmp_path / "d.npz", x=rng.normal(size=(60, 4)).astype(np.float32),
                     y=rng.integers(0, 3, 60))


# --- sources ---
def test_npz_and_csv_sources_load_with_class_names(tmp_path, write_spec, blobs):
    spec = netspec.load(write_spec(BASE.replace("{SOURCE}", f"{{npz: {blobs}}}")))
    d = D.load(spec)
    assert d.task == "classification" and d.num_classes == 3 and d.sample_shape == (4,)
    assert sum(len(x) for x, _ in d.splits.values()) == 60

    csv = tmp_path / "flowers.csv"
    csv.write_text("a,b,c,d,kind\n" + "".join(f"{i},{i % 3},{i * 0.5},1,{'rose tulip iris'.split()[i % 3]}\n"
                                              for i in range(30)))
    spec = netspec.load(write_spec(BASE.replace("{SOURCE}", f"{{csv: {{path: {csv}, target: kind}}}}")))
    d = D.load(spec)
    assert d.classes == ["iris", "rose", "tulip"]  # sorted names -> indices
    x, y = d.splits["train"]
    assert x.shape[1:] == (4,) and y.dtype == torch.int64 and set(y.tolist()) <= {0, 1, 2}
    # the same rows carry the same class index as their name
    full = {float(r.split(",")[0]): r.split(",")[4] for r in csv.read_text().splitlines()[1:]}
    for row, label in zip(x, y):
        assert d.classes[label] == full[float(row[0])]


def test_npz_one_hot_labels_become_indices(tmp_path, write_spec):
    y = np.eye(3, dtype=np.int64)[np.arange(30) % 3]
    f = write_npz(tmp_path / "oh.npz", x=np.ones((30, 4), np.float32), y=y)
    d = D.load(netspec.load(write_spec(BASE.replace("{SOURCE}", f"{{npz: {f}}}"))))
    assert d.num_classes == 3 and d.splits["train"][1].dim() == 1


def test_digits_source_matches_scikit_learn(write_spec):
    from sklearn.datasets import load_digits
    spec = netspec.load(write_spec(BASE.replace("{SOURCE}", "digits")), ["data.validation_split=0",
                                                                        "data.test_split=0"])
    d = D.load(spec)
    x, y = d.splits["train"]
    ref = load_digits()
    assert torch.equal(x[:, 0], torch.tensor(ref.images / 16.0, dtype=torch.float32))
    assert torch.equal(y, torch.tensor(ref.target))


def test_splits_are_seeded_and_disjoint(write_spec):
    path = write_spec(BASE.replace("{SOURCE}", "{synthetic_classification: {samples: 100, classes: 3}}"))
    a, b = D.load(netspec.load(path)), D.load(netspec.load(path))
    c = D.load(netspec.load(path, ["seed=5"]))
    assert {k: len(v[0]) for k, v in a.splits.items()} == {"train": 60, "val": 20, "test": 20}
    for k in a.splits:
        assert torch.equal(a.splits[k][0], b.splits[k][0])
    assert not torch.equal(a.splits["val"][1], c.splits["val"][1]) or \
        not torch.equal(a.splits["val"][0], c.splits["val"][0])
    idx = D.split_indices(100, 0.2, 0.2, 0)
    assert len(set(np.concatenate(list(idx.values())))) == 100
    with pytest.raises(netspec.SpecError, match="seed: must be at least 0"):
        netspec.load(path, ["seed=-1"])


@pytest.mark.parametrize("how", ["standard", "minmax"])
def test_normalisation_uses_train_statistics(write_spec, how):
    path = write_spec(BASE.replace("{SOURCE}", "{synthetic_regression: {samples: 200}}"))
    d = D.load(netspec.load(path, [f"data.normalize={how}"]))
    x = d.splits["train"][0]
    if how == "standard":
        assert torch.allclose(x.mean(0), torch.zeros(4), atol=1e-5)
        assert torch.allclose(x.std(0), torch.ones(4), atol=1e-4)
    else:
        assert torch.allclose(x.amin(0), torch.zeros(4)) and torch.allclose(x.amax(0), torch.ones(4))
    raw = D.load(netspec.load(path))
    # other splits get the train split's statistics, not their own
    s = d.stats
    assert torch.allclose(d.splits["val"][0], (raw.splits["val"][0] - s["shift"]) / s["scale"])
    # given statistics (a trained run's) are applied as they are
    again = D.load(netspec.load(path, [f"data.normalize={how}"]), stats=s)
    assert torch.equal(again.splits["test"][0], d.splits["test"][0])


# --- errors, each at its line ---
def test_missing_npz_file(write_spec):
    path = write_spec(BASE.replace("{SOURCE}", "{npz: {path: nowhere/data.npz}}"))
    (p,) = problems(path)
    assert p.path == "data.source.npz.path" and p.line == line_of(path, "nowhere")
    assert "no such file: nowhere/data.npz" in p.message


def test_missing_csv_file(write_spec):
    path = write_spec(BASE.replace("{SOURCE}", "{csv: {path: gone.csv, target: y}}"))
    (p,) = problems(path)
    assert p.path == "data.source.csv.path" and "no such file: gone.csv" in p.message


def test_wrong_npz_keys_name_what_the_file_holds(tmp_path, write_spec):
    f = write_npz(tmp_path / "k.npz", features=np.zeros((10, 4)), labels=np.zeros(10, int))
    path = write_spec(BASE.replace("{SOURCE}", f"{{npz: {{path: {f}, x: features}}}}"))
    (p,) = problems(path)
    assert p.path == "data.source.npz.y"
    assert "no array 'y'" in p.message and "features, labels" in p.message


def test_csv_missing_target_column(tmp_path, write_spec):
    f = tmp_path / "t.csv"
    f.write_text("a,b,c,d,label\n1,2,3,4,0\n5,6,7,8,1\n")
    path = write_spec(BASE.replace("{SOURCE}", f"{{csv: {{path: {f}, target: class}}}}"))
    (p,) = problems(path)
    assert p.path == "data.source.csv.target" and p.line == line_of(path, "target: class")
    assert "no column 'class'" in p.message and "a, b, c, d, label" in p.message


def test_csv_non_numeric_feature_names_row_and_column(tmp_path, write_spec):
    f = tmp_path / "t.csv"
    f.write_text("a,b,c,d,label\n1,2,3,4,0\n5,six,7,8,1\n")
    path = write_spec(BASE.replace("{SOURCE}", f"{{csv: {{path: {f}, target: label}}}}"))
    (p,) = problems(path)
    assert "line 3, column 'b': 'six' is not a number" in p.message


def test_data_shape_against_input_shape_at_its_line(blobs, write_spec):
    path = write_spec(BASE.replace("{SOURCE}", f"{{npz: {blobs}}}").replace("input_shape: [4]",
                                                                           "input_shape: [2, 2]"))
    (p,) = problems(path)
    assert p.path == "model.input_shape" and p.line == line_of(path, "input_shape")
    assert "[4]" in p.message and "set input_shape: [4]" in p.message


def test_labels_beyond_the_output_size(tmp_path, write_spec):
    f = write_npz(tmp_path / "l.npz", x=np.zeros((20, 4), np.float32), y=np.arange(20) % 5)
    path = write_spec(BASE.replace("{SOURCE}", f"{{npz: {f}}}"))
    (p,) = problems(path)
    assert p.path.startswith("model.layers.1") and p.line == line_of(path, "- linear: 3")
    assert "labels go up to 4" in p.message and "output 5" in p.message
    # the same for one-hot targets of mse
    (p,) = problems(path, ["loss=mse"])
    assert "5 classes" in p.message and "outputs 3" in p.message


def test_negative_and_fractional_labels(tmp_path, write_spec):
    f = write_npz(tmp_path / "n.npz", x=np.zeros((20, 4), np.float32), y=np.arange(20) % 3 - 1)
    (p,) = problems(write_spec(BASE.replace("{SOURCE}", f"{{npz: {f}}}")))
    assert "0 or more; found -1" in p.message
    f = write_npz(tmp_path / "f.npz", x=np.zeros((20, 4), np.float32), y=np.linspace(0, 1, 20))
    (p,) = problems(write_spec(BASE.replace("{SOURCE}", f"{{npz: {{path: {f}, task: classification}}}}")))
    assert "fractional" in p.message and "task: regression" in p.message


def test_regression_targets_against_the_output(write_spec):
    path = write_spec(BASE.replace("{SOURCE}", "{synthetic_regression: {samples: 50, outputs: 2}}"))
    found = problems(path, ["loss=mse"])
    assert [p.path for p in found] == ["model.layers.1"]
    assert "targets have shape [2]" in found[0].message and "outputs [3]" in found[0].message
    (p,) = problems(path)  # cross_entropy on numbers
    assert p.path == "loss" and "needs class labels" in p.message


def test_missing_sections_are_all_named(write_spec):
    path = write_spec("""
        name: bare
        model:
          input_shape: [4]
          layers: [{linear: 2}]
    """)
    spec = netspec.load(path)
    with pytest.raises(netspec.SpecError) as e:
        netspec.train(spec, out=path.parent / "runs", progress=False)
    msgs = [p.message for p in e.value.problems]
    assert [m.split("'")[1] for m in msgs] == ["data", "loss", "optimizer"]
    assert all("is required to train" in m for m in msgs)


def test_bad_data_on_the_command_line_exits_2_without_traceback(cli, write_spec):
    path = write_spec(BASE.replace("{SOURCE}", "{npz: missing.npz}"))
    r = cli("train", path, "--out", path.parent / "runs")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith(f"{path}:{line_of(path, 'missing.npz')}:")
    assert "data.source.npz" in r.stderr and "no such file: missing.npz" in r.stderr

"""Real data: image folders (with their cache), CSV and Parquet tables, memory-mapped .npy
arrays, stratified splits, class weights, and the data checks at load (NaN/inf, CSV edge
cases, empty training splits). Every error names its file and its row/line and column."""
from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import torch

import netspec
from netspec import data as D
from netspec.data import images

spec_loader = importlib.util.spec_from_file_location(
    "make_shapes", os.path.join(os.path.dirname(__file__), "..", "specs", "data", "make_shapes.py"))
make_shapes = importlib.util.module_from_spec(spec_loader)
spec_loader.loader.exec_module(make_shapes)

SPEC = """
name: d
seed: 0
data:
  source: {SOURCE}
  validation_split: 0.25
  test_split: 0.25
{EXTRA}
model:
  input_shape: {SHAPE}
  layers:
    - flatten
    - linear: 4
loss: cross_entropy
optimizer: {adam: 0.01}
train: {epochs: 1, threads: 1}
"""


def load(write_spec, source, shape="[4]", extra=""):
    text = SPEC.replace("{SOURCE}", source).replace("{SHAPE}", shape).replace("{EXTRA}", extra)
    spec = netspec.load(write_spec(text))
    return spec, D.load(spec)


def error(write_spec, source, shape="[4]", extra="") -> netspec.errors.Problem:
    with pytest.raises(netspec.SpecError) as e:
        load(write_spec, source, shape, extra)
    (p,) = e.value.problems
    return p


@pytest.fixture
def shapes(tmp_path, monkeypatch):
    monkeypatch.setenv("NETSPEC_CACHE", str(tmp_path / "cache"))
    return make_shapes.make(tmp_path / "shapes", per_class=6, size=20)


# --- image folders ---
def test_image_folder_reads_classes_resized_and_cached(shapes, write_spec, tmp_path, monkeypatch):
    src = f"{{image_folder: {shapes}}}"
    spec, d = load(write_spec, src, "[3, 12, 12]")
    assert d.classes == ["circle", "cross", "square", "triangle"] and d.num_classes == 4
    assert d.sample_shape == (3, 12, 12) and d.info()["classes"] == d.classes
    x = torch.cat([s[0] for s in d.splits.values()])
    assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1 and x.max() > 0.5
    assert len(x) == 24 and sorted(torch.cat([s[1] for s in d.splits.values()]).tolist()) == sorted(list(range(4)) * 6)
    (cache,) = (tmp_path / "cache" / "images").glob("*/*.npy")
    # the same image as Pillow reads it, at the same index of the cache
    first = images.listing(spec, shapes)[1][0]
    assert np.array_equal(np.load(cache)[0], images.read_image(first, (3, 12, 12)))

    # a second load reads the cache: no image is decoded again
    def no_decoding(*a):
        raise AssertionError("decoded again")
    monkeypatch.setattr(images, "read_image", no_decoding)
    _, again = load(write_spec, src, "[3, 12, 12]")
    assert torch.equal(torch.cat([s[0] for s in again.splits.values()]), x)

    # a changed file makes a new cache (and the old one is removed)
    monkeypatch.undo()
    monkeypatch.setenv("NETSPEC_CACHE", str(tmp_path / "cache"))
    make_shapes.draw("circle", 30, __import__("random").Random(5)).save(first)
    _, changed = load(write_spec, src, "[3, 12, 12]")
    (new,) = (tmp_path / "cache" / "images").glob("*/*.npy")
    assert new != cache and not torch.equal(torch.cat([s[0] for s in changed.splits.values()]), x)


def test_image_folder_grey_and_workers_decode_the_same(shapes, write_spec):
    src = "{image_folder: {path: %s, cache: false%s}}"
    _, one = load(write_spec, src % (shapes, ""), "[1, 10, 10]")
    _, two = load(write_spec, src % (shapes, ", workers: 2"), "[1, 10, 10]")
    assert one.sample_shape == (1, 10, 10)
    for k in one.splits:
        assert torch.equal(one.splits[k][0], two.splits[k][0])


def test_image_folder_read_lazily_from_the_cache_matches_memory(shapes, write_spec):
    src = f"{{image_folder: {shapes}}}"
    _, mem = load(write_spec, src, "[3, 8, 8]", "  normalize: standard")
    _, lazy = load(write_spec, src, "[3, 8, 8]", "  normalize: standard\n  in_memory: never")
    assert isinstance(lazy.splits["train"][0], D.Lazy)
    idx = torch.tensor([3, 0, 5])
    for k in mem.splits:
        torch.testing.assert_close(lazy.splits[k][0][idx], mem.splits[k][0][idx])


def test_corrupt_image_is_named(shapes, write_spec):
    bad = shapes / "square" / "0003.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    p = error(write_spec, f"{{image_folder: {shapes}}}", "[3, 8, 8]")
    assert str(bad) in p.message and "not a readable image" in p.message
    assert p.path == "data.source.image_folder.path"


@pytest.mark.parametrize("case, shape, needle", [
    ("missing", "[3, 8, 8]", "no such folder"),
    ("empty_class", "[3, 8, 8]", "holds no PNG or JPEG"),
    ("flat", "[3, 8, 8]", "has no subfolders"),
    ("shape", "[64]", "input_shape [channels, height, width]"),
    ("huge", "[3, 100000, 100000]", "at most 67,108,864 per image"),  # refused before decoding anything
])
def test_image_folder_errors(shapes, write_spec, tmp_path, case, shape, needle):
    folder = shapes
    if case == "missing":
        folder = tmp_path / "nowhere"
    elif case == "empty_class":
        (shapes / "zebra").mkdir()
        (shapes / "zebra" / "notes.txt").write_text("x")
    elif case == "flat":
        folder = tmp_path / "flat"
        folder.mkdir()
    p = error(write_spec, f"{{image_folder: {folder}}}", shape)
    assert needle in p.message


# --- tables ---
def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("body, needle", [
    ("a,b,a,y\n1,2,3,x\n", "repeats column names: 'a' (columns 1, 3)"),
    ("a,b,c,y\n1,2,3,x\n1,2,3,\n", "line 3, column 'y': the label is empty"),
    ("a,b,c,y\n1,2,3,1\n\n1,2,3,nan\n", "line 4, column 'y': 'nan' is NaN"),
    ("a,b,c,y\n1,2,3,cat\n1,2,3,NaN\n", "line 3, column 'y': the label is 'NaN'"),
    ("a,b,c,y\n1,2,3,1\n1,1e400,3,0\n", "line 3, column 'b': '1e400' is infinite"),
    ("a,b,c,y\n1,2,3,1\n1,2,1e39,0\n", "line 3, column 'c': '1e39' is too large for 32-bit floats"),
    ("a,b,c,y\n1,,3,1\n", "line 2, column 'b': the value is empty"),
    ("a,b,c,y\n1,2,3,1\n1,2,3\n", "line 3 has 3 fields, the header has 4"),
    ("a,b,c,y\n1,2,3,1\n1,2,3,-1\n", "line 3, column 'y': '-1' is a negative class label"),
    ("a,b,c,y\n1,2,3,1\n1,2," + "9" * 140000 + ",0\n", "line 3, column 'c': '99999"),
    ("a,b,c,y\n1,2,3,1\n1,2,x" + "y" * 140000 + ",0\n", "(140001 characters) is not a number"),
])
def test_csv_bad_values_name_line_and_column(tmp_path, write_spec, body, needle):
    f = write(tmp_path / "t.csv", body)
    p = error(write_spec, f"{{csv: {{path: {f}, target: y}}}}", "[3]")
    assert needle in p.message and str(f) in p.message


def test_csv_wide_text_fields_and_string_labels(tmp_path, write_spec):
    long = "z" * 200_000  # over the csv module's 131072-character default
    rows = "".join(f"{i},{i % 2},\"{long if i == 3 else 'note'}\",{'big small'.split()[i % 2]}\n" for i in range(12))
    f = write(tmp_path / "t.csv", "a,b,text,kind\n" + rows)
    spec, d = load(write_spec, f"{{csv: {{path: {f}, target: kind, features: [a, b]}}}}", "[2]")
    assert d.classes == ["big", "small"] and d.sample_shape == (2,)
    x, y = (torch.cat([s[i] for s in d.splits.values()]) for i in (0, 1))
    assert sorted(zip(x[:, 0].tolist(), y.tolist())) == [(float(i), i % 2) for i in range(12)]


def test_parquet_source(tmp_path, write_spec):
    import pyarrow as pa
    import pyarrow.parquet as pq
    n = 16
    f = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": np.arange(n, dtype=np.float64), "b": np.ones(n, np.int32),
                             "label": ["yes" if i % 4 else "no" for i in range(n)]}), f)
    _, d = load(write_spec, f"{{parquet: {{path: {f}, target: label}}}}", "[2]")
    assert d.classes == ["no", "yes"] and d.num_classes == 2
    pq.write_table(pa.table({"a": [1.0, None, 3.0, 4.0], "label": ["x", "y", "x", "y"]}), f)
    p = error(write_spec, f"{{parquet: {{path: {f}, target: label}}}}", "[1]")
    assert f"{f} row 1 (0-based), column 'a': the value is empty" in p.message
    p = error(write_spec, f"{{parquet: {{path: {f}, target: kind}}}}", "[1]")
    assert "no column 'kind'" in p.message and p.path == "data.source.parquet.target"
    write(f, "not parquet")
    assert "not a readable Parquet file" in error(write_spec, f"{{parquet: {{path: {f}, target: y}}}}").message


# --- NaN/inf and splits ---
def test_nan_and_overflow_in_arrays_name_sample_and_position(tmp_path, write_spec):
    x = np.zeros((10, 4), np.float64)
    x[6, 2] = np.nan
    f = tmp_path / "d.npz"
    np.savez(f, x=x, y=np.arange(10) % 2)
    p = error(write_spec, f"{{npz: {f}}}")
    assert f"{f}, array 'x': holds NaN at sample 6 (0-based), position [2]" in p.message
    x[6, 2] = 1e300
    np.savez(f, x=x, y=np.arange(10) % 2)
    assert "too large for 32-bit floats" in error(write_spec, f"{{npz: {f}}}").message
    np.savez(f, x=np.zeros((10, 4)), y=np.where(np.arange(10) == 3, np.nan, 1.5))
    p = error(write_spec, f"{{npz: {{path: {f}, task: regression}}}}")
    assert "the targets hold NaN at sample 3" in p.message and p.path == "data.source.npz.y"


def test_a_split_leaving_no_training_samples_is_refused(tmp_path, write_spec):
    f = tmp_path / "d.npz"
    np.savez(f, x=np.zeros((2, 4), np.float32), y=np.array([0, 1]))
    text = SPEC.replace("{SOURCE}", f"{{npz: {f}}}").replace("{SHAPE}", "[4]").replace("{EXTRA}", "")
    text = text.replace("validation_split: 0.25", "validation_split: 0.5").replace("test_split: 0.25", "test_split: 0.4")
    spec = netspec.load(write_spec(text))
    with pytest.raises(netspec.SpecError) as e:
        D.load(spec)
    (p,) = e.value.problems
    assert "no training samples" in p.message and "2 samples" in p.message and p.path == "data.validation_split"


def test_stratified_splits_keep_class_shares_and_class_weights(tmp_path, write_spec):
    y = np.array([0] * 80 + [1] * 16 + [2] * 4)
    f = tmp_path / "d.npz"
    np.savez(f, x=np.random.default_rng(0).normal(size=(100, 4)).astype(np.float32), y=y)
    _, d = load(write_spec, f"{{npz: {f}}}", extra="  stratify: true\n  class_weight: balanced")
    for k, n in (("val", 25), ("test", 25), ("train", 50)):
        assert torch.bincount(d.splits[k][1], minlength=3).tolist() == [80 * n // 100, 16 * n // 100, 4 * n // 100]
    assert torch.allclose(d.class_weights, torch.tensor([50 / (3 * 40), 50 / (3 * 8), 50 / (3 * 2)]))
    _, again = load(write_spec, f"{{npz: {f}}}", extra="  stratify: true")
    assert all(torch.equal(d.splits[k][0], again.splits[k][0]) for k in d.splits)


# --- memory-mapped arrays ---
def test_npy_memory_mapped_splits_match_in_memory(tmp_path, write_spec):
    rng = np.random.default_rng(1)
    np.save(tmp_path / "x.npy", rng.normal(3, 2, size=(50, 2, 3)).astype(np.float64))
    np.save(tmp_path / "y.npy", rng.integers(0, 4, 50))
    src = f"{{npy: {{x: {tmp_path / 'x.npy'}, y: {tmp_path / 'y.npy'}}}}}"
    _, mem = load(write_spec, src, "[2, 3]", "  normalize: standard\n  in_memory: always")
    _, lazy = load(write_spec, src, "[2, 3]", "  normalize: standard\n  in_memory: never")
    xl = lazy.splits["train"][0]
    assert isinstance(xl, D.Lazy) and isinstance(mem.splits["train"][0], torch.Tensor)
    assert lazy.sample_shape == (2, 3) and len(xl) == len(mem.splits["train"][0])
    torch.testing.assert_close(lazy.stats["shift"], mem.stats["shift"])
    torch.testing.assert_close(lazy.stats["scale"], mem.stats["scale"])
    idx = torch.tensor([7, 2, 9, 2, 0])  # unsorted, with a repeat: gathered in the asked order
    torch.testing.assert_close(xl[idx], mem.splits["train"][0][idx])
    torch.testing.assert_close(lazy.splits["val"][0][2:6], mem.splits["val"][0][2:6])


# --- end to end ---
def test_image_folder_spec_trains_through_the_cli(cli, tmp_path):
    folder = make_shapes.make(tmp_path / "shapes", per_class=12, size=20)
    env = {**os.environ, "NETSPEC_CACHE": str(tmp_path / "cache")}
    r = cli("train", "specs/shapes_cnn.yaml", "--out", tmp_path / "runs", "-q",
            "--set", f"data.source.image_folder.path={folder}", "--set", "train.epochs=2", env=env)
    assert r.returncode == 0, r.stderr
    run = tmp_path / "runs" / "shapes-cnn"
    metrics = __import__("json").loads((run / "metrics.json").read_text())
    assert 0 <= metrics["test/accuracy"] <= 1 and metrics["epochs"] == 2
    info = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["data"]
    assert info["classes"] == ["circle", "cross", "square", "triangle"] and info["num_classes"] == 4
    # predict reads image files exactly as training did, and answers with the class names
    p = netspec.load_run(run).predict(folder / "square")
    assert len(p.labels) == 12 and set(p.labels) <= {"circle", "cross", "square", "triangle"}
    from netspec.infer.inputs import images as predict_images
    first = sorted((folder / "square").iterdir())[0]
    assert np.array_equal(predict_images([first], netspec.load("specs/shapes_cnn.yaml"))[0] * 255,
                          images.read_image(first, (1, 16, 16)).astype(np.float32))
    # a corrupt image afterwards: exit 2 naming the file, and the run is untouched
    bad = folder / "cross" / "0004.png"
    bad.write_bytes(b"not an image")
    # (spec.yaml is rewritten by the resume before the data is read: the engine's prepare())
    kept = lambda: {f: f.read_bytes() for f in run.rglob("*") if f.is_file() and f.name != "spec.yaml"}  # noqa: E731
    before = kept()
    r = cli("train", "specs/shapes_cnn.yaml", "--out", tmp_path / "runs", "-q", "--resume",
            "--set", f"data.source.image_folder.path={folder}", "--set", "train.epochs=3", env=env)
    assert r.returncode == 2 and str(bad) in r.stderr and "Traceback" not in r.stderr
    assert kept() == before


def test_class_weight_reaches_the_loss_and_lazy_data_trains(tmp_path, write_spec):
    from netspec.kinds.network import Objective, setup
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.normal(size=(40, 4)).astype(np.float32))
    np.save(tmp_path / "y.npy", np.array([0] * 30 + [1] * 6 + [2] * 4))
    src = f"{{npy: {{x: {tmp_path / 'x.npy'}, y: {tmp_path / 'y.npy'}}}}}"
    spec, d = load(write_spec, src, "[4]", "  class_weight: balanced\n  in_memory: never")
    _, objective = setup(spec, d)
    assert torch.equal(objective.fn.weight, torch.cat([d.class_weights, torch.ones(1)]))  # 4 outputs, 3 classes
    result = netspec.train(spec, out=tmp_path / "runs", progress=False)  # batches gathered from the memmap
    assert np.isfinite(result.metrics["train/loss"])
    text = SPEC.replace("{SOURCE}", src).replace("{SHAPE}", "[4]").replace("{EXTRA}", "  class_weight: balanced")
    bad = netspec.load(write_spec(text.replace("loss: cross_entropy", "loss: mse"), "mse.yaml"))
    with pytest.raises(netspec.SpecError) as e:
        Objective(bad, D.load(bad), (3,))
    assert e.value.problems[0].path == "data.class_weight"


def test_text_csv_long_texts_and_missing_labels(tmp_path, write_spec):
    rows = "".join(f"\"{'word ' * (30000 if i == 2 else 3)}\",{'good bad'.split()[i % 2]}\n" for i in range(10))
    f = write(tmp_path / "t.csv", "text,label\n" + rows)
    text = """
    name: t
    seed: 0
    data:
      source: {text_csv: {path: %s, too_long: truncate}}
      validation_split: 0.2
      stratify: true
    model:
      input_shape: [8]
      input_dtype: long
      layers: [{embedding: 4}, flatten, {linear: 2}]
    """ % f
    spec = netspec.load(write_spec(text))
    d = D.load(spec)  # a 150,000-character field is read (the csv module's limit is 131072)
    assert d.classes == ["bad", "good"] and torch.bincount(d.splits["val"][1]).tolist() == [1, 1]
    write(f, "text,label\nfine words,good\nmore words,\n")
    with pytest.raises(netspec.SpecError) as e:
        D.load(netspec.load(write_spec(text)))
    assert f"{f} row 3, column 'label': the label is empty" in e.value.problems[0].message


def test_text_csv_padded_past_memory_is_refused_before_allocating(tmp_path, write_spec):
    f = write(tmp_path / "t.csv", "text,label\n" + "".join(f"a few words,{'ab'[i % 2]}\n" for i in range(10)))
    text = """
    name: t
    data: {source: {text_csv: %s}, validation_split: 0.2}
    model:
      input_shape: [1000000000000]
      input_dtype: long
      layers: [{embedding: 4}, global_avg_pool, {linear: 2}]
    """ % f
    with pytest.raises(netspec.SpecError) as e:
        D.load(netspec.load(write_spec(text)))
    (p,) = e.value.problems
    assert p.path == "model.input_shape" and p.line and "the longest text has 3 tokens: use input_shape: [3]" in p.message

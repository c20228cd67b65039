"""Using a trained run: `netspec.load_run` (the README's snippet, as written) and `netspec
predict` on the files people have (images, folders), with every bad input a clear error."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

import netspec

from conftest import ROOT, invoke, run_cli

DIGITS = ["train.epochs=3", "train.threads=1"]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The quick-start's run, in a folder of its own: runs/digits-cnn."""
    tmp = tmp_path_factory.mktemp("infer")
    spec = netspec.load(ROOT / "specs" / "digits_cnn.yaml", DIGITS)
    netspec.train(spec, out=tmp / "runs", progress=False)
    return tmp


def predict(run, *args):
    return invoke("predict", run, *args)


def clean(r):
    """An error the user can act on: exit 2, no traceback, not click's bare 'Aborted!'."""
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "Aborted" not in r.stderr, r.stderr
    return r.stderr


def test_readme_snippet_runs_as_written_after_the_quick_start(digits, monkeypatch, capsys):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "netspec train specs/digits_cnn.yaml" in text  # the quick-start it follows
    code = re.findall(r"```python\n(.*?)```", text[text.index("### From Python: `netspec.load_run`"):], re.S)[0]
    monkeypatch.chdir(digits)
    scope: dict = {}
    exec(code, scope)
    out = capsys.readouterr().out.splitlines()
    labels = json.loads(out[0])
    assert len(labels) == 8 and all(isinstance(k, int) for k in labels)
    assert sum(a == b for a, b in zip(labels, range(8))) >= 6  # the first digits are 0..7
    assert out[1] == "(8, 10) probabilities"
    row = eval(out[2])  # a dict as printed
    assert row["class"] == labels[0] and len(row["probabilities"]) == 10
    run = scope["run"]
    assert run.spec.name == "digits-cnn" and run.classes == list(range(10))


def _digit_png(path, image, dark_background=True, size=None):
    from PIL import Image
    px = (image / 16 * 255).astype(np.uint8)
    im = Image.fromarray(px if dark_background else 255 - px, "L")
    if size:
        im = im.resize(size, Image.Resampling.NEAREST)
    im.convert("RGB").save(path)  # an RGB file: converted to the model's one channel


def test_predict_reads_png_and_jpeg_files_and_folders(digits, tmp_path):
    from sklearn.datasets import load_digits
    d = load_digits()
    run = digits / "runs" / "digits-cnn"
    folder = tmp_path / "pics"
    folder.mkdir()
    for i in range(6):
        _digit_png(folder / f"d{i}.png", d.images[i], size=(32, 32) if i % 2 else None)  # resized to 8x8
    _digit_png(folder / "d6.jpg", d.images[6])
    (folder / "notes.txt").write_text("not an image")
    r = run_cli("predict", run, folder, "-o", tmp_path / "out.jsonl")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [row["file"].rsplit("/", 1)[1] for row in rows] == [f"d{i}.png" for i in range(6)] + ["d6.jpg"]
    assert all(isinstance(row["class"], int) for row in rows)  # the digits' labels are integers
    # the same answers as the arrays the images were made from (8-bit rounding aside)
    want = netspec.load_run(run).predict(d.images[:7] / 16)
    got = [row["class"] for row in rows]
    assert sum(a == b for a, b in zip(got, want.labels)) >= 6
    one = predict(run, folder / "d0.png")
    assert one.returncode == 0 and json.loads(one.stdout)["class"] == rows[0]["class"]
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    assert "not a readable image" in clean(predict(run, tmp_path / "broken.png"))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no .png, .jpg or .jpeg images" in clean(predict(run, empty))


def test_inputs_far_outside_the_training_range_get_a_warning(digits, tmp_path):
    from sklearn.datasets import load_digits
    raw = load_digits().images[:10].astype(np.float32)  # 0-16, where the model trained on 0-1
    np.savez(tmp_path / "raw.npz", x=raw)
    r = predict(digits / "runs" / "digits-cnn", tmp_path / "raw.npz")
    assert r.returncode == 0
    assert "warning" in r.stderr and "[0, 16]" in r.stderr and "[0, 1]" in r.stderr and "divide these by 16" in r.stderr
    np.savez(tmp_path / "ok.npz", x=raw / 16)
    assert "warning" not in predict(digits / "runs" / "digits-cnn", tmp_path / "ok.npz").stderr


def test_nan_and_inf_inputs_are_refused_naming_the_row(digits, tmp_path):
    run = digits / "runs" / "digits-cnn"
    x = np.random.default_rng(0).random((5, 64), dtype=np.float32)
    x[3, 10] = np.nan
    x[4, 0] = np.inf
    np.save(tmp_path / "x.npy", x)
    err = clean(predict(run, tmp_path / "x.npy"))
    assert "row 4" in err and "nan" in err and "2 rows" in err
    with pytest.raises(netspec.SpecError, match="row 1"):
        netspec.load_run(run).predict(np.full((1, 1, 8, 8), np.inf))


def test_bad_input_files_are_clear_errors(digits, tmp_path):
    run = digits / "runs" / "digits-cnn"
    x = np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32)
    np.savez(tmp_path / "rows0.npz", x=np.zeros((0, 64), np.float32))
    assert "holds no samples" in clean(predict(run, tmp_path / "rows0.npz"))
    np.save(tmp_path / "arr.npy", x)
    (tmp_path / "arr.npy").rename(tmp_path / "named.npz")  # a .npy by another name: read by contents
    assert predict(run, tmp_path / "named.npz").returncode == 0
    (tmp_path / "zero.npz").write_bytes(b"")
    assert "empty" in clean(predict(run, tmp_path / "zero.npz"))
    np.savez(tmp_path / "nothing.npz")
    assert "holds nothing" in clean(predict(run, tmp_path / "nothing.npz"))
    np.savez(tmp_path / "scalar_y.npz", x=x, y=np.int64(3))  # y is not read by predict
    assert predict(run, tmp_path / "scalar_y.npz").returncode == 0
    np.savez(tmp_path / "scalar_x.npz", x=np.float32(3))
    assert "single number" in clean(predict(run, tmp_path / "scalar_x.npz"))
    np.savez(tmp_path / "ok.npz", x=x)
    assert "is a folder" in clean(predict(run, tmp_path / "ok.npz", "-o", tmp_path))
    assert "does not exist" in clean(predict(run, tmp_path / "ok.npz", "-o", tmp_path / "no" / "p.jsonl"))
    (tmp_path / "t.csv").write_text("a,b\n1,2\n3,x\n")
    err = clean(predict(run, tmp_path / "t.csv"))
    assert "row 2" in err and "column 'b'" in err and "'x' is not a number" in err
    assert "no such file" in clean(predict(run, tmp_path / "missing.npz"))
    np.savez(tmp_path / "wide.npz", x=np.zeros((2, 5), np.float32))
    assert "the model reads [1, 8, 8]" in clean(predict(run, tmp_path / "wide.npz"))


def test_classes_keep_the_data_s_labels(tmp_path, write_spec):
    """Integer labels print as integers, string labels as strings."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) * 5 + 2  # labels 2 and 7
    np.savez(tmp_path / "d.npz", x=x, y=y)
    np.savez(tmp_path / "s.npz", x=x, y=np.where(y == 7, "dog", "cat"))
    for data, want in (("d.npz", {2, 7}), ("s.npz", {"cat", "dog"})):
        spec = netspec.load(write_spec(f"""
            name: lab
            data: {{source: {{npz: {{path: {tmp_path / data}}}}}, validation_split: 0.2}}
            model: {{input_shape: [3], layers: [{{linear: 8}}, relu, {{linear: {8 if data == 'd.npz' else 2}}}]}}
            loss: cross_entropy
            optimizer: {{adam: 0.05}}
            train: {{epochs: 3, batch_size: 32, threads: 1}}
            """))
        folder = netspec.train(spec, out=tmp_path / f"runs_{data[0]}", progress=False).folder
        got = set(netspec.load_run(folder).predict(x[:40]).labels)
        assert got == want, (data, got)

"""Numeric sources -> arrays: the bundled digits, npz, csv, synthetic data.

SOURCES maps a `data.source` tag to a loader `(source_spec, spec) -> Arrays`."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .base import Arrays, _classes_of, _file, fail


def digits(src, spec) -> Arrays:
    # the file scikit-learn ships, read directly: importing sklearn costs ~1.5 s, the file 0.1 s
    import importlib.util
    where = importlib.util.find_spec("sklearn")
    f = Path(where.submodule_search_locations[0], "datasets", "data", "digits.csv.gz") if where else None
    if f is not None and f.exists():
        a = np.loadtxt(f, delimiter=",", dtype=np.float32)
        images, target = a[:, :64].reshape(-1, 8, 8), a[:, 64]
    else:
        from sklearn.datasets import load_digits
        d = load_digits()
        images, target = d.images, d.target
    x = (images / 16.0).astype(np.float32)[:, None]  # [N, 1, 8, 8] in [0, 1]
    return Arrays(x, target.astype(np.int64), "classification", [str(i) for i in range(10)])


def npz(src, spec) -> Arrays:
    p = _file(spec, src.path)
    try:
        f = np.load(p, allow_pickle=False)
    except (ValueError, OSError) as e:
        fail(spec, f"{src.path} is not a readable .npz file: {e}", "path")
    keys = list(getattr(f, "files", []))
    for k, what in ((src.x, "x"), (src.y, "y")):
        if k not in keys:
            fail(spec, f"{src.path} has no array '{k}'; it holds: {', '.join(keys) or 'nothing'} "
                       f"(set '{what}: <key>')", what)
    try:
        x, y = f[src.x], f[src.y]
    except ValueError as e:  # object arrays need pickle, which is never allowed
        fail(spec, f"{src.path}: {e} (save plain numeric arrays)", "path")
    if x.dtype.kind not in "iufb":
        fail(spec, f"'{src.x}' in {src.path} holds {x.dtype} values; features must be numbers", "x")
    if x.ndim < 2:
        fail(spec, f"'{src.x}' in {src.path} has shape {list(x.shape)}; it needs one row per sample "
                   "([samples, features...])", "x")
    if len(x) != len(y):
        fail(spec, f"'{src.x}' has {len(x)} samples but '{src.y}' has {len(y)}", "y")
    task = src.task
    if task == "auto":
        task = "classification" if y.dtype.kind in "iubUS" else "regression"
    if task == "regression":
        if y.dtype.kind not in "iufb":
            fail(spec, f"task is regression but '{src.y}' holds {y.dtype} values", "task")
        return Arrays(x.astype(np.float32), y.astype(np.float32), "regression")
    if y.dtype.kind in "US":
        yi, names = _classes_of(y)
        return Arrays(x.astype(np.float32), yi, "classification", names)
    if y.ndim == 2 and y.shape[1] > 1 and np.isin(y, (0, 1)).all() and (y.sum(1) == 1).all():
        y = y.argmax(1)  # one-hot rows -> class indices (the loss decides the form it reads)
    if y.ndim != 1:
        fail(spec, f"'{src.y}' has shape {list(y.shape)}; class labels need one per sample "
                   "(or one-hot rows), or set 'task: regression'", "y")
    if y.dtype.kind == "f" and not np.all(np.mod(y, 1) == 0):
        fail(spec, f"'{src.y}' holds fractional values, not class labels; set 'task: regression'", "y")
    y = y.astype(np.int64)
    if len(y) and y.min() < 0:
        fail(spec, f"class labels in '{src.y}' must be 0 or more; found {y.min()}", "y")
    return Arrays(x.astype(np.float32), y, "classification")


def csv_file(src, spec) -> Arrays:
    p = _file(spec, src.path)
    try:
        with open(p, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f, delimiter=src.delimiter))
    except UnicodeDecodeError:
        fail(spec, f"{src.path} is not UTF-8 text", "path")
    if len(rows) < 2:
        fail(spec, f"{src.path} needs a header row and at least one data row", "path")
    header, rows = rows[0], [r for r in rows[1:] if r]
    if src.target not in header:
        fail(spec, f"no column '{src.target}' in {src.path}; columns: {', '.join(header)}", "target")
    feats = src.features or [h for h in header if h != src.target]
    for name in feats:
        if name not in header:
            fail(spec, f"no column '{name}' in {src.path}; columns: {', '.join(header)}", "features")
    cols = [header.index(h) for h in feats]
    t = header.index(src.target)
    x = np.empty((len(rows), len(cols)), dtype=np.float32)
    for i, r in enumerate(rows):
        if len(r) != len(header):
            fail(spec, f"{src.path} line {i + 2} has {len(r)} fields, the header has {len(header)}", "path")
        for j, c in enumerate(cols):
            try:
                x[i, j] = float(r[c])
            except ValueError:
                fail(spec, f"{src.path} line {i + 2}, column '{header[c]}': '{r[c]}' is not a number "
                           "(list only numeric columns under 'features')", "features")
    target = [r[t] for r in rows]
    numeric = all(_is_number(v) for v in target)
    task = src.task
    if task == "auto":
        task = "classification" if not numeric or all(float(v).is_integer() for v in target) else "regression"
    if task == "regression":
        if not numeric:
            fail(spec, f"task is regression but column '{src.target}' is not numeric", "task")
        return Arrays(x, np.array([float(v) for v in target], dtype=np.float32)[:, None], task)
    if numeric:
        y = np.array([int(float(v)) for v in target], dtype=np.int64)
        if y.min() < 0:
            fail(spec, f"class labels in '{src.target}' must be 0 or more; found {y.min()}", "target")
        return Arrays(x, y, task)
    y, names = _classes_of(target)
    return Arrays(x, y, task, names)


def _is_number(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def _input_shape(spec):
    return tuple(spec.model.input_shape or (8,))


def synthetic_classification(src, spec) -> Arrays:
    rng = np.random.default_rng(spec.seed)
    shape = _input_shape(spec)
    centres = rng.normal(0, 1, (src.classes, *shape)).astype(np.float32) * 2
    y = rng.integers(0, src.classes, src.samples)
    x = centres[y] + rng.normal(0, src.noise, (src.samples, *shape)).astype(np.float32)
    return Arrays(x.astype(np.float32), y.astype(np.int64), "classification")


def synthetic_regression(src, spec) -> Arrays:
    rng = np.random.default_rng(spec.seed)
    shape = _input_shape(spec)
    x = rng.normal(0, 1, (src.samples, *shape)).astype(np.float32)
    w = rng.normal(0, 1, (int(np.prod(shape)), src.outputs)).astype(np.float32)
    y = x.reshape(src.samples, -1) @ w + rng.normal(0, src.noise, (src.samples, src.outputs))
    return Arrays(x, y.astype(np.float32), "regression")


SOURCES = {
    "digits": digits, "npz": npz, "csv": csv_file,
    "synthetic_classification": synthetic_classification, "synthetic_regression": synthetic_regression,
}



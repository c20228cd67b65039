"""Numeric sources -> arrays: the bundled digits, npz, npy (memory-mapped), synthetic data.

SOURCES maps a `data.source` tag to a loader `(source_spec, spec) -> Arrays`."""
from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from .base import Arrays, _classes_of, _file, fail

# what numpy and zipfile raise for a truncated or damaged file (zipfile: also for zip
# features it does not implement, and encrypted members)
DAMAGED = (OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError)


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
    except (ValueError, *DAMAGED) as e:
        fail(spec, f"{src.path} is not a readable .npz file: {e or type(e).__name__}", "path")
    keys = list(getattr(f, "files", []))
    for k, what in ((src.x, "x"), (src.y, "y")):
        if k not in keys:
            fail(spec, f"{src.path} has no array '{k}'; it holds: {', '.join(keys) or 'nothing'} "
                       f"(set '{what}: <key>')", what)
    try:
        x, y = f[src.x], f[src.y]
    except ValueError as e:  # object arrays need pickle, which is never allowed
        fail(spec, f"{src.path}: {e} (save plain numeric arrays)", "path")
    except DAMAGED as e:  # a damaged archive
        fail(spec, f"{src.path} is damaged: {e or type(e).__name__}", "path")
    if x.dtype.kind not in "iufb":
        fail(spec, f"'{src.x}' in {src.path} holds {x.dtype} values; features must be numbers", "x")
    if x.ndim < 2:
        fail(spec, f"'{src.x}' in {src.path} has shape {list(x.shape)}; it needs one row per sample "
                   "([samples, features...])", "x")
    with np.errstate(over="ignore"):  # values over float32's range become inf: check_finite names them
        x = x.astype(np.float32)
    out = _labelled(spec, src, x, y, f"{src.path}, array '{src.x}'", src.y)
    out.origin = f"{src.path}, array '{src.x}'"
    return out


def npy(src, spec) -> Arrays:
    """Memory-mapped: nothing is read here but the headers (and the labels, which are small)."""
    arrs = []
    for key in ("x", "y"):
        path = getattr(src, key)
        p = _file(spec, path, key)
        try:
            arrs.append(np.load(p, mmap_mode="r", allow_pickle=False))
        except (ValueError, *DAMAGED) as e:
            fail(spec, f"{path} is not a readable .npy file: {(str(e) or type(e).__name__).splitlines()[0][:200]}",
                 key)
        if not isinstance(arrs[-1], np.ndarray):  # an .npz under a .npy name
            fail(spec, f"{path} is an .npz archive, not a .npy array; use the npz source", key)
    x, y = arrs
    if not isinstance(x, np.memmap):  # (np.load maps only plain arrays)
        x = np.asarray(x)
    if x.dtype.kind not in "iufb":
        fail(spec, f"{src.x} holds {x.dtype} values; features must be numbers", "x")
    if x.ndim < 2:
        fail(spec, f"{src.x} has shape {list(x.shape)}; it needs one row per sample ([samples, features...])", "x")
    out = _labelled(spec, src, x, np.asarray(y), src.x, src.y)
    out.origin = src.x
    return out


def _labelled(spec, src, x, y, x_name: str, y_name: str) -> Arrays:
    """Features with their targets: class indices (with names for string labels) or values."""
    if y.ndim == 0 or len(x) != len(y):
        fail(spec, f"{x_name} has {len(x)} samples but '{y_name}' has "
                   f"{'a single value' if y.ndim == 0 else len(y)}; give one target per sample", "y")
    task = src.task
    if task == "auto":
        task = "classification" if y.dtype.kind in "iubUS" else "regression"
    if task == "regression":
        if y.dtype.kind not in "iufb":
            fail(spec, f"task is regression but '{y_name}' holds {y.dtype} values", "task")
        return Arrays(x, y.astype(np.float32), "regression")
    if y.dtype.kind in "US":
        yi, names = _classes_of(y)
        return Arrays(x, yi, "classification", names)
    if y.ndim == 2 and y.shape[1] > 1 and np.isin(y, (0, 1)).all() and (y.sum(1) == 1).all():
        y = y.argmax(1)  # one-hot rows -> class indices (the loss decides the form it reads)
    if y.ndim != 1:
        fail(spec, f"'{y_name}' has shape {list(y.shape)}; class labels need one per sample "
                   "(or one-hot rows), or set 'task: regression'", "y")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        i = int(np.argmax(~np.isfinite(y)))
        fail(spec, f"'{y_name}' holds {y[i]} at sample {i} (0-based); every sample needs a class label", "y")
    if y.dtype.kind == "f" and not np.all(np.mod(y, 1) == 0):
        fail(spec, f"'{y_name}' holds fractional values, not class labels; set 'task: regression'", "y")
    if len(y) and (y.min() < 0 or y.max() >= 1 << 31):
        i = int(np.argmax((y < 0) | (y >= 1 << 31)))
        fail(spec, f"class labels in '{y_name}' must be 0 or more; found {y[i]} (labels are below 2^31) at sample "
                   f"{i} (0-based)", "y")
    return Arrays(x, y.astype(np.int64), "classification")


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
    "digits": digits, "npz": npz, "npy": npy,
    "synthetic_classification": synthetic_classification, "synthetic_regression": synthetic_regression,
}



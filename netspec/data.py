"""Data sources -> in-memory tensors split into train/val/test.

SOURCES maps a `data.source` tag to a loader `(source_spec, spec) -> Arrays`. Data stays
in memory and is batched by slicing tensors (no per-sample DataLoader).
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import SpecError


@dataclass
class Arrays:
    x: np.ndarray
    y: np.ndarray | None
    task: str  # classification | regression | tokens
    classes: list[str] | None = None
    vocab: list[str] | None = None


@dataclass
class Dataset:
    splits: dict[str, tuple[torch.Tensor, torch.Tensor | None]]
    task: str
    num_classes: int | None = None
    classes: list[str] | None = None
    vocab: list[str] | None = None
    stats: dict = field(default_factory=dict)  # normalisation, from the train split

    @property
    def sample_shape(self):
        return tuple(self.splits["train"][0].shape[1:])

    def info(self) -> dict:
        """What a checkpoint keeps to use the model later (weights_only-safe types)."""
        return {"task": self.task, "num_classes": self.num_classes, "classes": self.classes,
                "vocab": self.vocab, "stats": self.stats}


def _where(spec, *rest):
    return ("data", "source", spec.data.source.type, *rest)


def fail(spec, message, *rest):
    raise SpecError([spec.problem(_where(spec, *rest), message)])


def _file(spec, path: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        fail(spec, f"no such file: {path} (relative paths start from the current directory, {Path.cwd()})",
             "path")
    if p.is_dir():
        fail(spec, f"{path} is a folder; name a file", "path")
    return p


def _classes_of(values) -> tuple[np.ndarray, list[str]]:
    names = sorted({str(v) for v in values})
    index = {n: i for i, n in enumerate(names)}
    return np.array([index[str(v)] for v in values], dtype=np.int64), names


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


def split_indices(n: int, val: float, test: float, seed: int) -> dict[str, np.ndarray]:
    """Seeded split: the same seed and sizes always give the same samples in each split."""
    perm = np.random.default_rng(seed).permutation(n)
    n_test, n_val = int(round(n * test)), int(round(n * val))
    out = {"train": np.sort(perm[n_test + n_val:])}
    if n_val:
        out["val"] = np.sort(perm[n_test:n_test + n_val])
    if n_test:
        out["test"] = np.sort(perm[:n_test])
    return out


def normalize(splits: dict, how: str, stats: dict | None = None) -> dict:
    """Feature-wise statistics from the train split (or given ones, from a checkpoint),
    applied to every split."""
    if stats:
        a, b = stats["shift"], stats["scale"]
        how = stats["how"]
    elif how == "none":
        return {}
    else:
        x = splits["train"][0]
        if how == "standard":
            a, b = x.mean(0), x.std(0).clamp_min(1e-8)
        else:
            a, b = x.amin(0), (x.amax(0) - x.amin(0)).clamp_min(1e-8)
    for k, (xs, ys) in splits.items():
        splits[k] = ((xs - a) / b, ys)
    return {"how": how, "shift": a, "scale": b}


def load(spec, stats: dict | None = None) -> Dataset:
    """The spec's data, split and normalised (with `stats`, a trained run's normalisation
    rather than statistics of this data). SpecError for anything that does not fit."""
    if spec.data is None:
        raise SpecError([spec.problem((), "'data' is required to train: e.g. 'data: {source: digits, "
                                          "validation_split: 0.1}'")])
    src = spec.data.source
    arrays = SOURCES[src.type](src, spec)
    if len(arrays.x) < 2:
        fail(spec, f"the data has {len(arrays.x)} samples; training needs more")
    idx = split_indices(len(arrays.x), spec.data.validation_split, spec.data.test_split, spec.seed)
    x = torch.from_numpy(np.ascontiguousarray(arrays.x))
    y = torch.from_numpy(np.ascontiguousarray(arrays.y)) if arrays.y is not None else None
    splits = {k: (x[i], y[i] if y is not None else None) for k, i in idx.items()}
    if stats and tuple(stats["shift"].shape) != tuple(x.shape[1:]):
        stats = None  # other data than the run's: check_fits names the shape that differs
    num_classes = None
    if arrays.task == "classification":
        num_classes = len(arrays.classes) if arrays.classes else int(arrays.y.max()) + 1
    stats = normalize(splits, spec.data.normalize, stats) if arrays.task != "tokens" else {}
    return Dataset(splits, arrays.task, num_classes, arrays.classes, arrays.vocab, stats)


def check_fits(spec, data: Dataset, out_shape: tuple) -> None:
    """Data against the network: input shape, and labels against the output size."""
    problems = []
    want = tuple(spec.model.input_shape)
    if data.sample_shape != want:
        n = int(np.prod(data.sample_shape))
        problems.append(spec.problem(("model", "input_shape"),
                                     f"the data's samples have shape {list(data.sample_shape)} ({n} values) "
                                     f"but model.input_shape is {list(want)}; set input_shape: "
                                     f"{list(data.sample_shape)} (and a flatten or reshape where needed)"))
    loss = spec.loss.type if spec.loss else None
    if data.task in ("classification", "tokens") and loss in ("cross_entropy", "nll"):
        classes = out_shape[-1]
        top = int(max(int(y.max()) for _, y in data.splits.values() if y is not None and len(y)))
        if top >= classes:
            problems.append(spec.problem(("model", "layers", len(spec.model.layers) - 1),
                                         f"the labels go up to {top} ({top + 1} classes) but the network "
                                         f"outputs {classes} values; make the last layer output {top + 1}"))
    if data.task == "regression" and loss not in ("cross_entropy", "nll"):  # (those: the loss is wrong)
        target = tuple(data.splits["train"][1].shape[1:]) or (1,)
        if target != tuple(out_shape):
            problems.append(spec.problem(("model", "layers", len(spec.model.layers) - 1),
                                         f"the targets have shape {list(target)} per sample but the network "
                                         f"outputs {list(out_shape)}; make the last layer output "
                                         f"{math.prod(target)} value(s)"
                                         + (" (and reshape)" if len(target) > 1 else "")))
    if problems:
        raise SpecError(problems)


# --- text sources: netspec/text.py adds its loaders to SOURCES when imported ---
from . import text as _text  # noqa: E402 (text.py builds on the names above)


def context(spec) -> dict:
    """What compiling takes from the data (vocabulary sizes); {} for sources without a vocabulary."""
    if spec.data is None or spec.data.source.type not in _text.CONTEXTS:
        return {}
    return _text.CONTEXTS[spec.data.source.type](spec)


def vocab_context(vocab: list[str]) -> dict:
    return _text.vocab_context(vocab)


def use_vocab(spec, vocab) -> None:
    _text.use_vocab(spec, vocab)


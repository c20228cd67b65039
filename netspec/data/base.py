"""What every data source shares: the arrays a source gives, the split dataset, file and
error helpers, seeded splits and normalisation."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import SpecError
from ..files import FileProblem, check_regular


@dataclass
class Arrays:
    x: np.ndarray  # may be a read-only memmap (npy files, the image-folder cache)
    y: np.ndarray | None
    task: str  # classification | regression | tokens
    classes: list[str] | None = None
    vocab: list[str] | None = None
    scale: float = 1.0  # x * scale are the values (uint8 images: 1/255)
    origin: str | None = None  # how errors name where x comes from ("data.npz, array 'x'")
    checked: bool = False  # the source already refused NaN/inf, naming lines and columns


@dataclass
class Dataset:
    # a split's inputs are a tensor (in memory, batched by slicing) or a Lazy memory-mapped
    # array (read batch by batch); both answer len(), .shape, x[idx] and x[a:b]
    splits: dict[str, tuple[torch.Tensor, torch.Tensor | None]]
    task: str
    num_classes: int | None = None
    classes: list[str] | None = None
    vocab: list[str] | None = None
    stats: dict = field(default_factory=dict)  # normalisation, from the train split
    augment: object = None  # callable(xb, generator) -> xb for training batches, or None
    class_weights: torch.Tensor | None = None  # data.class_weight: balanced

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


def _file(spec, path: str, key: str = "path") -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        fail(spec, f"no such file: {path} (relative paths start from the current directory, {Path.cwd()})",
             key)
    if p.is_dir():
        fail(spec, f"{path} is a folder; name a file", key)
    try:
        check_regular(p)  # a device (/dev/zero) never ends, a FIFO blocks: neither is opened
    except FileProblem as e:
        fail(spec, str(e), key)
    return p


def _classes_of(values) -> tuple[np.ndarray, list[str]]:
    names = sorted({str(v) for v in values})
    index = {n: i for i, n in enumerate(names)}
    return np.array([index[str(v)] for v in values], dtype=np.int64), names


def split_indices(n: int, val: float, test: float, seed: int,
                  labels: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Seeded split: the same seed and sizes always give the same samples in each split.
    With `labels` (stratified), each class is split in the same proportions."""
    rng = np.random.default_rng(seed)
    if labels is None:
        groups = [rng.permutation(n)]
    else:  # one permutation per class, in class order, so the result depends on the seed only
        groups = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    parts: dict[str, list] = {"train": [], "val": [], "test": []}
    for g in groups:
        n_test, n_val = int(round(len(g) * test)), int(round(len(g) * val))
        parts["test"].append(g[:n_test])
        parts["val"].append(g[n_test:n_test + n_val])
        parts["train"].append(g[n_test + n_val:])
    out = {k: np.sort(np.concatenate(v)) for k, v in parts.items()}
    return {k: v for k, v in out.items() if k == "train" or len(v)}


class Lazy:
    """One split of a memory-mapped array, read batch by batch. x[idx] gathers the rows in
    sorted order (the file is read front to back) into a float32 tensor, scaled and
    normalised like an in-memory split, on the device given by .to()."""

    def __init__(self, arr: np.ndarray, rows: np.ndarray, scale: float = 1.0, norm=None,
                 device=torch.device("cpu")):
        self.arr, self.rows, self.scale, self.norm, self.device = arr, rows, scale, norm, device
        self.shape = torch.Size((len(rows), *arr.shape[1:]))
        self.dtype = torch.float32

    def __len__(self) -> int:
        return len(self.rows)

    def to(self, device, **_) -> "Lazy":
        return Lazy(self.arr, self.rows, self.scale, self.norm, torch.device(device))

    def gather(self, idx) -> torch.Tensor:
        if isinstance(idx, slice):
            block = self.arr[self.rows[idx]]  # rows are sorted: a slice reads in order
        else:
            i = idx.cpu().numpy() if torch.is_tensor(idx) else np.asarray(idx)
            order = np.argsort(i, kind="stable")
            block = np.empty((len(i), *self.arr.shape[1:]), dtype=self.arr.dtype)
            block[order] = self.arr[self.rows[i[order]]]
        t = torch.from_numpy(np.asarray(block, dtype=np.float32))
        if self.scale != 1.0:
            t.mul_(self.scale)
        if self.norm is not None:
            t = (t - self.norm[0]) / self.norm[1]
        return t.to(self.device, non_blocking=True)

    __getitem__ = gather

    def chunks(self, size: int = 4096):
        """The split's rows in order, `size` at a time, as float32 arrays (statistics, checks)."""
        for a in range(0, len(self.rows), size):
            yield self.gather(slice(a, a + size)).cpu()


def check_finite(spec, arrays: Arrays, what: str = "x") -> None:
    """NaN or inf anywhere in the features (or regression targets) is refused at load,
    naming the sample and position, instead of surfacing later as a diverged loss."""
    a = arrays.x if what == "x" else arrays.y
    if a is None or a.dtype.kind != "f":
        return
    step = max(1, (64 << 20) // max(1, a[:1].nbytes))  # ~64 MB at a time: memmaps stay out of memory
    for start in range(0, len(a), step):
        chunk = a[start:start + step]
        bad = ~np.isfinite(chunk)
        if chunk.dtype.itemsize > 4:  # float64 beyond float32's range turns inf when cast
            with np.errstate(invalid="ignore"):
                bad |= np.abs(chunk) > np.finfo(np.float32).max
        if bad.any():
            where = np.argwhere(bad)[0]
            row, pos = start + int(where[0]), [int(p) for p in where[1:]]
            v = chunk[tuple(where)]
            kind = "NaN" if np.isnan(v) else f"{v} (infinite, or over 3.4e38, too large for 32-bit floats)"
            at = f"sample {row} (0-based)" + (f", position {pos}" if pos else "")
            name = arrays.origin or "the data"
            fail(spec, f"{name}: {'the targets hold' if what == 'y' else 'holds'} {kind} at {at}"
                       f"{f' ({int(bad.sum())} such values in this block)' if bad.sum() > 1 else ''}; "
                       "netspec trains only on finite numbers: fix or drop these samples", what)


def class_weights(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Balanced loss weights n / (classes * count) from the training labels (scikit-learn's
    'balanced'); a class absent from training gets the weight of a single sample."""
    counts = torch.bincount(y.reshape(-1).long(), minlength=num_classes).clamp_min(1).double()
    return (len(y) / (num_classes * counts)).float()


def normalize(splits: dict, how: str, stats: dict | None = None) -> dict:
    """Feature-wise statistics from the train split (or given ones, from a checkpoint),
    applied to every split."""
    if stats:
        a, b = stats["shift"], stats["scale"]
        how = stats["how"]
    elif how == "none":
        return {}
    elif isinstance(splits["train"][0], Lazy):
        a, b = _chunked_stats(splits["train"][0], how)
    else:
        x = splits["train"][0]
        if how == "standard":
            a, b = x.mean(0), x.std(0).clamp_min(1e-8)
        else:
            a, b = x.amin(0), (x.amax(0) - x.amin(0)).clamp_min(1e-8)
    for k, (xs, ys) in splits.items():
        if isinstance(xs, Lazy):
            xs.norm = (a, b)  # applied batch by batch
        else:
            splits[k] = ((xs - a) / b, ys)
    return {"how": how, "shift": a, "scale": b}


def _chunked_stats(x: Lazy, how: str):
    """Feature-wise statistics of a memory-mapped split in one pass (float64 sums)."""
    n, s, s2, lo, hi = 0, 0.0, 0.0, None, None
    for c in x.chunks():
        c = c.double()
        n += len(c)
        if how == "standard":
            s, s2 = s + c.sum(0), s2 + (c * c).sum(0)
        else:
            lo = c.amin(0) if lo is None else torch.minimum(lo, c.amin(0))
            hi = c.amax(0) if hi is None else torch.maximum(hi, c.amax(0))
    if how == "standard":
        mean = s / n
        var = (s2 - n * mean * mean).clamp_min(0) / max(n - 1, 1)  # unbiased, like Tensor.std
        return mean.float(), var.sqrt().float().clamp_min(1e-8)
    return lo.float(), (hi - lo).float().clamp_min(1e-8)



"""What every data source shares: the arrays a source gives, the split dataset, file and
error helpers, seeded splits and normalisation."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import SpecError


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



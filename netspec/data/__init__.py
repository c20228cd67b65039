"""Data sources -> in-memory tensors split into train/val/test.

SOURCES maps a `data.source` tag to a loader `(source_spec, spec) -> Arrays`. Data stays
in memory and is batched by slicing tensors (no per-sample DataLoader).
"""
from __future__ import annotations
import math

import numpy as np
import torch

from ..errors import SpecError
from . import arrays, text
from .base import Arrays, Dataset, fail, normalize, split_indices  # noqa: F401 (the package's API)

SOURCES = {**arrays.SOURCES, **text.SOURCES}

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




def context(spec) -> dict:
    """What compiling takes from the data (vocabulary sizes); {} for sources without a vocabulary."""
    if spec.data is None or spec.data.source.type not in text.CONTEXTS:
        return {}
    return text.CONTEXTS[spec.data.source.type](spec)


def vocab_context(vocab: list[str]) -> dict:
    return text.vocab_context(vocab)


def use_vocab(spec, vocab) -> None:
    text.use_vocab(spec, vocab)


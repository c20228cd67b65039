"""Data sources -> tensors split into train/val/test.

SOURCES maps a `data.source` tag to a loader `(source_spec, spec) -> Arrays`. Small data
stays in memory and is batched by slicing tensors (no per-sample DataLoader); memory-mapped
arrays larger than memory are read batch by batch (base.Lazy). Augmentation: augment.py.
"""
from __future__ import annotations
import math

import numpy as np
import torch

from ..errors import SpecError
from . import arrays, augment, images, tables, text
from .base import (Arrays, Dataset, Lazy, check_finite, class_weights, fail,  # noqa: F401 (the package's API)
                   normalize, split_indices)

SOURCES = {**arrays.SOURCES, **tables.SOURCES, **images.SOURCES, **text.SOURCES}

LAZY_BYTES = 512 << 20  # data.in_memory: auto memory-maps float32 inputs larger than this


def load(spec, stats: dict | None = None) -> Dataset:
    """The spec's data, split and normalised (with `stats`, a trained run's normalisation
    rather than statistics of this data). SpecError for anything that does not fit.

    Small data becomes in-memory tensors (batched by slicing); a memory-mapped array over
    LAZY_BYTES (or with data.in_memory: never) stays on disk as Lazy splits, read batch by
    batch, for the network kind (GANs and sequence kinds always hold their data in memory)."""
    if spec.data is None:
        raise SpecError([spec.problem((), "'data' is required to train: e.g. 'data: {source: digits, "
                                          "validation_split: 0.1}'")])
    d = spec.data
    src = d.source
    arrays = SOURCES[src.type](src, spec)
    n = len(arrays.x)
    if n < 2:
        fail(spec, f"the data has {n} samples; training needs more")
    if not arrays.checked:
        check_finite(spec, arrays, "x")
        if arrays.task == "regression":
            check_finite(spec, arrays, "y")
    labels = arrays.y if arrays.task == "classification" else None
    if d.stratify and labels is None:
        raise SpecError([spec.problem(("data", "stratify"), "stratify needs class labels, but this data "
                                      f"is {arrays.task} data; remove 'stratify: true'")])
    idx = split_indices(n, d.validation_split, d.test_split, spec.seed, labels if d.stratify else None)
    if not len(idx["train"]):
        raise SpecError([spec.problem(("data", "validation_split"),
                                      f"the splits leave no training samples: the data has {n} samples, "
                                      f"validation_split {d.validation_split} takes {len(idx.get('val', []))} "
                                      f"and test_split {d.test_split} takes {len(idx.get('test', []))}; "
                                      "lower them or add data")])
    lazy = _lazy(spec, arrays)
    if lazy:
        splits = {k: (Lazy(arrays.x, i, arrays.scale), _tensor(arrays.y, i)) for k, i in idx.items()}
    else:
        with np.errstate(over="ignore"):  # (check_finite has refused values beyond float32)
            # memory-mapped files hold any dtype (uint8 pixels); other sources give their final dtype
            mapped = isinstance(arrays.x, np.memmap) or arrays.scale != 1.0
            x = torch.from_numpy(np.array(arrays.x, dtype=np.float32) if mapped  # (a copy: memmaps are read-only)
                                 else np.ascontiguousarray(arrays.x))
        if arrays.scale != 1.0:
            x.mul_(arrays.scale)
        splits = {k: (x[i], _tensor(arrays.y, i)) for k, i in idx.items()}
    if stats and tuple(stats["shift"].shape) != tuple(arrays.x.shape[1:]):
        stats = None  # other data than the run's: check_fits names the shape that differs
    num_classes = None
    if arrays.task == "classification":
        num_classes = len(arrays.classes) if arrays.classes else int(arrays.y.max()) + 1
    stats = normalize(splits, d.normalize, stats) if arrays.task != "tokens" else {}
    weights = None
    if d.class_weight == "balanced":
        if arrays.task != "classification":
            raise SpecError([spec.problem(("data", "class_weight"), "class_weight needs class labels, but "
                                          f"this data is {arrays.task} data; remove it")])
        weights = class_weights(splits["train"][1], num_classes)
    return Dataset(splits, arrays.task, num_classes, arrays.classes, arrays.vocab, stats,
                   augment.build(spec), weights)


def _tensor(y, i):
    return torch.from_numpy(np.ascontiguousarray(y[i])) if y is not None else None


def _lazy(spec, arrays) -> bool:
    if not isinstance(arrays.x, np.memmap) or getattr(spec, "kind", "network") != "network":
        return False
    how = spec.data.in_memory
    return how == "never" or (how == "auto" and arrays.x.size * 4 > LAZY_BYTES)


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
    problems += augment.check(spec, data.sample_shape)
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


"""data.augment: random transformations of training batches, applied batch-wise on the
training device (no per-sample Python, no DataLoader).

Every random draw comes from a torch.Generator that the training loop seeds by
(seed, epoch, step) (`generator_for`), never from the global RNG: a run is reproducible
under its seed, and a resumed run draws exactly what the uninterrupted one drew.

    fn = build(spec)               # None without data.augment
    xb = fn(xb, generator_for(spec.seed, epoch, step, xb.device))
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import SpecError
from ..spec.data import IMAGE_AUGMENTS

_PAD_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate"}


def generator_for(seed: int, epoch: int, step: int, device) -> torch.Generator:
    """The generator for one training step: a function of (seed, epoch, step) only."""
    mixed = ((seed * 1_000_003 + epoch) * 1_000_033 + step) % (1 << 63)
    return torch.Generator(device=torch.device(device)).manual_seed(mixed)


def _uniform(n, g, x, lo=-1.0, hi=1.0):
    return torch.rand(n, generator=g, device=x.device, dtype=torch.float32) * (hi - lo) + lo


def random_crop(a, x, g):
    b, c, h, w = x.shape
    p = a.padding
    xp = F.pad(x, (p, p, p, p), mode=_PAD_MODES[a.fill])
    oy = torch.randint(0, 2 * p + 1, (b,), generator=g, device=x.device)
    ox = torch.randint(0, 2 * p + 1, (b,), generator=g, device=x.device)
    rows = oy[:, None] + torch.arange(h, device=x.device)  # [B, H]: each sample's window
    cols = ox[:, None] + torch.arange(w, device=x.device)
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(c, device=x.device)[None, :, None, None]
    return xp[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]


def _flip(dim):
    def flip(a, x, g):
        hit = torch.rand(x.shape[0], generator=g, device=x.device) < a.p
        return torch.where(hit.view(-1, *[1] * (x.dim() - 1)), x.flip(dim), x)
    return flip


def affine(a, x, g, degrees=None, translate=0.0, scale=(1.0, 1.0)):
    b = x.shape[0]
    deg = a.degrees if degrees is None else degrees
    angle = _uniform(b, g, x) * math.radians(deg)
    s = _uniform(b, g, x, *scale)
    t = _uniform(b * 2, g, x).view(b, 2) * (2 * translate)  # [-1, 1] spans the image: 2x the fraction
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    theta = torch.stack([torch.stack([cos, -sin, t[:, 0]], 1), torch.stack([sin, cos, t[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _affine(a, x, g):
    return affine(a, x, g, a.degrees, a.translate, tuple(a.scale))


def _rotation(a, x, g):
    return affine(a, x, g, a.degrees)


def noise(a, x, g):
    return x + a.std * torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)


OPS = {"random_crop": random_crop, "horizontal_flip": _flip(-1), "vertical_flip": _flip(-2),
       "affine": _affine, "rotation": _rotation, "noise": noise}


def build(spec):
    """callable(xb, generator) -> augmented xb, or None when the spec augments nothing."""
    steps = list(spec.data.augment) if spec.data is not None else []
    if not steps:
        return None

    def apply(xb: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        for a in steps:
            xb = OPS[a.type](a, xb, g)
        return xb
    return apply


def check(spec, sample_shape: tuple) -> list:
    """Problems of data.augment against the data's samples (image augmentations need [C, H, W])."""
    problems = []
    for i, a in enumerate(spec.data.augment if spec.data is not None else []):
        where = ("data", "augment", i)
        if a.type in IMAGE_AUGMENTS and len(sample_shape) != 3:
            problems.append(spec.problem(where, f"{a.type} transforms images [channels, height, width], "
                                                f"but the samples have shape {list(sample_shape)}; use it "
                                                "on image data (or only 'noise' here)"))
        elif a.type == "random_crop" and a.fill == "reflect" and a.padding >= min(sample_shape[1:]):
            problems.append(spec.problem(where, f"reflect padding of {a.padding} needs images larger than "
                                                f"that; they are {list(sample_shape[1:])}: lower padding or "
                                                "use fill: zeros"))
    return problems

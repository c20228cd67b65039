"""The kinds of training netspec knows, in one table: a spec's `kind` -> the module that
compiles its networks and says what one training step does.

Adding a kind is one file in this folder and one line in KINDS.
"""
from __future__ import annotations

import importlib

import torch
from torch import nn

from ..compiler import Compiled, materialize

KINDS = {"network": "netspec.kinds.network", "gan": "netspec.kinds.gan", "seq2seq": "netspec.kinds.seq2seq"}


def kind(name: str):
    """The module of a kind (imported on first use: a GAN run never imports seq2seq)."""
    return importlib.import_module(KINDS[name])


def kind_of(spec):
    """The kind object that trains `spec` (kinds/base.py says what it supplies)."""
    return kind(spec.kind).KIND(spec)


def compile_spec(spec, **ctx) -> dict[str, Compiled]:
    """Every network of a spec, on the meta device; SpecError with all problems.
    Without a context, sizes that come from the data (vocabularies) are read from it."""
    if not ctx:
        from ..data import context
        ctx = context(spec)
    return kind(spec.kind).compile(spec, ctx)


def report(spec, **ctx) -> dict:
    """The contract's JSON summary of a spec, plus `notes`: remarks on a valid spec (an
    unbounded GAN generator), when a kind has any."""
    nets = compile_spec(spec, **ctx)
    out = nets["model"].report() if spec.kind == "network" else _networks(spec, nets)
    notes = getattr(kind(spec.kind), "notes", lambda spec, nets: [])(spec, nets)
    if notes:
        out["notes"] = notes
    return out


def _networks(spec, nets: dict) -> dict:
    out = {"kind": spec.kind,
           "parameters": sum(c.parameters for c in nets.values()),
           "trainable_parameters": sum(c.trainable for c in nets.values()),
           "networks": {k: c.report(spec.kind) for k, c in nets.items()}}
    for v in out["networks"].values():
        v.pop("kind")
    last = list(nets.values())[-1 if spec.kind != "gan" else 0]
    out["output_shape"] = list(last.output_shape)
    out["layers"] = [dict(r, name=f"{k}.{r['name']}") for k, c in out["networks"].items() for r in c["layers"]]
    return out


def build(spec, **ctx) -> nn.Module:
    """A spec's torch module (seeded by spec.seed). GAN/seq2seq: a ModuleDict of its networks."""
    nets = compile_spec(spec, **ctx)
    torch.manual_seed(spec.seed)
    if spec.kind == "network":
        return materialize(nets["model"])
    return nn.ModuleDict({k: materialize(c) for k, c in nets.items()})



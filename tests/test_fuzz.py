"""Property: whatever a user does to a valid spec (drop keys, wrong types, negative, zero or
huge numbers, misspelled keys, broken YAML), netspec either builds it or raises a clean
SpecError, never another exception. A spec that builds gives a module whose real output
has the inferred shape."""
from __future__ import annotations

import copy
import math
import os

import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import netspec
from netspec.kinds import compile_spec
from netspec.errors import SpecError

from conftest import SPECS

DAG = """\
name: dag
seed: 1
model:
  input_shape: [2, 8, 8]
  blocks:
    res:
      - conv2d: {out_channels: 4, kernel_size: 3, padding: 1, activation: relu}
        name: c
      - batch_norm
      - add:
        inputs: [c, batch_norm_1]
  layers:
    - conv2d: {out_channels: 4, kernel_size: 3, padding: same, init: {kaiming_normal: relu}}
      name: stem
    - block: {use: res, repeat: 2}
    - max_pool2d: {kernel_size: 2, stride: 2}
    - upsample: 2
    - concat: 1
      inputs: [stem, upsample_1]
    - avg_pool2d: 2
    - flatten
    - dropout: 0.2
    - reshape: [8, -1]
    - gru: {hidden_size: 6, output: sequence}
    - layer_norm
    - lstm: {hidden_size: 5, bidirectional: true, output: last}
    - linear: {out_features: 3, activation: log_softmax, init: {truncated_normal: 0.02}}
"""
TOKENS = """\
name: tokens
model:
  input_shape: [6]
  input_dtype: long
  layers:
    - embedding: {embedding_dim: 4, num_embeddings: 12, padding_idx: 0}
    - conv1d: {out_channels: 3, kernel_size: 2}
      inputs: input
      name: never_used
    - rnn: {hidden_size: 5, output: state}
      inputs: embedding_1
    - linear: 2
"""
# NETSPEC_FUZZ_EXAMPLES=2000 pytest tests/test_fuzz.py  fuzzes longer
EXAMPLES = int(os.environ.get("NETSPEC_FUZZ_EXAMPLES", "150"))
BASES = [yaml.safe_load(p.read_text()) for p in SPECS] + [yaml.safe_load(DAG), yaml.safe_load(TOKENS)]
# the DAG and token specs are valid on their own
assert netspec.build(netspec.load(DAG)) is not None

WRONG = [None, True, False, "", "x", "relu", "linear", "input", -1, 0, 1, 3, -0.5, 0.5, 1.5, 2.0,
         10**12, 2**70, float("inf"), [], {}, [1, 2], [0], [-1, 5], {"a": 1}, {"linear": 3}, "1e9", "same"]
NAMES = ["name", "inputs", "linear", "relu", "type", "model", "layers", "activation", "init", "use",
         "out_features", "kernel_size", "p", "kind", "blocks", "0"]


def nodes(tree, out=None):
    """Every (container, key) in the tree, the root's own keys included."""
    out = [] if out is None else out
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for k, v in list(items):
        out.append((tree, k))
        nodes(v, out)
    return out


def typo(word: str, i: int, how: int) -> str:
    if not word:
        return "x"
    i %= len(word)
    return [word[:i] + word[i + 1:], word[:i] + word[i] + word[i:], word[:i] + "_" + word[i:],
            word[::-1], word.upper()][how % 5] or "x"


@st.composite
def mutated(draw):
    spec = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 3))):
        where = nodes(spec)
        if not where:
            break
        parent, key = draw(st.sampled_from(where))
        value = parent[key]
        op = draw(st.sampled_from(["drop", "wrong", "number", "rename", "duplicate", "swap"]))
        if op == "drop":
            del parent[key]
        elif op == "wrong":
            parent[key] = copy.deepcopy(draw(st.sampled_from(WRONG)))
        elif op == "number":
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                parent[key] = draw(st.sampled_from([-value, 0, -1, value * 10**6, 10**9, 10**15, 2**64,
                                                    value + 0.5, 1]))
            else:
                parent[key] = draw(st.sampled_from([0, -1, 10**9]))
        elif op == "rename" and isinstance(parent, dict):
            new = draw(st.one_of(st.sampled_from(NAMES),
                                 st.builds(typo, st.just(str(key)), st.integers(0, 20), st.integers(0, 4))))
            parent[new] = parent.pop(key)
        elif op == "duplicate" and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(value))
        elif op == "swap" and isinstance(parent, list) and len(parent) > 1:
            j = draw(st.integers(0, len(parent) - 1))
            parent[key], parent[j] = parent[j], parent[key]
    return spec


def check(spec_or_text):
    """Load, compile and (when small) build and run; only SpecError may come out."""
    try:
        spec = netspec.load(spec_or_text)
        nets = compile_spec(spec)
    except SpecError as e:
        assert e.problems and all(str(p) for p in e.problems)
        assert all(p.message and "Input should" not in p.message for p in e.problems), str(e)
        return "error"
    if sum(c.parameters for c in nets.values()) > 300_000:
        return "large"
    if spec.kind != "network" or math.prod(spec.model.input_shape) > 10_000:
        return "built"
    model = netspec.build(spec)
    c = nets["model"]
    shape = (2, *c.input_shape)
    x = torch.randint(0, 3, shape) if spec.model.input_dtype == "long" else torch.randn(shape)
    model.eval()
    with torch.no_grad():
        y = model(x)
    assert tuple(y.shape[1:]) == c.output_shape
    return "ran"


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated())
def test_mutated_specs_build_or_fail_cleanly(spec):
    check(spec)


@settings(max_examples=EXAMPLES * 2 // 3, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([DAG, TOKENS, *(p.read_text() for p in SPECS)]), st.data())
def test_broken_yaml_text_fails_cleanly(text, data):
    """Edit the file's characters: delete, insert or replace a few at random places."""
    chars = list(text)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(chars)))
        op = data.draw(st.sampled_from(["delete", "insert", "replace"]))
        c = data.draw(st.sampled_from(list(":-[]{},&*!|>#'\"\t\n ") + ["0", "x", "-1", "!!python/name:os.system "]))
        if op == "delete" and i < len(chars):
            del chars[i]
        elif op == "insert":
            chars.insert(i, c)
        elif i < len(chars):
            chars[i] = c
    check("".join(chars))


def paths(tree, prefix=()):
    """Every dotted path into the tree, as --set writes them."""
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for k, v in items:
        yield ".".join(map(str, (*prefix, k)))
        yield from paths(v, (*prefix, k))


SET_VALUES = ["0", "-1", "3", "1.5", "true", "null", "[]", "{}", "[1, 2]", "relu", "{linear: 3}", "'x'",
              "1e12", "[", "a: b", "!!python/name:os.system", "{adam: {lr: 0.1}}", ""]


@settings(max_examples=EXAMPLES * 2 // 3, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(BASES), st.data())
def test_random_set_overrides_fail_cleanly(base, data):
    known = list(paths(base))
    items = []
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.one_of(st.sampled_from(known), st.builds(
            lambda p, i, h: typo(p, i, h), st.sampled_from(known), st.integers(0, 40), st.integers(0, 4)),
            st.sampled_from(["", ".", "a..b", "model.layers.99", "model.layers.-1.x", "train.epochs.x"])))
        value = data.draw(st.sampled_from(SET_VALUES))
        items.append(data.draw(st.sampled_from([f"{path}={value}", path])))
    try:
        spec = netspec.load(copy.deepcopy(base), items)
        compile_spec(spec)
    except SpecError as e:
        assert e.problems and all(p.message for p in e.problems)


def test_mutations_reach_every_outcome():
    """The property is not vacuous: the mutations produce errors and runnable specs alike."""
    from hypothesis import Phase, find
    for outcome in ("error", "ran"):
        find(mutated(), lambda s, o=outcome: check(s) == o,
             settings=settings(max_examples=200, database=None, phases=[Phase.generate],
                                 deadline=None))  # no shrinking; no deadline: a busy machine builds slowly

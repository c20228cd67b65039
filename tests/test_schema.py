"""`netspec schema`: a JSON Schema of the format as users write it, for editors. It must
accept every shipped spec and the written forms pydantic accepts, and reject broken ones."""
from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

import netspec
from netspec.errors import SpecError
from netspec.spec.schema import json_schema
from netspec.spec.base import REGISTRY

from conftest import SPECS, run_cli


@pytest.fixture(scope="module")
def validator():
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def schema_errors(validator, text: str) -> list:
    return list(validator.iter_errors(yaml.safe_load(text)))


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_every_shipped_spec_is_valid(validator, path):
    errors = schema_errors(validator, path.read_text())
    assert errors == [], [e.message[:300] for e in errors]


NET = "name: t\nmodel:\n  input_shape: [1, 8, 8]\n  layers:\n{}"

GOOD = {
    "bare names": "    - flatten\n    - relu\n    - linear: 10\n",
    "scalar shorthand": "    - dropout: 0.5\n    - leaky_relu: 0.2\n    - max_pool2d: 2\n",
    "list shorthand": "    - reshape: [64]\n    - reshape: [-1, 8]\n",
    "mapping": "    - conv2d: {out_channels: 4, kernel_size: [3, 3], padding: same}\n",
    "activation and init inside": "    - flatten\n    - linear: {out_features: 8, activation: relu, "
                                  "init: {truncated_normal: 0.01}}\n    - linear: {out_features: 2, "
                                  "activation: {leaky_relu: 0.1}, init: zeros}\n",
    "name and inputs": "    - flatten:\n      name: f\n    - linear: 8\n      name: a\n    - linear: 8\n"
                       "      inputs: f\n      name: b\n    - add:\n      inputs: [a, b]\n"
                       "    - concat: {dim: -1}\n      inputs: [a, b]\n",
    "null arguments": "    - batch_norm:\n    - relu: null\n",
    "blocks": "    - block: {use: b, repeat: 2}\n    - block: b\n",
    "recurrent": "    - reshape: [8, 8]\n    - lstm: {hidden_size: 4, output: last}\n",
}
BLOCKS = "  blocks:\n    b: [relu, {dropout: 0.1}]\n"


@pytest.mark.parametrize("case", sorted(GOOD))
def test_written_forms_are_valid_for_both(validator, case):
    text = NET.format(GOOD[case]) + BLOCKS
    assert schema_errors(validator, text) == []
    netspec.load(text)  # and pydantic agrees


FULL = """\
name: full
seed: 3
description: everything around the network
data: {source: {synthetic_classification: {samples: 100, classes: 3}}, validation_split: 0.1}
model:
  input_shape: [4]
  layers: [{linear: 3}]
loss: {cross_entropy: {label_smoothing: 0.1}}
optimizer: {sgd: {lr: 0.1, momentum: 0.9, nesterov: true}}
train:
  epochs: 2
  batch_size: 16
  metrics: [accuracy, {top_k_accuracy: 2}]
  scheduler: {step: 1}
  early_stopping: {patience: 2}
  tensorboard: {verbosity: 2}
sweep:
  grid:
    optimizer.sgd.lr: [0.1, 0.01]
    model.layers.0.linear: [3, 6]
"""


def test_full_spec_is_valid_for_both(validator):
    assert schema_errors(validator, FULL) == []
    netspec.load(FULL)


BAD = {
    "unknown layer": NET.format("    - lienar: 3\n"),
    "unknown argument": NET.format("    - conv2d: {out_channels: 3, kernel_size: 3, strid: 1}\n"),
    "unknown key beside a layer": NET.format("    - linear: 3\n      activation: relu\n"),
    "negative size": NET.format("    - linear: -3\n"),
    "zero size": NET.format("    - conv2d: {out_channels: 0, kernel_size: 3}\n"),
    "dropout out of range": NET.format("    - dropout: 1.5\n"),
    "argument-less layer given a value": NET.format("    - relu: 3\n"),
    "string size": NET.format("    - linear: many\n"),
    "two layers in one item": NET.format("    - {relu: null, linear: 3}\n"),
    "unknown activation inside": NET.format("    - linear: {out_features: 3, activation: rellu}\n"),
    "wiring inside an activation": NET.format("    - linear: {out_features: 3, activation: {relu: {name: r}}}\n"),
    "bad init argument": NET.format("    - linear: {out_features: 3, init: {normal: {std: -1}}}\n"),
    "missing required argument": NET.format("    - conv2d: {out_channels: 3}\n"),
    "unknown top-level key": NET.format("    - relu\n") + "modle: 1\n",
    "missing name": "model:\n  input_shape: [3]\n  layers: [relu]\n",
    "list at top": "- name: a\n",
    "wrong type in train": NET.format("    - relu\n") + "train: {epochs: ten}\n",
    "unknown optimizer": NET.format("    - relu\n") + "optimizer: adamm\n",
    "layers not a list": "name: a\nmodel: {input_shape: [3], layers: relu}\n",
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_broken_specs_are_rejected_by_both(validator, case):
    text = BAD[case]
    assert schema_errors(validator, text), f"the schema accepts: {text}"
    with pytest.raises(SpecError):
        netspec.load(text)


def test_every_component_is_in_the_schema():
    schema = json_schema()
    layer_forms = schema["$defs"]["layer-component"]["anyOf"]
    written = {f.get("const") for f in layer_forms} | {f.get("title") for f in layer_forms}
    assert set(REGISTRY["layer"]) <= written
    for family in ("activation", "init", "loss", "optimizer", "metric", "source"):
        assert f"{family}-component" in schema["$defs"], family


def test_schema_command_prints_the_schema():
    r = run_cli("schema")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == json_schema()

"""Parameterised blocks (params with defaults, values per use and per repetition, several
inputs) and scaled families (depth/width multipliers chosen with --scale or --set)."""
from __future__ import annotations

import json

import jsonschema
import pytest
import torch
import yaml
from torch import nn

import netspec
from netspec.errors import SpecError
from netspec.kinds import report
from netspec.spec.schema import json_schema

from conftest import ROOT, run_cli

ARCH = ROOT / "specs" / "architectures"


def test_resnet18_has_torchvisions_parameter_count_in_under_40_lines():
    text = (ARCH / "resnet18.yaml").read_text()
    assert len(text.splitlines()) < 40
    rep = report(netspec.load(ARCH / "resnet18.yaml"))
    assert rep["parameters"] == 11_689_512  # torchvision.models.resnet18()
    assert rep["output_shape"] == [1000]
    names = [r["name"] for r in rep["layers"]]
    assert "basic_2.0.skip.conv2d_1" in names and "basic_2.1.skip.identity_1" in names  # stride 2 once


def _reference_unet():
    """The compact PyTorch U-Net (milesial/Pytorch-UNet's layout, transposed-conv upsampling)."""
    def double(i, o):
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(),
                             nn.Conv2d(o, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU())
    c = [64, 128, 256, 512, 1024]
    mods = [double(1, 64), nn.Conv2d(64, 2, 1)]
    mods += [double(a, b) for a, b in zip(c, c[1:])]
    mods += [nn.ConvTranspose2d(b, a, 2, stride=2) for a, b in zip(c, c[1:])]
    mods += [double(b, a) for a, b in zip(c, c[1:])]
    return nn.ModuleList(mods)


def test_unet_matches_the_pytorch_reference_in_under_40_lines():
    assert len((ARCH / "unet.yaml").read_text().splitlines()) < 40
    spec = netspec.load(ARCH / "unet.yaml", ["model.input_shape=[1, 32, 32]"])
    rep = report(spec)
    assert rep["parameters"] == sum(p.numel() for p in _reference_unet().parameters())  # 31,036,546
    model = netspec.build(spec)
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 2, 32, 32)


def test_architecture_specs_are_valid_for_the_schema():
    v = jsonschema.Draft202012Validator(json_schema())
    for p in ARCH.glob("*.yaml"):
        assert [e.message[:200] for e in v.iter_errors(yaml.safe_load(p.read_text()))] == [], p


BLOCK = """
name: b
model:
  input_shape: [1, 12, 12]
  blocks:
    down:
      params: {out: 4, k: 3, stride: 1}
      layers:
        - conv2d: {out_channels: $out, kernel_size: $k, stride: $stride}
        - relu
  layers:
{layers}
"""


def _load(layers, overrides=()):
    return netspec.load(BLOCK.replace("{layers}", layers), list(overrides))


def _problems(layers):
    with pytest.raises(SpecError) as e:
        netspec.build(_load(layers))
    return [(p.path, p.line, p.message) for p in e.value.problems]


def test_params_defaults_use_values_and_per_repetition_overrides():
    rep = report(_load("    - block: {use: down, repeat: 3, params: {out: 6}, each: [{stride: 2}, {k: 1}]}"))
    shapes = [r["output_shape"] for r in rep["layers"] if r["type"] == "conv2d"]
    assert shapes == [[6, 5, 5], [6, 5, 5], [6, 3, 3]]  # stride 2 first, kernel 1 second, defaults third
    rep = report(_load("    - block: down"))
    assert rep["output_shape"] == [4, 10, 10]


def test_a_shape_error_in_a_block_names_the_line_inside_and_the_use():
    ps = _problems("    - flatten\n    - reshape: [1, 12, 12]\n    - block: {use: down, repeat: 6}")
    inner, use = ps
    assert inner[0] == "model.blocks.down.layers.0.conv2d" and inner[1] == 9
    assert "kernel_size 3 is larger than its input [2, 2]" in inner[2]
    assert "used at model.layers.2, line 14, repeat 6 of 6" in inner[2]
    assert use[0] == "model.layers.2.block" and use[1] == 14


def test_a_bad_value_passed_to_a_block_is_reported_in_the_block_and_at_the_use():
    ps = _problems("    - block: {use: down, params: {out: 0}}")
    assert ps[0][0] == "model.blocks.down.layers.0.conv2d.out_channels" and ps[0][1] == 9
    assert "greater than 0" in ps[0][2] and "used at model.layers.0" in ps[0][2]


@pytest.mark.parametrize("layers,words", [
    ("    - block: {use: down, params: {outt: 3}}", "no parameter 'outt'; did you mean 'out'?"),
    ("    - block: {use: down, repeat: 2, each: [{}, {}, {}]}", "each has 3 mappings but repeat is 2"),
    ("    - block: {use: dwn}", "unknown block 'dwn'; did you mean 'down'?"),
])
def test_wrong_uses_are_errors(layers, words):
    with pytest.raises(SpecError) as e:
        netspec.build(_load(layers))
    assert words in str(e.value)


def test_an_undeclared_parameter_inside_a_block_is_an_error():
    text = BLOCK.replace("{layers}", "    - block: down").replace("stride: $stride", "stride: $strid")
    with pytest.raises(SpecError) as e:
        netspec.load(text)
    assert "unknown parameter '$strid'; did you mean 'stride'?" in str(e.value)


def test_the_written_spec_keeps_the_parameters():
    from netspec.spec import written
    spec = _load("    - block: {use: down, params: {out: 5}}")
    again = netspec.load({**written(spec), "name": "again"})
    assert report(again)["output_shape"] == [5, 10, 10]


SCALED = """
name: fam
model:
  input_shape: [1, 8, 8]
  scales:
    n: {depth: 0.5, width: 0.25}
    m: {depth: 1.0, width: 1.0}
    x: {depth: 1.5, width: 2.0, max_channels: 48}
  blocks:
    cbr: [{conv2d: {out_channels: 64, kernel_size: 3, padding: 1}}, batch_norm, relu]
  layers:
    - block: {use: cbr, repeat: 4}
    - global_avg_pool
    - linear: 10
"""


def test_scales_multiply_depth_and_width_but_not_the_output():
    def convs(*o):
        rep = report(netspec.load(SCALED, list(o)))
        assert rep["output_shape"] == [10]
        return [r["output_shape"][0] for r in rep["layers"] if r["type"] == "conv2d"]
    assert convs() == [16, 16]  # the first scale by default: 4 x 0.5 repeats, 64 x 0.25 channels
    assert convs("model.scale=m") == [64] * 4
    assert convs("model.scale=x") == [96] * 6  # 4 x 1.5 repeats; min(64, 48) x 2 channels


def test_scale_flag_and_errors_through_the_cli(tmp_path):
    path = tmp_path / "fam.yaml"
    path.write_text(SCALED)
    r = run_cli("build", path, "--scale", "m", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["parameters"] > 100_000
    r = run_cli("build", path, "--scale", "mm")
    assert r.returncode == 2 and "model.scale: unknown scale 'mm'; did you mean 'm'?" in r.stderr


def test_an_absurd_repeat_is_refused_before_building():
    with pytest.raises(SpecError, match="at most 1,000|more than 10,000 layers"):  # budget.py counts first
        netspec.build(_load("    - block: {use: down, repeat: 1000000000000}"))


def test_a_misspelt_key_in_a_parameterised_block_is_reported():
    text = BLOCK.replace("{layers}", "    - block: down").replace("      layers:\n        - conv2d", "      ayers:\n        - conv2d")
    with pytest.raises(SpecError) as e:
        netspec.load(text)
    assert "unknown key 'ayers'; did you mean 'layers'?" in str(e.value)

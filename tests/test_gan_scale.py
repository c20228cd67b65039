"""A GAN's output range: the squash is found behind shape-only layers (reshape, flatten,
dropout, ...), also as a layer's `activation:` or inside a block; an unbounded generator
is named in `netspec build`; samples come back in the data's range."""
from __future__ import annotations

import json

import numpy as np
import pytest

import netspec
from netspec.kinds import compile_spec
from netspec.kinds import gan as G
from netspec.infer.commands import sample_run

from conftest import run_cli
from test_gan import env  # noqa: F401 (fixture: one quality-classifier cache, one thread)

GAN = """
name: mlp-gan
kind: gan
seed: 0
data: {{source: digits}}
latent: {{size: 16}}
model: {{blocks: {{}}}}
generator:
  {blocks}
  layers:
{layers}
discriminator:
  layers: [flatten, {{linear: 32}}, {{leaky_relu: 0.2}}, {{linear: 1}}]
optimizer:
  generator: {{adam: 0.001}}
  discriminator: {{adam: 0.001}}
train: {{epochs: 1, batch_size: 64, tensorboard: {{graph: false}}}}
"""


def spec_of(layers: list[str], blocks: str = "") -> netspec.spec.BaseSpec:
    text = GAN.format(layers="\n".join(f"    - {x}" for x in layers), blocks=blocks)
    return netspec.load(text.replace("model: {blocks: {}}\n", ""))


CASES = {
    "tanh then reshape": (["linear: 64", "tanh", "reshape: [1, 8, 8]"], (-1.0, 1.0)),
    "activation: sigmoid then reshape": (["{linear: {out_features: 64, activation: sigmoid}}", "reshape: [1, 8, 8]"],
                                         (0.0, 1.0)),
    "tanh, dropout, reshape": (["linear: 64", "tanh", "dropout: 0.1", "reshape: [1, 8, 8]"], (-1.0, 1.0)),
    "tanh, reshape, nearest upsample, max pool": (["linear: 64", "tanh", "reshape: [1, 8, 8]", "upsample: 2",
                                                   "max_pool2d: 2"], (-1.0, 1.0)),
    "named tanh, flatten, reshape": (["{linear: 64, name: out}", "tanh", "flatten", "reshape: [1, 8, 8]"],
                                     (-1.0, 1.0)),
    "concat of two tanh halves": (["{linear: 32, name: a, inputs: input}", "{tanh: , name: ta}",
                                   "{linear: 32, name: b, inputs: input}", "{tanh: , name: tb}",
                                   "{concat: , inputs: [ta, tb]}", "reshape: [1, 8, 8]"], (-1.0, 1.0)),
    "concat of tanh and sigmoid": (["{linear: 32, name: a, inputs: input}", "{tanh: , name: ta}",
                                    "{linear: 32, name: b, inputs: input}", "{sigmoid: , name: sb}",
                                    "{concat: , inputs: [ta, sb]}", "reshape: [1, 8, 8]"], None),
    "linear then reshape (unbounded)": (["linear: 64", "reshape: [1, 8, 8]"], None),
    "tanh, then a linear": (["linear: 64", "tanh", "linear: 64", "reshape: [1, 8, 8]"], None),
    "relu last": (["linear: 64", "relu", "reshape: [1, 8, 8]"], None),
}


@pytest.mark.parametrize("case", CASES)
def test_output_range_follows_the_output_back_through_shape_layers(case):
    layers, want = CASES[case]
    nets = compile_spec(spec_of(layers), data_shape=(1, 8, 8), num_classes=10)
    assert G.output_range(nets["generator"]) == want


def test_a_block_ending_in_tanh_repeated():
    blocks = "blocks:\n    up: [{linear: 64}, tanh, flatten]"
    nets = compile_spec(spec_of(["block: {use: up, repeat: 2}", "reshape: [1, 8, 8]"], blocks))
    assert G.output_range(nets["generator"]) == (-1.0, 1.0)


def test_build_notes_an_unbounded_generator(write_spec, env):  # noqa: F811
    text = GAN.format(layers="    - linear: 64\n    - reshape: [1, 8, 8]", blocks="").replace("model: {blocks: {}}\n", "")
    path = write_spec(text)
    r = run_cli("build", path, env=env)
    assert r.returncode == 0, r.stderr
    note = [line for line in r.stdout.splitlines() if line.startswith("note: ")]
    assert len(note) == 1 and "unbounded" in note[0] and "generator.reshape_1" in note[0]
    rep = json.loads(run_cli("build", path, "--json", env=env).stdout)
    assert rep["notes"] == [note[0][len("note: "):]]
    bounded = run_cli("build", write_spec(text.replace("- reshape", "- tanh\n    - reshape"), "b.yaml"), env=env)
    assert bounded.returncode == 0 and "note:" not in bounded.stdout
    assert "notes" not in json.loads(run_cli("build", "specs/digits_dcgan.yaml", "--json", env=env).stdout)


@pytest.fixture(scope="module")
def tanh_reshape_run(tmp_path_factory, env):  # noqa: F811
    """The issue's generator (linear -> tanh -> reshape) trained one epoch on the digits."""
    spec = spec_of(["linear: 64", "tanh", "reshape: [1, 8, 8]"])
    return netspec.train(spec, out=tmp_path_factory.mktemp("runs"), progress=False).folder


def test_samples_of_a_tanh_then_reshape_generator_are_in_the_data_range(tanh_reshape_run, tmp_path):
    """Digits in [0, 1]; samples used to come back in [-0.91, 1.0] because the data was
    left unscaled."""
    x = np.load(sample_run(tanh_reshape_run, n=200, out=tmp_path / "x.npy"))
    assert x.shape == (200, 1, 8, 8)
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert x.max() - x.min() > 0.5  # spread over the data's range, not stuck


def test_sample_takes_n_and_output_and_the_old_out_with_a_warning(tanh_reshape_run, tmp_path, env):  # noqa: F811
    r = run_cli("sample", tanh_reshape_run, "-n", 7, "-o", tmp_path / "a.npy", env=env)
    assert r.returncode == 0, r.stderr
    assert np.load(tmp_path / "a.npy").shape == (7, 1, 8, 8) and "warning" not in r.stderr
    r = run_cli("sample", tanh_reshape_run, "--n", 5, "--out", tmp_path / "b.npy", env=env)
    assert r.returncode == 0, r.stderr
    assert np.load(tmp_path / "b.npy").shape == (5, 1, 8, 8)
    assert "warning: --out is deprecated here; use -o/--output FILE" in r.stderr
    r = run_cli("sample", tanh_reshape_run, "--out", tmp_path / "c.npy", "-o", tmp_path / "d.npy", env=env)
    assert r.returncode == 2 and "give -o/--output FILE only" in r.stderr
    r = run_cli("sample", tanh_reshape_run, "-o", tmp_path / "x.txt", env=env)  # the file option, as named there
    assert r.returncode == 2 and "-o/--output: " in r.stderr and "write a .png" in r.stderr
    with pytest.raises(netspec.SpecError) as e:
        sample_run(tanh_reshape_run, out=tmp_path / "x.txt")
    assert e.value.problems[0].path == "out"
    r = run_cli("sample", tanh_reshape_run, "--temperature", 0, "-o", tmp_path / "z.npy", env=env)
    assert r.returncode == 2 and "--temperature: temperature 0: give a value above 0; a GAN's temperature " \
        "scales its noise, and at 0 every sample would be the same" in r.stderr, r.stderr

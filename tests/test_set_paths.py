"""--set / sweep path syntax: a quoted segment is one key (dots and all), so a sweep grid
key such as `optimizer.adam.lr` can be addressed; an unquoted path into sweep.grid gets
a hint; errors name the path."""
from __future__ import annotations

import pytest

import netspec
from netspec.errors import SpecError
from netspec.spec import Quoted, parse_set, split_path

from conftest import ROOT, run_cli

SWEEP = ROOT / "specs" / "digits_sweep.yaml"  # grid: optimizer.sgd.lr, model.layers.1.linear.out_features


@pytest.mark.parametrize("path, parts", [
    ("train.epochs", ["train", "epochs"]),
    ("model.layers.3.linear", ["model", "layers", 3, "linear"]),
    ('sweep.grid."optimizer.adam.lr"', ["sweep", "grid", "optimizer.adam.lr"]),
    ("sweep.grid.'optimizer.adam.lr'.0", ["sweep", "grid", "optimizer.adam.lr", 0]),
    ('a."3"', ["a", "3"]),
])
def test_split_path(path, parts):
    got = split_path(path)
    assert got == parts
    assert [isinstance(p, int) for p in got] == [isinstance(p, int) for p in parts]
    assert isinstance(split_path('a."3"')[1], Quoted)  # a key, not an index


@pytest.mark.parametrize("path, says", [('a."b', "not closed"), ('a."b"c', "followed by '.'"),
                                        ('a.b"c"', "quote a whole segment")])
def test_bad_quoting_is_an_error_naming_the_path(path, says):
    with pytest.raises(SpecError) as e:
        netspec.load(SWEEP, [f"{path}=1"])
    (p,) = e.value.problems
    assert says in p.message and p.file == f"--set {path}=1"


def test_the_equals_sign_inside_quotes_belongs_to_the_path():
    assert parse_set('sweep.grid."a=b"=[1, 2]') == ('sweep.grid."a=b"', [1, 2])


def test_a_grid_key_with_dots_is_set_replaced_and_indexed():
    spec = netspec.load(SWEEP, ['sweep.grid."optimizer.sgd.lr"=[0.5, 0.05]',
                                'sweep.grid."optimizer.sgd.momentum"=[0.0, 0.9]',
                                'sweep.grid."model.layers.1.linear.out_features".1=64'])
    assert spec.sweep.grid == {"optimizer.sgd.lr": [0.5, 0.05], "model.layers.1.linear.out_features": [32, 64],
                               "optimizer.sgd.momentum": [0.0, 0.9]}


def test_an_unquoted_grid_path_gets_the_quoting_hint():
    with pytest.raises(SpecError) as e:
        netspec.load(SWEEP, ["sweep.grid.optimizer.sgd.momentum=[0.5, 0.9]"])
    (p,) = e.value.problems
    assert 'sweep.grid."optimizer.sgd.momentum"=VALUE' in p.message
    # an existing one-segment key may still be indexed without quotes
    spec = netspec.load(SWEEP, ["sweep.grid.seed=[0, 1]", "sweep.grid.seed.1=7"])
    assert spec.sweep.grid["seed"] == [0, 7]


def test_quoted_grid_key_through_the_command_line():
    r = run_cli("train", SWEEP, "--dry-run", "--set", 'sweep.grid."optimizer.sgd.lr"=[0.3, 0.03, 0.003]')
    assert r.returncode == 0, r.stderr
    assert "6 trials (grid 3 x 2)" in r.stdout and "optimizer.sgd.lr=0.003 " in r.stdout
    r = run_cli("train", SWEEP, "--dry-run", "--set", "sweep.grid.optimizer.sgd.momentum=[0.9]")
    assert r.returncode == 2 and 'quote the key' in r.stderr and "Traceback" not in r.stderr

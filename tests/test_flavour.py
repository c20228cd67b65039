"""An error raised from a Python call names Python arguments (overwrite=True); the same
error from the `netspec` command names its flags (--overwrite)."""
from __future__ import annotations

import pytest

import netspec
from netspec.errors import SpecError

from conftest import ROOT, run_cli

MLP = ROOT / "specs" / "digits_mlp.yaml"


def test_a_run_in_the_way_names_python_arguments_in_python_and_flags_on_the_cli(tmp_path):
    spec = netspec.load(MLP, ["train.epochs=1", "train.tensorboard.graph=false"])
    netspec.train(spec, out=tmp_path, progress=False)
    with pytest.raises(SpecError) as e:
        netspec.train(spec, out=tmp_path, progress=False)
    (p,) = e.value.problems
    assert p.path == "out"
    for said in ("resume=True", "overwrite=True", "out=DIR", 'netspec.load(..., ["name=..."])'):
        assert said in p.message
    assert "--" not in str(e.value)
    # what the message says works
    assert netspec.train(spec, out=tmp_path, progress=False, overwrite=True).metrics["epochs"] == 1
    r = run_cli("train", MLP, "--out", tmp_path, "--set", "train.epochs=1", "-q")
    assert r.returncode == 2
    for said in ("--out:", "--resume", "--overwrite", "--out DIR", "--set name=..."):
        assert said in r.stderr
    assert "=True" not in r.stderr


def test_resume_without_a_checkpoint_names_resume_true(tmp_path):
    spec = netspec.load(MLP, ["train.epochs=1"])
    with pytest.raises(SpecError, match=r"resume=True: no checkpoint .* \(drop resume=True to start the run\)"):
        netspec.train(spec, out=tmp_path, progress=False, resume=True)


def test_a_sweep_in_the_way_names_python_arguments(tmp_path):
    spec = netspec.load(ROOT / "specs" / "digits_sweep.yaml")
    (tmp_path / "digits-sweep").mkdir()
    (tmp_path / "digits-sweep" / "results.json").write_text("{\"trials\": []}\n")  # an earlier sweep
    with pytest.raises(SpecError) as e:
        netspec.train(spec, out=tmp_path, progress=False)
    assert "resume=True" in str(e.value) and "overwrite=True" in str(e.value) and "--" not in str(e.value)


def test_a_command_run_in_process_leaves_python_callers_their_flavour(tmp_path):
    from click.testing import CliRunner

    from netspec import errors
    from netspec.cli import main
    r = CliRunner().invoke(main, ["train", str(MLP), "--out", str(tmp_path), "--resume"])
    assert r.exit_code == 2 and "--resume: no checkpoint" in r.output
    assert errors.FLAVOUR == "python"

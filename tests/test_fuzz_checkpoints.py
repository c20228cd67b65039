"""Property: whatever happens to a run's files (a checkpoint truncated, overwritten, bytes
flipped or replaced by other data; its spec.yaml damaged), using the run gives its result
or a clean RunError/SpecError, never another exception, and nothing in a file ever runs."""
from __future__ import annotations

import os
import shutil

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import netspec
from netspec.engine.runs import evaluate_run, load_checkpoint, save_checkpoint
from netspec.errors import RunError, SpecError

from conftest import ROOT

EXAMPLES = int(os.environ.get("NETSPEC_FUZZ_EXAMPLES", "150")) // 5  # each example evaluates a run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fuzz")
    spec = netspec.load(ROOT / "specs" / "digits_mlp.yaml", ["train.epochs=1"])
    return netspec.train(spec, out=out).folder


def mutate(data: bytes, how: str, at: float, junk: bytes) -> bytes:
    i = int(at * len(data))
    if how == "truncate":
        return data[:i]
    if how == "flip":
        return data[:i] + bytes(b ^ 0xFF for b in data[i:i + len(junk) + 1]) + data[i + len(junk) + 1:]
    if how == "overwrite":
        return data[:i] + junk + data[i + len(junk):]
    if how == "insert":
        return data[:i] + junk + data[i:]
    return junk  # replace


HOW = st.sampled_from(["truncate", "flip", "overwrite", "insert", "replace"])


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(how=HOW, at=st.floats(0, 1), junk=st.binary(max_size=64))
def test_a_damaged_checkpoint_evaluates_or_fails_cleanly(run, tmp_path_factory, how, at, junk):
    folder = tmp_path_factory.mktemp("damaged") / "run"
    shutil.copytree(run, folder)
    best = folder / "checkpoints" / "best.pt"
    best.write_bytes(mutate(best.read_bytes(), how, at, junk))
    try:
        metrics = evaluate_run(folder)
    except (RunError, SpecError):
        return
    assert "test/accuracy" in metrics


STATES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                      lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                      max_leaves=12)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keep=st.lists(st.sampled_from(["model", "optimizer", "data", "epoch", "metrics", "format"]), unique=True),
       extra=st.dictionaries(st.sampled_from(["model", "data", "epoch", "x"]), STATES, max_size=2))
def test_a_checkpoint_with_missing_or_wrong_parts_fails_cleanly(run, tmp_path_factory, keep, extra):
    folder = tmp_path_factory.mktemp("parts") / "run"
    shutil.copytree(run, folder)
    best = folder / "checkpoints" / "best.pt"
    state = torch.load(best, weights_only=True)
    kept = {k: v for k, v in state.items() if k in keep}
    kept.update(extra)
    torch.save(kept, best)
    try:
        evaluate_run(folder)
    except (RunError, SpecError):
        pass


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200) | st.sampled_from(["- a\n", "name: [x\n", "42\n", "", "model: 3\n", "\0"]))
def test_a_damaged_spec_yaml_in_a_run_fails_cleanly(run, tmp_path_factory, text):
    folder = tmp_path_factory.mktemp("spec") / "run"
    shutil.copytree(run, folder)
    (folder / "spec.yaml").write_text(text, encoding="utf-8", errors="surrogatepass") if "\ud800" not in text \
        else (folder / "spec.yaml").write_bytes(b"\xff")
    with pytest.raises((SpecError, RunError)):
        evaluate_run(folder)


def test_loading_never_runs_code_in_a_checkpoint(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'PWNED'}",))
    torch.save({"format": "netspec-checkpoint-1", "model": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(RunError, match="nothing in a checkpoint ever runs"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "PWNED").exists()
    save_checkpoint(tmp_path / "ok.pt", {"model": {"w": torch.ones(2)}})
    assert load_checkpoint(tmp_path / "ok.pt")["model"]["w"].sum() == 2

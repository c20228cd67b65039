"""Faults and ownership: one writer per run folder, nothing foreign deleted, a full disk,
damaged checkpoints, sweeps counted before they are expanded and resumed only as they were."""
from __future__ import annotations

import errno
import json
import os
import resource
import signal
import subprocess
import sys
import time

import pytest
import torch

import netspec
from netspec import spec as S
from netspec.engine import folders
from netspec.engine.runs import Checkpoint, CheckpointWriter, load_checkpoint, prepare, save_checkpoint, write_text
from netspec.errors import RunError, SpecError
from netspec.spec.yamlio import dump
from netspec.sweep import expand, run_sweep
from netspec.sweep.expand import MAX_TRIALS, axes, points

from conftest import ROOT, netspec_command

MLP = ROOT / "specs" / "digits_mlp.yaml"


def spec(*sets):
    return S.load(MLP, ["train.epochs=1", *sets])


# --- one writer per run folder ---
HOLD = """
import fcntl, json, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, json.dumps({"pid": os.getpid(), "host": "h", "started": time.time(), "command": "netspec train x"}).encode())
print("held", flush=True)
time.sleep(60)
"""


def test_a_second_writer_is_refused_naming_the_holder_and_a_dead_holder_is_taken_over(tmp_path, capsys):
    folder = tmp_path / "run"
    folder.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder / folders.LOCK)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(SpecError, match=f"in use by another netspec process \\(pid {holder.pid} on h"):
            prepare(spec(), tmp_path, folder=folder)
        assert not (folder / "spec.yaml").exists()  # refused before writing anything
    finally:
        holder.kill()  # SIGKILL: the holder never releases the lock itself
        holder.wait()
    prepare(spec(), tmp_path, folder=folder)
    assert f"taking over from a netspec process that ended without releasing the folder (pid {holder.pid}" \
        in capsys.readouterr().err
    assert (folder / "spec.yaml").exists() and (folder / folders.LOCK).read_text() == ""  # released cleanly


def test_the_lock_is_held_for_the_whole_run_and_released_after(tmp_path, monkeypatch):
    from netspec.engine import runs
    seen = []

    def fit(spec, folder, resume=False, progress=True, report=None):  # while the run trains, another process tries
        code = (f"from netspec import spec as S; from netspec.engine.runs import prepare\n"
                f"prepare(S.load({str(MLP)!r}), 'x', folder={str(folder)!r})")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        seen.append((r.returncode, "in use by another netspec process" in r.stderr))
        return {}
    from netspec.engine import loop
    monkeypatch.setattr(loop, "fit", fit)
    runs.run(spec(), out=tmp_path)
    assert seen == [(1, True)]  # (SpecError uncaught in that snippet: exit 1)
    assert (tmp_path / "digits-mlp" / folders.LOCK).read_text() == ""  # released


def test_a_run_killed_before_its_first_checkpoint_is_simply_restarted(tmp_path):
    folder = tmp_path / "digits-mlp"
    folder.mkdir()
    write_text(folder / "spec.yaml", "name: old\n")
    (folder / "events.out.tfevents.1.host.1.0").write_bytes(b"old events")
    (folder / folders.LOCK).write_text(json.dumps({"pid": 999999, "host": "gone", "started": 0}))
    prepare(spec(), tmp_path)  # plain train: no --overwrite needed
    assert sorted(p.name for p in folder.iterdir()) == [folders.LOCK, "spec.yaml"]
    assert S.load(folder / "spec.yaml").name == "digits-mlp"
    (folder / "events.out.tfevents.2.host.1.0").write_bytes(b"killed again")
    prepare(spec(), tmp_path, resume=True)  # --resume with nothing to resume starts it too
    assert sorted(p.name for p in folder.iterdir()) == [folders.LOCK, "spec.yaml"]


def test_overwrite_deletes_only_what_netspec_wrote_and_never_follows_a_symlink(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep")
    folder = tmp_path / "out" / "digits-mlp"
    (folder / "checkpoints").mkdir(parents=True)
    save_checkpoint(folder / "checkpoints" / "last.pt", {"epoch": 1})
    (folder / "spec.yaml").write_text("name: digits-mlp\n")
    (folder / "metrics.json").write_text("{}")
    (folder / "digits-mlp.onnx").write_bytes(b"graph")  # what `netspec export` leaves beside a run
    (folder / "digits-mlp.json").write_text("{}")
    (folder / "samples.png").symlink_to(outside / "precious.txt")  # a link netspec's name: the link goes
    with pytest.raises(SpecError, match="already holds a run"):
        prepare(spec(), tmp_path / "out")
    prepare(spec(), tmp_path / "out", overwrite=True)
    assert (outside / "precious.txt").read_text() == "keep"
    assert sorted(p.name for p in folder.iterdir()) == [folders.LOCK, "spec.yaml"]
    # a symlinked run folder: replaced inside its target, the link itself stays
    (tmp_path / "out" / "linked").symlink_to(folder)
    prepare(spec("name=linked"), tmp_path / "out", overwrite=True)
    assert (tmp_path / "out" / "linked").is_symlink() and S.load(folder / "spec.yaml").name == "linked"


# --- a full disk ---
def test_a_full_disk_while_writing_leaves_the_old_file_and_says_so(tmp_path, monkeypatch):
    target = tmp_path / "spec.yaml"
    target.write_text("before\n")

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")
    real = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: Full(real(fd, *a, **k)))
    with pytest.raises(folders.DiskFull, match="the disk is full: writing .*spec.yaml failed.*resume=True"):
        write_text(target, "after\n")
    with pytest.raises(folders.DiskFull, match="the disk is full"):
        save_checkpoint(tmp_path / "last.pt", {"epoch": 1})
    writer = CheckpointWriter()
    writer.save(tmp_path / "best.pt", {"epoch": 1})
    with pytest.raises(folders.DiskFull, match="the disk is full"):
        writer.close()
    monkeypatch.undo()
    assert target.read_text() == "before\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]  # no temp files left


def test_a_full_disk_in_tensorboards_writer_thread_is_one_clear_error(tmp_path, monkeypatch, capfd):
    from tensorboard.summary.writer import record_writer

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(record_writer.RecordWriter, "write", full)
    with pytest.raises(RunError, match="the disk is full.*continue the run with resume=True"):
        netspec.train(spec(), out=tmp_path)
    assert "Traceback" not in capfd.readouterr().err


def test_a_real_file_size_limit_stops_the_run_with_a_clear_message_and_it_resumes(tmp_path):
    def limit():  # checkpoints (~120 KB) are the first files past 64 KB
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
    cmd = [*netspec_command(), "train", str(MLP), "--set", "train.epochs=2", "--out", str(tmp_path), "-q"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, preexec_fn=limit)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "the disk is full" in r.stderr and "--resume" in r.stderr
    folder = tmp_path / "digits-mlp"
    assert not [p for p in folder.rglob(".*") if p.name != folders.LOCK]  # no half-written files
    r = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads((folder / "metrics.json").read_text())["epochs"] == 2


# --- damaged checkpoints ---
def test_checkpoints_missing_keys_name_them_and_save_back_as_plain_data(tmp_path):
    save_checkpoint(tmp_path / "a.pt", {"optimizer": {"generator": {"lr": 1}}, "epoch": 3})
    state = load_checkpoint(tmp_path / "a.pt")
    with pytest.raises(RunError, match="has no 'model' .*another kind of run"):
        state["model"]
    with pytest.raises(RunError, match="has no 'optimizer.discriminator'"):
        state["optimizer"]["discriminator"]
    save_checkpoint(tmp_path / "b.pt", {"kept": state, "inner": state["optimizer"]})  # loaded parts saved again
    again = torch.load(tmp_path / "b.pt", weights_only=True)
    assert again["kept"]["epoch"] == 3 and type(again["inner"]) is dict
    assert isinstance(state, Checkpoint)


# --- sweeps ---
SWEEP = """
name: sw
data: {source: digits}
model: {input_shape: [1, 8, 8], layers: [flatten, linear: 10]}
loss: cross_entropy
optimizer: {adam: {lr: 0.01}}
train: {epochs: 1}
sweep:
  grid:
    optimizer.adam.lr: [0.01, 0.1]
"""


def test_a_huge_grid_is_counted_and_refused_before_it_is_expanded():
    text = SWEEP.replace("    optimizer.adam.lr: [0.01, 0.1]", "\n".join(
        f"    {p}: [{', '.join(str(v) for v in range(1, 101))}]"
        for p in ("train.epochs", "train.batch_size", "seed", "train.log_every", "model.layers.1.linear")))
    t = time.perf_counter()
    with pytest.raises(SpecError, match=r"asks for 10,000,000,000 trials \(100 x 100 x 100 x 100 x 100 grid points\)"):
        expand(S.load(text))
    assert time.perf_counter() - t < 5  # nothing was expanded (10^10 points would never end)
    small = S.load(SWEEP)
    assert not isinstance(points(small, axes(small)), list) and MAX_TRIALS >= 1000  # trials are streamed


def test_resuming_an_edited_sweep_is_refused_naming_what_changed(tmp_path):
    from netspec.spec import written
    folder = tmp_path / "sw"
    folder.mkdir()
    (folder / "sweep.yaml").write_text(dump(written(S.load(SWEEP))))
    (folder / "results.json").write_text('{"trials": []}')
    edited = SWEEP.replace("[0.01, 0.1]", "[0.01, 0.3]").replace("epochs: 1", "epochs: 2")
    with pytest.raises(SpecError) as e:
        run_sweep(S.load(edited), out=tmp_path, resume=True, quiet=True)
    paths = {p.path for p in e.value.problems}
    assert paths == {"sweep.grid.optimizer.adam.lr", "train.epochs"}, paths
    assert all("mix trials of two different sweeps" in p.message and p.line for p in e.value.problems)

"""Run folders: what every kind of training loop shares.

A run lives in OUT/<name>/: spec.yaml (the fully resolved spec), metrics.json, TensorBoard
event files and checkpoints/{last,best}.pt. Checkpoints are written atomically and read
with weights_only=True. RUNNERS maps a spec kind to its loop module (one file per loop).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import Problem, RunError, SpecError
from ..spec.yamlio import dump

CHECKPOINT_FORMAT = "netspec-checkpoint-1"


@dataclass
class RunResult:
    folder: Path
    metrics: dict = field(default_factory=dict)
    status: str = "ok"


def runner(name: str):
    from ..kinds import kind
    return kind(name)


def prepare(spec, out: str | Path, resume: bool = False, overwrite: bool = False,
            folder: Path | None = None) -> Path:
    """Make the run folder; refuse to clobber an earlier run unless asked."""
    from ..spec import written
    folder = Path(folder) if folder else Path(out) / spec.name
    last = folder / "checkpoints" / "last.pt"
    if resume:
        if not last.exists():
            raise SpecError([Problem("", f"--resume: no checkpoint at {last}; nothing to resume "
                                         "(drop --resume to start the run)", str(folder))])
        old = folder / "spec.yaml"
        if old.exists():
            _check_same_run(spec, old, folder)
        for tmp in last.parent.glob(".*.pt.*"):  # half-written files of a killed process
            tmp.unlink(missing_ok=True)
    elif folder.exists() and any(p.name != "spec.yaml" for p in folder.iterdir()):
        # (a folder holding only spec.yaml is a run that failed before training: reused)
        if not overwrite:
            raise SpecError([Problem("--out", "this folder already holds a run: continue it with --resume, "
                                              "replace it with --overwrite, or pick another --out or name "
                                              "(--set name=...)", str(folder))])
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / "spec.yaml", dump(written(spec)))
    return folder


def _check_same_run(spec, old_file: Path, folder: Path) -> None:
    """Resuming with a different network or data would silently mix two runs."""
    import yaml

    from ..spec import written
    old = yaml.safe_load(old_file.read_text())
    new = written(spec)
    keys = [k for k in set(old) | set(new) if k not in ("train", "sweep", "description")]
    changed = [k for k in sorted(keys) if old.get(k) != new.get(k)]
    if changed:
        raise SpecError([Problem(k, f"differs from the run in {folder} (its spec.yaml); resuming would "
                                    "mix two different runs: restore it or start a new run", str(old_file))
                         for k in changed])


def write_text(path: Path, text: str) -> None:
    """Atomic write: a reader never sees half a file, a crash never leaves one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o644)  # mkstemp makes files private; run folders are meant to be shared
    os.replace(tmp, path)


def write_metrics(folder: Path, metrics: dict) -> None:
    write_text(Path(folder) / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n")


def save_checkpoint(path: Path, state: dict) -> None:
    import torch
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class CheckpointWriter:
    """Checkpoints written off the training thread. `save` serialises the state at once (later
    steps cannot change it); one worker writes the bytes and swaps the file in atomically, one
    checkpoint at a time, in order. A failed write is raised by the next call; `close` waits
    for the last write. A kill mid-write leaves the previous file (and a hidden temp file)."""

    def __init__(self):
        from concurrent.futures import ThreadPoolExecutor
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="netspec-checkpoint")
        self.pending = None

    def save(self, path: Path, state: dict, links=()) -> None:
        """Write `state` to `path`, then make each of `links` the same file (link_checkpoint)."""
        import io

        import torch
        buf = io.BytesIO()
        torch.save({"format": CHECKPOINT_FORMAT, **state}, buf)
        self.wait()
        self.pending = self.pool.submit(self._write, Path(path), buf, [Path(p) for p in links])

    @staticmethod
    def _write(path: Path, buf, links) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(buf.getbuffer())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        for dst in links:
            link_checkpoint(path, dst)

    def wait(self) -> None:
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self.pool.shutdown()


def link_checkpoint(src: Path, dst: Path) -> None:
    """Make `dst` hold the same checkpoint as `src` without serialising it again (a hard link,
    swapped in atomically; replacing either file later leaves the other as it was)."""
    src, dst = Path(src), Path(dst)
    tmp = dst.with_name(f".{dst.name}.link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:  # a file system without hard links
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def load_checkpoint(path: Path) -> dict:
    """Load a netspec checkpoint safely (weights_only); foreign or corrupt files are a clear error."""
    import pickle

    import torch
    path = Path(path)
    if not path.exists():
        raise RunError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError, OSError) as e:
        raise RunError(f"{path} is not a readable checkpoint (corrupt or not written by netspec): "
                       f"{str(e).splitlines()[0][:200]}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise RunError(f"{path} is not a netspec checkpoint (format "
                       f"{state.get('format') if isinstance(state, dict) else type(state).__name__!r})")
    return state


def run(spec, out="runs", resume=False, progress=True, overwrite=False, folder=None, **kw) -> RunResult:
    """Train one spec into OUT/<name>/."""
    folder = prepare(spec, out, resume=resume, overwrite=overwrite, folder=folder)  # refuses fast, before torch
    from .loop import fit
    metrics = fit(spec, folder, resume=resume, progress=progress, report=kw.get("report"))
    return RunResult(folder, metrics)


def open_run(run_dir, overrides=()):
    """The spec of a finished run (its spec.yaml), with overrides."""
    from ..spec import load
    run_dir = Path(run_dir)
    f = run_dir / "spec.yaml"
    if not f.exists():
        raise SpecError([Problem("", f"{run_dir} is not a run folder (no spec.yaml in it)", str(run_dir))])
    return load(f, list(overrides))


def checkpoint_path(run_dir, which: str) -> Path:
    p = Path(run_dir) / "checkpoints" / f"{which}.pt"
    if which == "best" and not p.exists():
        p = p.with_name("last.pt")
    return p


def evaluate_run(run_dir, split=None, which="best", overrides=()):
    spec = open_run(run_dir, overrides)
    return runner(spec.kind).evaluate(spec, load_checkpoint(checkpoint_path(run_dir, which)), split)



"""Run folders: what every kind of training shares.

A run lives in OUT/<name>/: spec.yaml (the fully resolved spec), metrics.json, TensorBoard
event files and checkpoints/{last,best}.pt. `own_run` makes the folder this process's for the
run's life (one writer; see folders.py). Every file is written atomically (a temp file swapped
in; a full disk is a DiskFull error) and checkpoints are read with weights_only=True.
"""
from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import Problem, RunError, SpecError, arg, option, override
from ..spec.yamlio import dump
from .folders import (DiskFull, clear_run, disk_full, disk_guard, folder_state, full_message, lock_folder,
                      names_of)

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
    """Make the run folder; refuse to clobber an earlier run unless asked. Holds the folder's
    lock while it looks and writes (own_run holds it for the whole run)."""
    folder = Path(folder) if folder else Path(out) / spec.name
    _refuse(folder, folder_state(folder), resume, overwrite)  # nothing touched, not even the lock file
    with lock_folder(folder):
        _prepare(spec, folder, resume, overwrite)
    return folder


@dataclass
class Owned:
    folder: Path
    resume: bool  # False when --resume found a run that stopped before its first checkpoint


@contextmanager
def own_run(spec, out: str | Path = "runs", resume: bool = False, overwrite: bool = False,
            folder: Path | None = None):
    """`with own_run(spec, out, ...) as owned:` train into owned.folder (resuming when
    owned.resume). The folder is this process's until the block ends: locked (a second writer
    is refused, naming this one), checked and prepared (spec.yaml written); a full disk
    anywhere inside becomes a RunError that says so (see folders.disk_guard)."""
    folder = Path(folder) if folder else Path(out) / spec.name
    _refuse(folder, folder_state(folder), resume, overwrite)  # nothing touched, not even the lock file
    with lock_folder(folder), disk_guard():
        yield Owned(folder, _prepare(spec, folder, resume, overwrite))


def _prepare(spec, folder: Path, resume: bool, overwrite: bool) -> bool:
    """Check and make the run folder (its lock held); returns whether the run resumes."""
    from ..spec import written
    last = folder / "checkpoints" / "last.pt"
    state = folder_state(folder)
    if resume and not last.exists() and _never_checkpointed(folder, state):
        # killed before its first checkpoint: nothing to continue, nothing to lose
        print(f"{folder}: no checkpoint yet (the run stopped before its first one); starting it "
              "from the beginning", file=sys.stderr)
        resume = False
    _refuse(folder, state, resume, overwrite)  # again, now that the folder is this process's
    if resume:
        old = folder / "spec.yaml"
        if old.exists():
            _check_same_run(spec, old, folder)
        for tmp in last.parent.glob(".*.pt.*"):  # half-written files of a killed process
            tmp.unlink(missing_ok=True)
    elif state.entries:
        clear_run(folder, state)  # replaced (--overwrite), or a run that never checkpointed
    write_text(folder / "spec.yaml", dump(written(spec)))
    return resume


def _refuse(folder: Path, state, resume: bool, overwrite: bool) -> None:
    """The SpecError for a folder this run may not use as asked (read-only)."""
    last = folder / "checkpoints" / "last.pt"
    if resume and not last.exists() and not _never_checkpointed(folder, state):
        raise SpecError([Problem("", f"{option('resume')}: no checkpoint at {last}; nothing to resume "
                                     f"(drop {option('resume')} to start the run)", str(folder))])
    if not resume and state.foreign:
        raise SpecError([Problem(arg("out"), f"{folder} is not a netspec run folder (it holds "
                                          f"{names_of(state.foreign)}); netspec never deletes what it did "
                                          f"not write, with or without {option('overwrite')}: pick another {option('out', 'DIR')} or "
                                          f"name ({override('name=...')})", str(folder))])
    if not resume and state.checkpointed and not overwrite:
        raise SpecError([Problem(arg("out"), f"this folder already holds a run: continue it with {option('resume')}, "
                                          f"replace it with {option('overwrite')}, or pick another {option('out', 'DIR')} or name "
                                          f"({override('name=...')})", str(folder))])


def _never_checkpointed(folder: Path, state) -> bool:
    return state.run and (folder / "spec.yaml").exists() and not state.checkpointed


def _check_same_run(spec, old_file: Path, folder: Path) -> None:
    """Resuming with a different network or data would silently mix two runs."""
    from ..spec import written
    old = read_run_spec(old_file)
    new = written(spec)
    keys = [k for k in set(old) | set(new) if k not in ("train", "sweep", "description")]
    changed = [k for k in sorted(keys) if old.get(k) != new.get(k)]
    if changed:
        raise SpecError([Problem(k, f"differs from the run in {folder} (its spec.yaml); resuming would "
                                    "mix two different runs: restore it or start a new run", str(old_file))
                         for k in changed])


def read_run_spec(file: Path) -> dict:
    """The raw mapping of a run's spec.yaml; a damaged one is a SpecError naming the file."""
    from ..spec.yamlio import read
    try:
        return read(Path(file)).data
    except SpecError as e:
        for p in e.problems:
            p.message += f" (the run's record of its spec is damaged: restore it, or start a new run with {option('overwrite')})"
        raise


def write_text(path: Path, text: str) -> None:
    """Atomic write: a reader never sees half a file, a crash or a full disk never leaves one."""
    _atomic(Path(path), lambda f: f.write(text.encode("utf-8")))


def write_metrics(folder: Path, metrics: dict) -> None:
    write_text(Path(folder) / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n")


def _atomic(path: Path, fill) -> None:
    """Write a temp file beside `path` with fill(file), then swap it in. On any failure the temp
    file is removed and `path` is as it was; a full disk is a DiskFull error."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as f:
            fill(f)
        os.chmod(tmp, 0o644)  # mkstemp makes files private; run folders are meant to be shared
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if disk_full(e):
            raise DiskFull(full_message(path, e)) from e
        raise


def save_checkpoint(path: Path, state: dict) -> None:
    import torch
    _atomic(Path(path), lambda f: torch.save(plain({"format": CHECKPOINT_FORMAT, **state}), f))


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
        torch.save(plain({"format": CHECKPOINT_FORMAT, **state}), buf)
        self.wait()
        self.pending = self.pool.submit(self._write, Path(path), buf, [Path(p) for p in links])

    @staticmethod
    def _write(path: Path, buf, links) -> None:
        _atomic(path, lambda f: f.write(buf.getbuffer()))
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
        _atomic(dst, lambda f: f.write(src.read_bytes()))
        return
    os.replace(tmp, dst)


class Checkpoint(dict):
    """A loaded checkpoint: a plain dict, except that a missing key is a RunError naming the
    file and what it holds (a checkpoint of another kind, or an older format), not a KeyError.
    Saving goes through plain() first: weights_only loading accepts plain dicts only."""

    def __init__(self, data, path: Path, where: str = ""):
        super().__init__(data)
        self.path, self.where = path, where
        for k, v in self.items():
            if type(v) is dict and len(where.split(".")) < 3:  # optimizer: {generator, discriminator}
                dict.__setitem__(self, k, Checkpoint(v, path, f"{where}{k}."))

    def __missing__(self, key):
        held = ", ".join(repr(k) for k in list(self)[:8] if k != "format") or "nothing"
        raise RunError(f"{self.path}: the checkpoint has no '{self.where}{key}' (it holds {held}): it was "
                       "written by another kind of run or another netspec version; use a checkpoint of this run")



def plain(x):
    """`x` with every Checkpoint in it turned back into a dict (the same object when there is none)."""
    if isinstance(x, Checkpoint):
        return {k: plain(v) for k, v in x.items()}
    if type(x) is dict:
        out = None
        for k, v in x.items():
            p = plain(v)
            if p is not v:
                out = dict(x) if out is None else out
                out[k] = p
        return x if out is None else out
    if type(x) in (list, tuple):
        items = [plain(v) for v in x]
        return type(x)(items) if any(a is not b for a, b in zip(items, x)) else x
    return x


def load_checkpoint(path: Path) -> dict:
    """Load a netspec checkpoint safely (weights_only: nothing in it runs); an empty, corrupt,
    foreign or incomplete file is a RunError naming it, never another exception."""
    import torch

    from ..files import FileProblem, check_regular
    path = Path(path)
    if not path.exists():
        raise RunError(f"no checkpoint at {path}")
    try:
        if check_regular(path) == 0:
            raise RunError(f"{path} is empty (0 bytes): not a checkpoint; the run that wrote it was stopped "
                           "mid-write by something other than netspec, or the file was truncated")
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileProblem as e:
        raise RunError(str(e)) from None
    except (MemoryError, RunError, KeyboardInterrupt):
        raise
    except Exception as e:  # a hostile file can make the unpickler raise anything
        text = str(e)
        why = f"{type(e).__name__}: {(text.splitlines() or [''])[0][:200]}"
        if "Weights only load failed" in text:  # a pickle that would build Python objects, or no pickle
            found = re.search(r"GLOBAL ([\w.]+)", text)
            why = (f"it would build Python objects ({found.group(1)}), and netspec loads only tensors and "
                   "plain data: nothing in a checkpoint ever runs") if found else "its contents are not a checkpoint's"
        raise RunError(f"{path} is not a readable checkpoint (corrupt or not written by netspec): {why}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise RunError(f"{path} is not a netspec checkpoint (format "
                       f"{state.get('format') if isinstance(state, dict) else type(state).__name__!r})")
    for key, types in FIELDS.items():  # what the engine writes has these types; anything else is damage
        if key in state and not isinstance(state[key], types):
            raise RunError(f"{path} is damaged: its '{key}' is a {type(state[key]).__name__}, not "
                           f"{' or '.join(t.__name__ if t is not type(None) else 'None' for t in types)}")
    return Checkpoint(state, path)


FIELDS = {"epoch": (int,), "step": (int,), "data": (dict, type(None)), "metrics": (dict, type(None)),
          "monitor": (dict, type(None)), "stopper": (dict, type(None)), "logged": (dict, type(None))}


def run(spec, out="runs", resume=False, progress=True, overwrite=False, folder=None, **kw) -> RunResult:
    """Train one spec into OUT/<name>/."""
    from .loop import fit
    with own_run(spec, out, resume=resume, overwrite=overwrite, folder=folder) as owned:  # refuses fast, before torch
        metrics = fit(spec, owned.folder, resume=owned.resume, progress=progress, report=kw.get("report"))
    return RunResult(owned.folder, metrics)


def open_run(run_dir, overrides=()):
    """The spec of a finished run (its spec.yaml), with overrides."""
    from ..spec import load
    run_dir = Path(run_dir)
    f = run_dir / "spec.yaml"
    if not f.exists():
        raise SpecError([Problem("", f"{run_dir} is not a run folder (no spec.yaml in it)", str(run_dir))])
    read_run_spec(f)  # a damaged record says so
    return load(f, list(overrides))


def checkpoint_path(run_dir, which: str) -> Path:
    p = Path(run_dir) / "checkpoints" / f"{which}.pt"
    if which == "best" and not p.exists():
        p = p.with_name("last.pt")
    return p


def evaluate_run(run_dir, split=None, which="best", overrides=()):
    spec = open_run(run_dir, overrides)
    return runner(spec.kind).evaluate(spec, load_checkpoint(checkpoint_path(run_dir, which)), split)



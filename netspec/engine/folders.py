"""Who may write a run folder, what netspec may delete in it, and a full disk.

- One writer per folder: `lock_folder` takes an exclusive flock on FOLDER/.netspec.lock for
  as long as the process uses the folder, with the holder (pid, host, start, command) written
  in the file. A second writer is refused, naming the holder. The kernel drops the lock when
  its process dies, however it dies, so a lock left by a dead process is simply taken over.
- Nothing outside a run is deleted: `folder_state` sorts a folder's entries into those netspec
  writes and the rest; `clear_run` deletes only the former, and never follows a symlink.
- A full disk (ENOSPC, EFBIG, EDQUOT) while writing is a DiskFull error saying so; the files
  are written atomically, so what was there before is intact and the run can be resumed.
"""
from __future__ import annotations

import errno
import fnmatch
import json
import os
import socket
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import Problem, RunError, SpecError, arg, option, override

LOCK = ".netspec.lock"
FULL = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}

# what netspec writes in a run folder (and a sweep folder); a folder holding anything else
# is not netspec's to delete. Hidden ".NAME.*" files are atomic writes a kill interrupted.
TOP = ["spec.yaml", "metrics.json", "trial.log", "trial.json", "samples.png", "events.out.tfevents.*",
       "sweep.yaml", "results.csv", "results.json", LOCK, ".spec.yaml.*", ".metrics.json.*",
       ".trial.json.*", ".results.csv.*", ".results.json.*", ".sweep.yaml.*",
       "*.onnx", "*.onnx.data", "*.torchscript.pt", "*.safetensors"]  # `netspec export` writes these beside them
INSIDE = {"checkpoints": ["*.pt", ".*.pt.*", ".*.pt.link"], "samples": ["*.png", ".*.png.*"]}


class DiskFull(RunError):
    """A write that failed because the disk (or the file size limit) is full."""


def disk_full(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in FULL


def full_message(what, e: OSError) -> str:
    return (f"the disk is full: writing {what} failed ({e.strerror or os.strerror(e.errno)}); "
            "files written before are intact (each is written whole or not at all): free some space, "
            f"then continue the run with {option('resume')}")


@contextmanager
def disk_guard():
    """Inside: a disk-full OSError from any write (a checkpoint, spec.yaml, TensorBoard's
    writer thread) leaves as one DiskFull error, with no thread traceback printed."""
    seen: list[OSError] = []
    previous = threading.excepthook

    def hook(args):
        if disk_full(args.exc_value):  # TensorBoard's writer thread: raised again in the loop
            seen.append(args.exc_value)
            return
        previous(args)
    threading.excepthook = hook
    try:
        yield
    except DiskFull:
        raise
    except OSError as e:
        if not disk_full(e):
            raise
        raise DiskFull(full_message(e.filename or "the run folder", e)) from e
    finally:
        threading.excepthook = previous
    if seen:
        raise DiskFull(full_message("TensorBoard events", seen[0]))


# --- what is in a folder ---
@dataclass
class FolderState:
    entries: list[Path] = field(default_factory=list)  # everything in it
    ours: list[Path] = field(default_factory=list)  # what netspec wrote (deletable)
    foreign: list[Path] = field(default_factory=list)  # the rest (never deleted)
    run: bool = False  # netspec's marks are there: the lock, or spec.yaml with run files
    checkpointed: bool = False  # a checkpoint or final metrics: work that --overwrite would lose


def _match(name: str, patterns) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def folder_state(folder: Path) -> FolderState:
    folder = Path(folder)
    st = FolderState()
    if not folder.is_dir():
        return st
    try:
        entries = sorted(folder.iterdir())
    except OSError as e:
        raise SpecError([Problem(arg("out"), f"cannot read the run folder {folder}: {e.strerror}", str(folder))]) from None
    for p in entries:
        st.entries.append(p)
        if p.is_symlink():
            (st.ours if _match(p.name, TOP) else st.foreign).append(p)
        elif p.is_dir() and p.name in INSIDE:
            inner = list(p.iterdir())
            bad = [q for q in inner if q.is_dir() and not q.is_symlink() or not _match(q.name, INSIDE[p.name])]
            (st.foreign if bad else st.ours).append(p)
            st.checkpointed |= p.name == "checkpoints" and any(q.suffix == ".pt" for q in inner)
        elif p.is_dir() and _is_trial(p):  # a sweep's trial folders
            st.ours.append(p)
            st.checkpointed = True
        elif p.is_file() and (_match(p.name, TOP) or p.name == f"{folder.name}.json"):  # (export's sidecar)
            st.ours.append(p)
        else:
            st.foreign.append(p)
    names = {p.name for p in st.ours}
    # a spec.yaml alone may be the user's own spec: it takes one of netspec's own files
    st.run = bool(names & {LOCK, "checkpoints", "metrics.json", "trial.json", "sweep.yaml", "results.json"}
                  or any(n.startswith("events.out.tfevents.") for n in names))
    st.checkpointed |= bool(names & {"metrics.json", "results.json"})
    if not st.run and st.ours:  # netspec-like names alone (a user's spec.yaml) are not enough
        st.foreign, st.ours = st.entries, []
    return st


def _is_trial(p: Path) -> bool:
    s = folder_state(p)
    return s.run and not s.foreign and (p / "trial.json").exists()


def names_of(paths, n: int = 3) -> str:
    shown = ", ".join(repr(p.name + ("/" if p.is_dir() and not p.is_symlink() else "")) for p in paths[:n])
    return shown + (f" and {len(paths) - n} more" if len(paths) > n else "")


def clear_run(folder: Path, state: FolderState | None = None) -> None:
    """Delete what an earlier run wrote in `folder` (never the lock, never a foreign file; a
    symlink is removed, not followed)."""
    state = state or folder_state(folder)
    if state.foreign:  # (callers refuse earlier; this is the last guard)
        raise SpecError([Problem(arg("out"), f"{folder} holds files netspec did not write ({names_of(state.foreign)}); "
                                          "nothing was deleted", str(folder))])
    for p in state.ours:
        if p.name == LOCK:
            continue
        _remove(p)


def _remove(p: Path) -> None:
    if p.is_symlink() or not p.is_dir():
        p.unlink(missing_ok=True)
        return
    for q in p.iterdir():
        _remove(q)
    p.rmdir()


# --- one writer per folder ---
_held: dict[str, int] = {}  # folders this process holds: real path -> lock file descriptor


def holder_text(info: dict) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["started"])) if isinstance(
        info.get("started"), (int, float)) else "?"
    cmd = f": {info['command']}" if info.get("command") else ""
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')}, since {when}{cmd}"


def _read_holder(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096).decode("utf-8", "replace") or "{}")
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        what = "is a dangling symlink" if folder.is_symlink() and not folder.exists() else \
            "exists and is not a folder" if folder.exists() or isinstance(e, FileExistsError) else \
            f"cannot be made ({e.strerror})"
        raise SpecError([Problem(arg("out"), f"the run folder {folder} {what}; pick another {option('out', 'DIR')} or name "
                                          f"({override('name=...')})", str(folder))]) from None


@contextmanager
def lock_folder(folder: Path):
    """Hold `folder` for this process: refuse when another live process holds it. Re-entrant.
    Nothing is written into a folder that holds files netspec did not write."""
    folder = Path(folder)
    state = folder_state(folder)
    if state.foreign and not state.run:
        raise SpecError([Problem(arg("out"), f"{folder} is not a netspec run folder (it holds {names_of(state.foreign)}); "
                                          f"netspec writes only into new or netspec folders: pick another {option('out', 'DIR')} "
                                          f"or name ({override('name=...')})", str(folder))])
    _make_folder(folder)
    real = os.path.realpath(folder)
    if real in _held:
        yield
        return
    try:
        import fcntl
    except ImportError:  # Windows: no flock; one writer is then up to the user
        yield
        return
    path = folder / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as e:
        if disk_full(e):
            raise DiskFull(full_message(path, e)) from None
        raise SpecError([Problem(arg("out"), f"cannot take the run folder: {path}: {e.strerror}", str(folder))]) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        info = _read_holder(fd)
        os.close(fd)
        raise SpecError([Problem(arg("out"), f"{folder} is in use by another netspec process ({holder_text(info)}); "
                                          "one run folder has one writer: wait for it to end, stop it, or pick "
                                          f"another {option('out', 'DIR')} or name ({override('name=...')})", str(folder))]) from None
    except OSError:  # a file system without locks (some network mounts): go on unlocked
        pass
    try:
        old = _read_holder(fd)
        if old.get("pid") and (old.get("pid"), old.get("host")) != (os.getpid(), socket.gethostname()):
            print(f"{folder}: taking over from a netspec process that ended without releasing the folder "
                  f"({holder_text(old)})", file=sys.stderr)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
              "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
    except OSError as e:
        os.close(fd)
        if disk_full(e):
            raise DiskFull(full_message(path, e)) from None
        raise
    _held[real] = fd
    try:
        yield
    finally:
        del _held[real]
        try:
            os.ftruncate(fd, 0)  # an empty lock file: released cleanly
        except OSError:
            pass
        os.close(fd)

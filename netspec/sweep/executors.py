"""Running trials: each its own process, forked from a preloaded server (or a fresh
`python -m netspec.sweep.trial FOLDER`), on this machine (--workers N) or as Ray tasks.
A crash, a NaN or a SIGKILL ends that trial only; `finish` reads what it left behind."""
from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..errors import RunError, SpecError
from .results import DONE

# --- one trial: the process, and what it left behind ---

# Trials fork from a server process that has imported torch, netspec and the data and
# TensorBoard modules once, so a trial pays no import time (seconds per trial; see bench/).
# Each trial is still its own process: a crash, a NaN or a SIGKILL ends that trial only.
# Without fork (Windows) a trial is a fresh `python -m netspec.sweep FOLDER`.
FORKSERVER = True

PRELOAD = ["netspec.sweep", "netspec.sweep.executors", "netspec.engine.runs", "netspec.engine.loop", "netspec.kinds.network", "netspec.kinds.gan", "netspec.kinds.seq2seq", "netspec.data",
           "torch._dynamo", "torch.utils.tensorboard"]  # torch._dynamo: the optimizers import it

def _env(job: dict) -> dict:
    n = str(job["threads"])
    return {"NETSPEC_THREADS": n, "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n}

def _argv(job: dict) -> list[str]:
    return [job["folder"]] + (["--resume"] if job["resume"] else [])

def forkserver():
    """The context whose server imports PRELOAD once; started now, so its imports overlap
    with the checks the sweep does before its first trial. None where fork is missing."""
    import multiprocessing as mp
    if not FORKSERVER or "forkserver" not in mp.get_all_start_methods():
        return None
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)  # takes effect when the server starts (once)
    from multiprocessing import forkserver as server
    server.ensure_running()
    return ctx

class Forked:
    """A trial process forked from the preloaded server, with Popen's few methods used here."""

    def __init__(self, job: dict, ctx):
        self.proc = ctx.Process(target=_forked_trial, args=(job,), daemon=False)
        self.proc.start()
        self.pid = self.proc.pid

    @property
    def returncode(self):
        return self.proc.exitcode

    def poll(self):
        return self.proc.exitcode

    def wait(self, timeout=None):
        self.proc.join(timeout)
        if self.proc.exitcode is None:
            raise subprocess.TimeoutExpired("trial", timeout)
        return self.proc.exitcode

    def send_signal(self, sig):
        if self.proc.exitcode is None:
            os.kill(self.pid, sig)

    def kill(self):
        self.proc.kill()

def _forked_trial(job: dict) -> None:
    """The forked trial: its own folder's log as stdout/stderr, its threads, then train."""
    # If the sweep dies (even by SIGKILL) no trial may train on unseen: the server exits when
    # its last client closes the `alive` pipe, so a trial gives up its end (it starts no
    # processes of its own), and asks for SIGTERM when the server, its parent, is gone.
    from multiprocessing import forkserver as server
    alive = getattr(server._forkserver, "_forkserver_alive_fd", None)
    if alive is not None:
        os.close(alive)
        server._forkserver._forkserver_alive_fd = None
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    os.chdir(job["cwd"])
    os.environ.update(_env(job))
    fd = os.open(Path(job["folder"]) / "trial.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.exit(_trial_main(_argv(job)))

def start(job: dict):
    """Start one trial's process; returns a Popen-like handle."""
    folder = Path(job["folder"])
    with open(folder / "trial.log", "a") as log:
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {'resume' if job['resume'] else 'start'} "
                  f"({job['threads']} threads)\n")
        log.flush()
        ctx = forkserver()
        if ctx is not None:
            return Forked(job, ctx)
        return subprocess.Popen([job["python"], "-m", "netspec.sweep.trial", *_argv(job)], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **_env(job)}, cwd=job["cwd"])

def finish(job: dict, code: int, seconds: float) -> dict:
    """A finished trial process -> {status, error, metrics, seconds}; writes its HParams."""
    folder = Path(job["folder"])
    out = {"status": DONE, "error": None, "metrics": {}, "seconds": round(seconds, 3)}
    if code == 0:
        try:
            out["metrics"] = json.loads((folder / "metrics.json").read_text())
        except (OSError, ValueError) as e:
            out.update(status="failed", error=f"the trial wrote no readable metrics.json ({e})")
    elif code in (130, -signal.SIGINT, -signal.SIGTERM):
        out.update(status="interrupted", error="interrupted")
    elif code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        out.update(status="killed", error=f"killed by {name}" + (" (out of memory?)" if code == -9 else ""))
    else:
        out.update(status="failed", error=_last_error(folder / "trial.log") or f"exit code {code}")
    if out["status"] != "interrupted":
        write_hparams(folder, job["hparams"], out["status"], out["metrics"])
    return out

def write_hparams(folder: Path, info: dict, status: str, metrics: dict | None = None) -> None:
    """The trial's HParams row, into its own run folder through that folder's own writer
    (not add_hparams, which opens a separate run per call, pytorch issue 32651).

    Only the session summaries (its settings, then its status) are written, never an
    experiment summary: TensorBoard shows the columns of the first experiment summary it
    finds, so trials of another sweep in the same log folder would show empty settings.
    Without one it gathers every session's own settings. HParams shows the last value of
    each tag; where that differs from the final metric of metrics.json and results.csv
    (train/loss: the last logged step's value, where the results hold the last epoch's
    mean), the final metric is written at the last step, so both report one definition."""
    from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams
    _, ssi, sei = hparams(info["values"], {}, info["domains"])
    if status != DONE:
        value = sei.value[0]
        data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
        data.session_end_info.status = api_pb2.Status.Value("STATUS_FAILURE")
        value.metadata.plugin_data.content = data.SerializeToString()
    before = set(Path(folder).glob("*tfevents*"))
    w = SummaryWriter(str(folder), filename_suffix=".hparams")
    for s in (ssi, sei):
        w.file_writer.add_summary(s)
    metrics = metrics or {}
    step = metrics.get("steps")
    if isinstance(step, int):
        logged = _last_logged(before, set(info["metrics"]))
        for tag in info["metrics"]:
            v = metrics.get(tag)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                continue
            last = logged.get(tag)
            if last is None or last[0] > step or not math.isclose(last[1], v, rel_tol=1e-6, abs_tol=1e-12):
                w.add_scalar(tag, v, step)  # only where the curve ends elsewhere: no doubled points
    w.close()
    for path in set(Path(folder).glob("*tfevents*")) - before:
        _read_last(path)


def _last_logged(files, tags: set) -> dict:
    """{tag: (step, value)} of the highest step each scalar tag reached in these event files
    (the later file wins a tie: a resumed run rewrites the steps after its checkpoint)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util import tensor_util
    out: dict = {}
    for path in sorted(files, key=lambda p: p.name):
        if path.name.endswith(".hparams"):
            continue
        for event in EventFileLoader(str(path)).Load():
            for v in event.summary.value:
                if v.tag not in tags:
                    continue
                value = v.simple_value if v.HasField("simple_value") else \
                    float(tensor_util.make_ndarray(v.tensor).item()) if v.HasField("tensor") else None
                if value is not None and (v.tag not in out or event.step >= out[v.tag][0]):
                    out[v.tag] = (event.step, value)
    return out


def _read_last(path: Path) -> None:
    """TensorBoard reads a run's event files in name order, and the name starts with the
    second it was created: a trial that ended within the same second as its events file
    began could have its HParams file read first, so its final values would not be last.
    Renamed to start one second after the run's other event files."""
    stamp = re.compile(r"events\.out\.tfevents\.(\d+)\.")
    others = [int(m.group(1)) for p in path.parent.glob("*tfevents*") if p != path and (m := stamp.match(p.name))]
    m = stamp.match(path.name)
    if m and others and int(m.group(1)) <= max(others):
        path.rename(path.with_name(stamp.sub(f"events.out.tfevents.{max(others) + 1}.", path.name, count=1)))


def _last_error(log: Path) -> str | None:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if line.startswith("error: "):
            return line[len("error: "):]
    return None

def execute(job: dict) -> dict:
    """Run one trial to its end (the body of a Ray task): a cancelled task stops its process."""
    t0 = time.time()
    proc = start(job)
    try:
        code = proc.wait()
    except BaseException:
        _stop([proc])
        raise
    return finish(job, code, time.time() - t0)

def _stop(procs) -> None:
    """Ctrl-C: ask each trial to stop (its checkpoints are atomic), then insist."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    deadline = time.time() + 15
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

def _trial_main(argv: list[str]) -> int:
    """`python -m netspec.sweep FOLDER [--resume]`: train the trial spec in FOLDER/spec.yaml.
    Its output goes to FOLDER/trial.log; the last `error: ...` line is the trial's error."""
    folder, resume = Path(argv[0]), "--resume" in argv[1:]
    try:
        from ..engine.folders import disk_guard, lock_folder
        from ..engine.loop import fit
        from ..spec import load
        spec = load(folder / "spec.yaml")
        with lock_folder(folder), disk_guard():  # the trial's own folder: one writer, as any run
            fit(spec, folder, resume=resume, progress=True)
        return 0
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the exit short
        print("error: interrupted", file=sys.stderr)
        return 130
    except (SpecError, RunError) as e:
        print("error: " + " | ".join(str(e).splitlines()), file=sys.stderr)
        return 1
    except Exception as e:  # anything else: the traceback stays in trial.log for whoever debugs it
        import traceback
        traceback.print_exc()
        print(f"error: {type(e).__name__}: {' '.join(str(e).split())[:300]}", file=sys.stderr)
        return 1

# --- executors: run jobs, report each start and end to the board ---

def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1

def run_local(jobs: list[dict], workers: int, board) -> None:
    queue, running = list(jobs), {}
    try:
        while queue or running:
            while queue and len(running) < workers:
                job = queue.pop(0)
                proc = start(job)
                running[proc] = (job, time.time())
                board.started(job["trial"])
            for p in [p for p in running if p.poll() is not None]:
                job, t0 = running.pop(p)
                board.finished(job["trial"], finish(job, p.returncode, time.time() - t0))
            board.tick()
            time.sleep(0.1)
    except KeyboardInterrupt:
        _stop(list(running))
        for p, (job, t0) in running.items():
            board.finished(job["trial"], finish(job, p.returncode, time.time() - t0))
        raise

def _ray_init():
    import logging

    import ray
    if ray.is_initialized():
        return ray, False
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    else:  # a fresh local instance, not whichever cluster `ray start` left on this machine
        ray.init(address="local", num_cpus=cores(), include_dashboard=False,
                 logging_level=logging.WARNING, log_to_driver=False)
    return ray, True

def ray_cpus(ray) -> int:
    """CPUs of the largest node: a trial's threads must fit on one machine."""
    nodes = [n.get("Resources", {}).get("CPU", 0) for n in ray.nodes() if n.get("Alive")]
    return int(max(nodes)) if nodes else cores()

def run_ray(jobs: list[dict], workers: int, board) -> None:
    """The same jobs as Ray tasks (one trial process each, on whichever node Ray picks; the
    run folders must be on a file system the nodes share)."""
    ray, _ = _ray_init()
    task = ray.remote(max_retries=0)(execute)
    queue, pending = list(jobs), {}
    try:
        while queue or pending:
            while queue and len(pending) < workers:
                job = queue.pop(0)
                pending[task.options(num_cpus=job["threads"]).remote(job)] = job
                board.started(job["trial"])
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            for ref in ready:
                job = pending.pop(ref)
                try:
                    out = ray.get(ref)
                except ray.exceptions.RayError as e:  # the worker died under the trial
                    out = {"status": "killed", "error": f"Ray: {str(e).splitlines()[0][:200]}",
                           "metrics": {}, "seconds": None}
                board.finished(job["trial"], out)
            board.tick()
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref)  # raises KeyboardInterrupt in the task: execute() stops its process
        for ref, job in pending.items():
            try:
                out = ray.get(ref, timeout=20)
            except Exception:
                out = {"status": "interrupted", "error": "interrupted", "metrics": {}, "seconds": None}
            board.finished(job["trial"], out)
        raise

EXECUTORS = {"local": run_local, "ray": run_ray}

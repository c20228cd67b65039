"""Sweeps: one spec with a `sweep` section -> many trials, each a full run in its own process.

    expand (grid x random samples, on the spec as written, after --set)
      -> validate every trial (pydantic, shapes, data fit) before the first one starts
      -> run the trials: local processes (--workers N) or Ray tasks (--executor ray)
      -> OUT/<name>/<trial>/ per trial, OUT/<name>/results.{csv,json}, a leaderboard.

Each trial is its own process (forked from a server that imported torch once, or else
`python -m netspec.sweep <trial folder>`), so a crash, a NaN or a SIGKILL ends that trial
only. The HParams summaries go into each trial's own folder (its TensorBoard run), written
with a writer on that folder, so TensorBoard shows one HParams row per trial.
"""
from __future__ import annotations

import copy
import csv
import io
import itertools
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import Problem, RunError, SpecError
from ..spec.yamlio import Source, dotted, dump

DONE = "ok"
FAILED = ("failed", "killed")


@dataclass
class Axis:
    """One swept path: its grid values, or a random distribution."""
    path: str
    where: tuple  # spec path of the sweep entry, e.g. ("sweep", "grid", "optimizer.adam.lr")
    values: list | None = None
    dist: Any = None

    def domain(self) -> list | None:
        if self.values is not None:
            return self.values
        d = self.dist
        if d.type == "choice":
            return d.values
        if d.type == "int" and d.range[1] - d.range[0] < 100:
            return list(range(d.range[0], d.range[1] + 1))
        return None


@dataclass
class Trial:
    name: str
    params: dict  # path -> value
    spec: Any = None  # the validated trial spec (sweep process only)
    status: str = "pending"  # pending, running, ok, failed, killed, interrupted
    error: str | None = None
    metrics: dict = field(default_factory=dict)
    seconds: float | None = None  # wall time of the trial process
    started: float | None = None  # unix time
    resume: bool = False

    def record(self) -> dict:
        return {"trial": self.name, "params": self.params, "status": self.status, "error": self.error,
                "started": self.started, "seconds": self.seconds, "metrics": self.metrics}


@dataclass
class SweepResult:
    folder: Path
    trials: list[Trial]
    metric: str
    mode: str

    @property
    def failed(self) -> int:
        return sum(t.status in FAILED for t in self.trials)

    @property
    def best(self) -> Trial | None:
        ranked = leaderboard(self.trials, self.metric, self.mode)
        return ranked[0] if ranked and _score(ranked[0], self.metric) is not None else None

    @property
    def metrics(self) -> dict:
        """The best trial's metrics (netspec.train() returns a result with .metrics)."""
        return self.best.metrics if self.best else {}


# --- expansion ---
def axes(spec) -> list[Axis]:
    sw = spec.sweep
    out = [Axis(p, ("sweep", "grid", p), values=list(v)) for p, v in sw.grid.items()]
    if sw.random is not None:
        for p, d in sw.random.params.items():
            if p in sw.grid:
                raise SpecError([spec.problem(("sweep", "random", "params", p),
                                              f"'{p}' is already in sweep.grid; sweep a path in one of them")])
            out.append(Axis(p, ("sweep", "random", "params", p), dist=d))
    return out


def _draw(d, rng: random.Random):
    lo, hi = (d.range if d.type != "choice" else (None, None))
    if d.type == "choice":
        return copy.deepcopy(rng.choice(d.values))
    if d.type == "uniform":
        return rng.uniform(lo, hi)
    if d.type == "log_uniform":
        return math.exp(rng.uniform(math.log(lo), math.log(hi)))
    return rng.randint(lo, hi)


def points(spec, ax: list[Axis]) -> list[dict]:
    """Each trial's {path: (value, where of that value)}: the grid's cartesian product, times
    the random samples when both are given (seeded: the same spec gives the same trials)."""
    grid = [a for a in ax if a.values is not None]
    rand = [a for a in ax if a.dist is not None]
    combos = [{a.path: (v, a.where + (i,)) for a, (i, v) in zip(grid, c)}
              for c in itertools.product(*[list(enumerate(a.values)) for a in grid])]
    if not rand:
        return combos
    rng = random.Random(spec.sweep.random.seed)
    samples = [{a.path: (_draw(a.dist, rng), a.where) for a in rand} for _ in range(spec.sweep.random.trials)]
    return [{**c, **s} for c in combos for s in samples]


def _key_position(source: Source, path: tuple):
    """Where the sweep key itself is written (yamlio keeps value positions; a key sits on its
    value's line or a few lines above, for a block list)."""
    file, line, col = source.position(path)
    lines = source.text.splitlines()
    if line is None or not lines:
        return file, line, col
    for ln in range(min(line, len(lines)), max(line - 6, 0), -1):
        c = lines[ln - 1].find(str(path[-1]))
        if c >= 0:
            return file, ln, c + 1
    return file, line, col


def resolves(spec, path: str) -> bool:
    """Whether a dotted path names a setting of the (validated) spec: a field, a list item,
    or a component by its name; defaults count, so `train.clip_grad_norm` resolves unwritten."""
    from pydantic import BaseModel

    from ..spec.base import Component
    node = spec
    for part in (int(p) if p.lstrip("-").isdigit() else p for p in path.split(".")):
        if isinstance(node, list) and isinstance(part, int) and -len(node) <= part < len(node):
            node = node[part]
        elif isinstance(node, Component) and part == node.type:
            continue  # `optimizer.adam.lr`: the component's name, then its arguments
        elif isinstance(node, BaseModel) and part in type(node).model_fields:
            node = getattr(node, part)
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return False
    return True


def _trial_source(spec, point: dict, ax: dict) -> tuple[Source, list[Problem]]:
    """The raw trial spec: the sweep's spec minus `sweep`, each path set to its value, and
    positions moved so that a bad value points at that value in the sweep section, and a path
    the spec does not have points at its sweep key."""
    from ..spec import set_path
    source = spec.source
    data = copy.deepcopy(source.data)
    data.pop("sweep", None)
    where = {k: v for k, v in source.where.items() if not (k and k[0] == "sweep")}
    problems = []
    for path, (value, value_at) in point.items():
        key_at = _key_position(source, ax[path].where)
        existed = resolves(spec, path)
        try:
            written = set_path(data, path, copy.deepcopy(value))
        except (KeyError, IndexError, TypeError) as e:
            problems.append(Problem(dotted(ax[path].where), f"not a path in this spec: {e.args[0]}", *key_at))
            continue
        for k in [k for k in where if k[:len(written)] == written]:
            del where[k]
        for i in range(1, len(written)):
            where.setdefault(written[:i], key_at)  # keys the path created (a typo) point at the sweep key
        where[written] = source.position(value_at) if existed else key_at
    return Source(data, where, source.file, source.text), problems


def _params_label(params: dict, short: dict) -> str:
    return ",".join(f"{short[p]}={_fmt(v)}" for p, v in params.items())


def _fmt(v) -> str:
    if isinstance(v, bool) or v is None:
        return json.dumps(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (int, str)):
        return str(v)
    return json.dumps(v, separators=(",", ":"), default=str)


def short_names(paths: list[str]) -> dict[str, str]:
    """The shortest unique tail of each path that does not start at a list index:
    optimizer.adam.lr -> lr; layers.1.linear and layers.3.linear when two paths end alike."""
    out = {}
    for p in paths:
        parts = p.split(".")
        for n in range(1, len(parts) + 1):
            tail = ".".join(parts[-n:])
            if parts[-n].isdigit() and n < len(parts):
                continue  # `layers.2`, not a bare `2`
            if not any(q != p and (q == tail or q.endswith("." + tail)) for q in paths):
                break
        out[p] = tail
    return out


def safe_name(label: str, taken: set) -> str:
    """A folder name from a trial label: only [A-Za-z0-9._=,+-], short, unique (case-insensitively)."""
    name = re.sub(r"[^A-Za-z0-9._=,+-]+", "_", label).strip("._-") or "trial"
    if len(name) > 100:
        import hashlib
        name = name[:90] + "-" + hashlib.sha1(label.encode()).hexdigest()[:8]
    base, n = name, 1
    while name.lower() in taken:
        n += 1
        name = f"{base}-{n}"
    taken.add(name.lower())
    return name


def expand(spec, cache: dict | None = None) -> tuple[list[Trial], int]:
    """Every trial, validated; SpecError lists every problem (each once, naming its trials).
    Returns (trials, duplicates removed)."""
    from ..spec import validate, written
    if spec.source is None:  # built in Python: positions are not known, paths still are
        from ..spec import load
        spec = load(written(spec))
    ax = axes(spec)
    by_path = {a.path: a for a in ax}
    short = short_names(list(by_path))
    pts = points(spec, ax)
    found: dict[tuple, tuple[Problem, list[str]]] = {}
    trials, seen, dups, taken = [], set(), 0, set()
    cache = {} if cache is None else cache
    for pt in pts:
        params = {p: v for p, (v, _) in pt.items()}
        label = _params_label(params, short)
        src, problems = _trial_source(spec, pt, by_path)
        tspec = None
        try:  # even when a path failed: the other values may hold problems of their own
            tspec = validate(src)
            preflight(tspec, cache)
        except SpecError as e:
            problems += e.problems
        for p in problems:
            found.setdefault((p.path, p.message), (p, []))[1].append(label)
        if tspec is None or problems:
            continue
        key = json.dumps(written(tspec), sort_keys=True, default=str)
        if key in seen:  # e.g. 0.01 and 1e-2, or a random draw that came up twice
            dups += 1
            continue
        seen.add(key)
        trials.append(Trial(safe_name(label, taken), params, tspec))
    if trials:
        try:
            metric_of(spec, trials[0].spec)
        except SpecError as e:
            for p in e.problems:
                found[(p.path, p.message)] = (p, ["every trial"] * len(pts))
    if found:
        out = []
        for p, labels in found.values():
            if len(labels) == 1 and len(pts) > 1:
                p.message += f" (in sweep trial {labels[0]})"
            elif len(labels) < len(pts):
                p.message += f" (in {len(labels)} of {len(pts)} sweep trials)"
            out.append(p)
        raise SpecError(sorted(out, key=lambda p: (p.line or 0, p.col or 0)))
    return trials, dups


def preflight(spec, cache: dict) -> None:
    """What a run checks before its first step, done up front for every trial: the monitored
    metric, the network's shapes, and the data against the network (data loaded once)."""
    from ..kinds import compile_spec, kind, kind_of
    kind_of(spec).check()  # missing sections; a metric the run never writes
    mod = kind(spec.kind)
    if spec.kind == "network" and spec.data is not None:
        from .. import data as D
        from ..spec import written
        key = json.dumps([written(spec.data), spec.seed, spec.model.input_shape], sort_keys=True, default=str)
        if key not in cache:
            cache[key] = D.load(spec)
        mod.setup(spec, cache[key])
    else:
        compile_spec(spec)


def metric_of(spec, trial_spec) -> tuple[str, str, list[str]]:
    """The sweep's metric, its mode, and every tag a trial logs (checked at sweep.metric)."""
    from ..errors import suggest
    from ..kinds import kind_of
    from ..spec.training import metric_mode
    k = kind_of(trial_spec)
    tags, monitor = k.tags(), k.check()
    metric = spec.sweep.metric or monitor or trial_spec.train.monitor
    if tags and metric not in tags:
        raise SpecError([spec.problem(("sweep", "metric"), f"'{metric}' is not a metric the trials write"
                                                           f"{suggest(metric, tags)}")])
    return metric, metric_mode(metric, spec.sweep.mode), tags or [metric]


# --- HParams: written into each trial's own TensorBoard run ---
def _hp_form(values: list):
    """How an axis shows in HParams: numbers as floats, booleans, anything else as text."""
    if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return float
    if values and all(isinstance(v, bool) for v in values):
        return bool
    return lambda v: v if isinstance(v, str) else json.dumps(v, separators=(",", ":"), default=str)


def hparams_info(ax: list[Axis], trial: Trial) -> dict:
    values, domains = {}, {}
    for a in ax:
        dom = a.domain()
        form = _hp_form(dom if dom is not None else [trial.params[a.path]])
        values[a.path] = form(trial.params[a.path])
        if dom is not None:
            domains[a.path] = list(dict.fromkeys(form(v) for v in dom))
    return {"values": values, "domains": domains}


def write_hparams(folder: Path, info: dict, status: str) -> None:
    """The three HParams summaries (experiment, session start, session end) into the trial's
    run folder, through that folder's own writer: not add_hparams, which would open a
    separate run per call (pytorch issue 32651) and give two HParams rows per trial."""
    from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams
    exp, ssi, sei = hparams(info["values"], {t: 0.0 for t in info["metrics"]}, info["domains"])
    if status != DONE:
        value = sei.value[0]
        data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
        data.session_end_info.status = api_pb2.Status.Value("STATUS_FAILURE")
        value.metadata.plugin_data.content = data.SerializeToString()
    w = SummaryWriter(str(folder), filename_suffix=".hparams")
    for s in (exp, ssi, sei):
        w.file_writer.add_summary(s)
    w.close()


# --- one trial: the process, and what it left behind ---
# Trials fork from a server process that has imported torch, netspec and the data and
# TensorBoard modules once, so a trial pays no import time (seconds per trial; see bench/).
# Each trial is still its own process: a crash, a NaN or a SIGKILL ends that trial only.
# Without fork (Windows) a trial is a fresh `python -m netspec.sweep FOLDER`.
FORKSERVER = True
PRELOAD = ["netspec.sweep", "netspec.engine.runs", "netspec.kinds.network", "netspec.kinds.gan", "netspec.kinds.seq2seq", "netspec.data",
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
        write_hparams(folder, job["hparams"], out["status"])
    return out


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
        from ..engine.loop import fit
        from ..spec import load
        spec = load(folder / "spec.yaml")
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


# --- results ---
def _score(t: Trial, metric: str):
    v = t.metrics.get(metric) if t.status == DONE else None
    return v if isinstance(v, (int, float)) and math.isfinite(v) else None


def leaderboard(trials: list[Trial], metric: str, mode: str) -> list[Trial]:
    """Best first; trials without the metric (failed, not run) last, in their order."""
    sign = -1 if mode == "max" else 1
    return sorted(trials, key=lambda t: (0, sign * _score(t, metric)) if _score(t, metric) is not None
                  else (1, 0))


def _columns(result: SweepResult, tags: list[str]) -> list[str]:
    """The sweep metric, then every other tag (those a kind declares, then any a trial wrote)."""
    seen = [k for t in result.trials for k in t.metrics if "/" in k]
    return list(dict.fromkeys([result.metric, *tags, *seen]))


def write_results(result: SweepResult, tags: list[str]) -> None:
    from ..engine.runs import write_text
    paths = list(result.trials[0].params) if result.trials else []
    cols = _columns(result, tags)
    ranked = leaderboard(result.trials, result.metric, result.mode)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["trial", "status", *paths, *cols, "epochs", "best_epoch", "train_seconds", "seconds", "error"])
    for t in ranked:
        m = t.metrics
        w.writerow([t.name, t.status, *[_cell(t.params[p]) for p in paths], *[m.get(c, "") for c in cols],
                    m.get("epochs", ""), m.get("best_epoch", ""), m.get("seconds", ""),
                    "" if t.seconds is None else t.seconds, t.error or ""])
    write_text(result.folder / "results.csv", buf.getvalue())
    best = result.best
    doc = {"name": result.folder.name, "metric": result.metric, "mode": result.mode,
           "best": best.name if best else None, "trials": [t.record() for t in ranked]}
    write_text(result.folder / "results.json", json.dumps(doc, indent=2, default=str) + "\n")


def _cell(v) -> str:
    return v if isinstance(v, str) else json.dumps(v, separators=(",", ":"), default=str)


def format_leaderboard(result: SweepResult, tags: list[str]) -> str:
    cols = [c for c in _columns(result, tags) if c.startswith(("val/", "test/")) or c == result.metric][:6]
    head = ["#", "trial", "status", *cols, "epochs", "time"]
    rows = []
    for i, t in enumerate(leaderboard(result.trials, result.metric, result.mode), 1):
        m = t.metrics
        rows.append([str(i), t.name, t.status, *[f"{m[c]:.4f}" if isinstance(m.get(c), (int, float)) else "-"
                                                  for c in cols],
                     str(m.get("epochs", "-")), f"{t.seconds:.1f}s" if t.seconds is not None else "-"])
    widths = [max(len(r[k]) for r in [head] + rows) for k in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head] + rows]
    errors = [f"  {t.name}: {t.status}: {t.error}" for t in result.trials if t.status in FAILED]
    return "\n".join(lines + (["failed trials:"] + errors if errors else []))


class Board:
    """The live sweep display on stderr: a line per finished trial and, on a terminal, one
    status line (done / running / failed, best so far) redrawn in place."""

    def __init__(self, result: SweepResult, on_change, enabled: bool = True, stream=None):
        self.result, self.on_change, self.enabled = result, on_change, enabled
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.by_name = {t.name: t for t in result.trials}
        self.t0, self.last = time.time(), 0.0
        self.total = sum(t.status != DONE for t in result.trials)  # trials this invocation runs
        self.done = 0

    def started(self, name: str):
        t = self.by_name[name]
        t.status, t.started = "running", round(time.time(), 3)
        self.tick(force=True)

    def finished(self, name: str, out: dict):
        t = self.by_name[name]
        t.status, t.error, t.seconds = out["status"], out["error"], out["seconds"]
        t.metrics = out["metrics"]
        self.done += t.status != "interrupted"
        self.on_change(t)
        if self.enabled:
            v = _score(t, self.result.metric)
            what = f"{self.result.metric} {v:.4f}" if v is not None else (t.error or "")
            took = f" ({t.seconds:.1f}s)" if t.seconds is not None else ""
            self._clear()
            self.stream.write(f"[{self.done}/{self.total}] {t.name}: {t.status}  {what}{took}\n")
        self.tick(force=True)

    def _clear(self):
        if self.tty:
            self.stream.write("\r\033[K")

    def tick(self, force: bool = False):
        if not (self.enabled and self.tty):
            return
        now = time.time()
        if not force and now - self.last < 0.5:
            return
        self.last = now
        ts = self.result.trials
        running = sum(t.status == "running" for t in ts)
        failed = sum(t.status in FAILED for t in ts)
        best = self.result.best
        shown = (f"  best {self.result.metric} {_score(best, self.result.metric):.4f} ({best.name})"
                 if best else "")
        el = int(now - self.t0)
        self._clear()
        self.stream.write(f"sweep: {self.done}/{self.total} done, {running} running, {failed} failed"
                          f"{shown}  {el // 60}:{el % 60:02d}")
        self.stream.flush()

    def close(self):
        if self.enabled and self.tty:
            self._clear()
            self.stream.flush()


# --- the sweep ---
def run_sweep(spec, out="runs", workers: int = 1, executor: str = "local", resume: bool = False,
              dry_run: bool = False, quiet: bool = False, overwrite: bool = False) -> SweepResult | None:
    """Expand, validate, run and rank every trial of `spec`'s sweep into OUT/<name>/."""
    from ..engine.runs import _check_same_run, write_text
    from ..spec import written
    if executor not in EXECUTORS:
        raise SpecError([Problem("", f"unknown executor '{executor}'; valid: {', '.join(EXECUTORS)}",
                                 "--executor")])
    if executor == "local" and not dry_run:
        forkserver()
    if executor == "ray":
        import importlib.util
        if importlib.util.find_spec("ray") is None:
            raise SpecError([Problem("", "--executor ray needs Ray, which is not installed: "
                                         "pip install 'netspec[ray]' (or pip install ray)", "--executor")])
    trials, dups = expand(spec)
    metric, mode, tags = metric_of(spec, trials[0].spec)
    ax = axes(spec)
    folder = Path(out) / spec.name
    sizes = " x ".join(str(len(a.values)) for a in ax if a.values is not None)
    how = ", ".join(x for x in (f"grid {sizes}" if sizes else "",
                                f"{spec.sweep.random.trials} random" if spec.sweep.random else "",
                                f"{dups} duplicate{'s' if dups != 1 else ''} removed" if dups else "") if x)
    say = (lambda s: None) if quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    if dry_run:
        print(f"{spec.name}: {len(trials)} trials ({how}), all valid; would write {folder}/<trial>/")
        w = max(len(t.name) for t in trials)
        for t in trials:
            print(f"  {t.name:<{w}}  " + "  ".join(f"{p}={_cell(v)}" for p, v in t.params.items()))
        return None
    result = SweepResult(folder, trials, metric, mode)
    if resume:
        if not (folder / "results.json").exists():
            raise SpecError([Problem("", f"--resume: {folder} holds no sweep (no results.json); drop "
                                         "--resume to start it", str(folder))])
    elif overwrite:
        _clean(folder)
    elif folder.exists() and any(folder.iterdir()):
        raise SpecError([Problem("", f"{folder} already holds a run: continue it with --resume, or pick "
                                     "another --out or name (--set name=...)", str(folder))])
    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / "sweep.yaml", dump(written(spec)))
    skipped = set()
    for t in trials:
        tdir = folder / t.name
        old = _read_json(tdir / "trial.json")
        if resume and old.get("status") == DONE and (tdir / "metrics.json").exists():
            _check_same_run(t.spec, tdir / "spec.yaml", tdir)
            t.status, t.metrics, t.seconds = DONE, _read_json(tdir / "metrics.json"), old.get("seconds")
            t.started = old.get("started")
            skipped.add(t.name)
        elif resume and (tdir / "checkpoints" / "last.pt").exists():
            _check_same_run(t.spec, tdir / "spec.yaml", tdir)
            t.resume = True
    todo = [t for t in trials if t.status != DONE]
    cpus, ray, started = cores(), None, False
    if executor == "ray" and todo:
        ray, started = _ray_init()
        cpus = ray_cpus(ray)
    threads = max(1, cpus // workers)  # the cores divided among the workers
    say(f"{spec.name}: {len(trials)} trials ({how}) -> {folder}/"
        + (f"; resuming: {len(skipped)} finished, {sum(t.resume for t in todo)} from a checkpoint, "
           f"{sum(not t.resume for t in todo)} to start" if resume else "")
        + f"  [{executor}, {workers} worker{'s' if workers > 1 else ''} x {threads} thread{'s' if threads > 1 else ''}]")
    jobs = []
    for t in todo:
        tdir = folder / t.name
        if not t.resume:
            _clean(tdir)
        tdir.mkdir(parents=True, exist_ok=True)
        write_text(tdir / "spec.yaml", dump(written(t.spec)))
        info = {**hparams_info(ax, t), "metrics": tags}
        write_text(tdir / "trial.json", json.dumps({**t.record(), "hparams": info}, indent=2, default=str) + "\n")
        jobs.append({"trial": t.name, "folder": str(tdir.resolve()), "resume": t.resume, "threads": threads,
                     "cwd": os.getcwd(), "python": sys.executable, "hparams": info})
    info_of = {j["trial"]: j["hparams"] for j in jobs}

    def changed(t: Trial):
        write_text(folder / t.name / "trial.json",
                   json.dumps({**t.record(), "hparams": info_of[t.name]}, indent=2, default=str) + "\n")
        write_results(result, tags)

    write_results(result, tags)
    board = Board(result, changed, enabled=not quiet)
    term = _interrupt_on_sigterm()
    try:
        EXECUTORS[executor](jobs, workers, board)
    except KeyboardInterrupt:
        board.close()
        write_results(result, tags)
        done = sum(t.status == DONE for t in trials)
        print(f"interrupted: {done} of {len(trials)} trials finished and kept in {folder}/; "
              "continue with --resume", file=sys.stderr)
        raise
    finally:
        board.close()
        if term is not None:
            signal.signal(signal.SIGTERM, term)
        if started:
            ray.shutdown()
    write_results(result, tags)
    if not quiet:
        print(format_leaderboard(result, tags))
    best = result.best
    say(f"{spec.name}: {len(trials) - result.failed} ok, {result.failed} failed"
        + (f"; best {metric} {_score(best, metric):.4f}: {best.name}" if best else "")
        + f"\nresults: {folder}/results.csv   tensorboard --logdir {folder}")
    return result


def _interrupt_on_sigterm():
    """`kill` stops a sweep as Ctrl-C does: trials stopped, results written. Returns the old handler."""
    import threading
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum, frame):
        raise KeyboardInterrupt
    return signal.signal(signal.SIGTERM, stop)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _clean(tdir: Path) -> None:
    """A trial (or sweep) that starts over: nothing from an earlier attempt may mix into it."""
    import shutil
    if tdir.exists():
        shutil.rmtree(tdir)


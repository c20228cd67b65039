"""Sweep expansion: the sweep section -> trials, each a validated spec.

The number of trials is counted from the sweep section before anything is expanded, and an
absurd count is refused with that count; trials are then produced one at a time
(`points` is a generator), validated, and named.
"""
from __future__ import annotations

import copy
import itertools
import json
import math
import random
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import Problem, SpecError
from ..spec.yamlio import Source, dotted

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

MAX_TRIALS = 10_000  # a sweep validates every trial before the first starts: far beyond any real one


def count(spec, ax: list[Axis]) -> int:
    """How many trials the sweep section asks for, computed without expanding anything;
    a count beyond MAX_TRIALS is a SpecError that gives it."""
    sizes = [len(a.values) for a in ax if a.values is not None]
    draws = spec.sweep.random.trials if spec.sweep.random is not None else 1
    n = math.prod(sizes) * draws
    if n > MAX_TRIALS:
        how = " x ".join(f"{s:,}" for s in sizes) + (" grid points" if sizes else "")
        if spec.sweep.random is not None:
            how += (" x " if sizes else "") + f"{draws:,} random draws"
        where = ("sweep", "random", "trials") if spec.sweep.random is not None and draws > MAX_TRIALS \
            else ("sweep", "grid") if sizes else ("sweep", "random", "trials")
        raise SpecError([spec.problem(where, f"the sweep asks for {n:,} trials ({how}); netspec runs at most "
                                             f"{MAX_TRIALS:,} in one sweep (each is validated before the first "
                                             "starts): narrow the grid, or sample it with random: {trials: N}")])
    return n


def points(spec, ax: list[Axis]):
    """Each trial's {path: (value, where of that value)}, one at a time: the grid's cartesian
    product, times the random samples when both are given (seeded: the same spec gives the
    same trials). Call count() first: this never holds more than one grid point."""
    grid = [a for a in ax if a.values is not None]
    rand = [a for a in ax if a.dist is not None]
    draws = spec.sweep.random.trials if rand else 1
    for c in itertools.product(*[list(enumerate(a.values)) for a in grid]):
        combo = {a.path: (v, a.where + (i,)) for a, (i, v) in zip(grid, c)}
        if not rand:
            yield combo
            continue
        rng = random.Random(spec.sweep.random.seed)  # the same draws for every grid point
        for _ in range(draws):
            yield {**combo, **{a.path: (_draw(a.dist, rng), a.where) for a in rand}}


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

    from ..spec import split_path
    from ..spec.base import Component
    node = spec
    try:
        parts = split_path(path)
    except KeyError:
        return False
    for part in parts:
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
    total = count(spec, ax)
    found: dict[tuple, tuple[Problem, list[str]]] = {}
    trials, seen, dups, taken = [], set(), 0, set()
    cache = {} if cache is None else cache
    for pt in points(spec, ax):
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
                found[(p.path, p.message)] = (p, ["every trial"] * total)
    if found:
        out = []
        for p, labels in found.values():
            if len(labels) == 1 and total > 1:
                p.message += f" (in sweep trial {labels[0]})"
            elif len(labels) < total:
                p.message += f" (in {len(labels)} of {total} sweep trials)"
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

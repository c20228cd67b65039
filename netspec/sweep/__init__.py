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

import json
import os
import signal
import sys
from pathlib import Path

from ..errors import Problem, SpecError, option, override
from ..spec.yamlio import dump
from ..engine.folders import clear_run, disk_guard, folder_state, lock_folder
from .executors import EXECUTORS, _ray_init, cores, forkserver, ray_cpus
from .expand import Trial, axes, expand, hparams_info, metric_of, safe_name, short_names
from .results import DONE, FAILED, Board, SweepResult, _cell, _read_json, _score, format_leaderboard, write_results

__all__ = ["run_sweep", "expand", "safe_name", "short_names", "SweepResult", "Trial", "DONE", "FAILED", "cores",
           "forkserver"]


def run_sweep(spec, out="runs", workers: int = 1, executor: str = "local", resume: bool = False,
              dry_run: bool = False, quiet: bool = False, overwrite: bool = False) -> SweepResult | None:
    """Expand, validate, run and rank every trial of `spec`'s sweep into OUT/<name>/."""
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
    if dry_run:
        print(f"{spec.name}: {len(trials)} trials ({how}), all valid; would write {folder}/<trial>/")
        w = max(len(t.name) for t in trials)
        for t in trials:
            print(f"  {t.name:<{w}}  " + "  ".join(f"{p}={_cell(v)}" for p, v in t.params.items()))
        return None
    result = SweepResult(folder, trials, metric, mode)
    with lock_folder(folder), disk_guard():  # one writer per sweep folder, for the sweep's life
        return _run(spec, result, ax, tags, how, executor, workers, resume, overwrite, quiet)


def _run(spec, result: SweepResult, ax, tags, how, executor, workers, resume, overwrite, quiet) -> SweepResult:
    from ..engine.runs import _check_same_run, write_text
    from ..spec import written
    folder, trials, metric = result.folder, result.trials, result.metric
    say = (lambda s: None) if quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    state = folder_state(folder)
    if resume:
        if not (folder / "results.json").exists():
            raise SpecError([Problem("", f"{option('resume')}: {folder} holds no sweep (no results.json); drop "
                                         f"{option('resume')} to start it", str(folder))])
        same_sweep(spec, folder)
    elif state.checkpointed and not overwrite or state.foreign:
        raise SpecError([Problem("", f"{folder} already holds a run: continue it with {option('resume')}, replace it "
                                     f"with {option('overwrite')}, or pick another {option('out', 'DIR')} or name ({override('name=...')})"
                                 if not state.foreign else
                                 f"{folder} holds files netspec did not write; netspec never deletes them: "
                                 f"pick another {option('out', 'DIR')} or name ({override('name=...')})", str(folder))])
    else:
        clear_run(folder, state)
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
            clear_run(tdir)
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
              f"continue with {option('resume')}", file=sys.stderr)
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

def same_sweep(spec, folder: Path) -> None:
    """--resume continues the sweep in `folder` only as it was: another grid would leave its
    finished trials out of the results, other train.* settings would rank trials trained two
    ways in one leaderboard. (sweep.metric and sweep.mode only rank: they may change.)"""
    from ..engine.runs import read_run_spec
    from ..spec import written
    file = folder / "sweep.yaml"
    if not file.exists():
        raise SpecError([Problem("", f"{option('resume')}: {folder} has no sweep.yaml (the record of the sweep's spec), "
                                     "so netspec cannot tell whether it is the same sweep: start it again with "
                                     f"{option('overwrite')}, or pick another --out or name", str(folder))])
    old, new = read_run_spec(file), written(spec)
    for d in (old, new):
        if isinstance(d.get("sweep"), dict):
            d["sweep"] = {k: v for k, v in d["sweep"].items() if k not in ("metric", "mode")}
    changed = _differences(old, new)
    if changed:
        shown = changed[:8]
        raise SpecError([spec.problem(tuple(p), f"differs from the sweep in {folder} (its sweep.yaml: "
                                                f"{_short(get(old, p))}, now {_short(get(new, p))}); resuming "
                                                "would mix trials of two different sweeps in one leaderboard: "
                                                f"restore it, or start a new sweep ({option('overwrite')}, or another --out "
                                                "or name)") for p in shown])


def _differences(a, b, path=()) -> list[tuple]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in list(dict.fromkeys([*a, *b])) for d in _differences(a.get(k, _NONE), b.get(k, _NONE),
                                                                                 path + (k,))]
    return [] if a == b else [path]


_NONE = "(not set)"


def get(d, path):
    for k in path:
        d = d.get(k, _NONE) if isinstance(d, dict) else _NONE
    return d


def _short(v) -> str:
    text = v if v is _NONE else json.dumps(v, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _interrupt_on_sigterm():
    """`kill` stops a sweep as Ctrl-C does: trials stopped, results written. Returns the old handler."""
    import threading
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum, frame):
        raise KeyboardInterrupt
    return signal.signal(signal.SIGTERM, stop)

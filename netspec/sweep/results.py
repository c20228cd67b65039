"""Sweep results: the leaderboard, results.csv and results.json, and the live board."""
from __future__ import annotations

import csv
import io
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .expand import Trial

DONE = "ok"
FAILED = ("failed", "killed")


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

def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}

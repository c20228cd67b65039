"""Spec errors: every problem found, each pointing at FILE:LINE:COL and a spec path."""
from __future__ import annotations

class Problem:
    """One thing wrong with a spec. (A plain class: `netspec --help` must stay cheap.)"""

    def __init__(self, path: str, message: str, file: str = "<spec>", line: int | None = None,
                 col: int | None = None):
        self.path = path  # dotted path as written in the file, e.g. "model.layers.2.conv2d"
        self.message, self.file, self.line, self.col = message, file, line, col

    def __repr__(self) -> str:
        return f"Problem({str(self)!r})"

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}:{self.col or 1}"
        return f"{where}: {self.path or '<top>'}: {self.message}"


class SpecError(Exception):
    """A wrong spec (or command line). Exit code 2; printed one problem per line."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class RunError(Exception):
    """A run that failed (diverged loss, failed trial). Exit code 1."""


def suggest(word: str, choices) -> str:
    """' (did you mean 'x'?)' for the closest valid name, or a list when nothing is close."""
    import difflib
    choices = sorted(set(map(str, choices)))
    close = difflib.get_close_matches(str(word), choices, n=1, cutoff=0.6)
    if close:
        return f"; did you mean '{close[0]}'?"
    if len(choices) <= 12:
        return "; valid: " + ", ".join(choices)
    return ""

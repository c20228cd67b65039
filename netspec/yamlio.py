"""YAML in and out: safe loading that remembers where every value was written.

Only plain YAML types are built (mappings, lists, strings, numbers, booleans, null);
any tag that would build a Python object is refused before anything is constructed,
and duplicate keys are errors rather than silently overwritten.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import Problem, SpecError

Where = tuple[str, int | None, int | None]  # file, line, col (1-based)

_PLAIN_TAGS = {
    "tag:yaml.org,2002:" + t
    for t in ("str", "int", "float", "bool", "null", "seq", "map", "timestamp")
}


class Source:
    """Raw spec data plus the file position of every node, keyed by path tuple."""

    def __init__(self, data: Any, where: dict[tuple, Where], file: str, text: str = ""):
        self.data, self.where, self.file, self.text = data, where, file, text

    def position(self, path: tuple) -> Where:
        """Position of the deepest written node on `path`."""
        path = tuple(path)
        while path and path not in self.where:
            path = path[:-1]
        return self.where.get(path, (self.file, 1 if self.text else None, 1 if self.text else None))

    def problem(self, path: tuple, message: str) -> Problem:
        file, line, col = self.position(path)
        return Problem(dotted(path), message, file, line, col)


def dotted(path) -> str:
    return ".".join(str(p) for p in path)


def _build(node, path, where, problems, loader, file):
    where[path] = (file, node.start_mark.line + 1, node.start_mark.column + 1)
    if node.tag not in _PLAIN_TAGS:
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        problems.append(Problem(dotted(path), f"YAML tag '{tag}' is not allowed: "
                                "specs hold plain data only (nothing is ever evaluated); remove the tag",
                                file, node.start_mark.line + 1, node.start_mark.column + 1))
        return None
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves YAML merge keys (<<)
        out = {}
        for knode, vnode in node.value:
            key = _build(knode, path + ("<key>",), {}, problems, loader, file)
            if isinstance(key, (list, dict)):
                problems.append(Problem(dotted(path), "a mapping key must be a plain value",
                                        file, knode.start_mark.line + 1, knode.start_mark.column + 1))
                continue
            if key in out:
                first = where.get(path + (key,), (file, "?", "?"))
                problems.append(Problem(dotted(path + (key,)),
                                        f"duplicate key '{key}' (first written at line {first[1]}); keep one",
                                        file, knode.start_mark.line + 1, knode.start_mark.column + 1))
                continue
            out[key] = _build(vnode, path + (key,), where, problems, loader, file)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(v, path + (i,), where, problems, loader, file) for i, v in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def parse(text: str, file: str = "<spec>") -> Source:
    """Parse YAML text into a Source; raises SpecError with positions."""
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            msg = " ".join(x for x in (e.context, e.problem) if x)
            raise SpecError([Problem("", f"YAML syntax error: {msg}", file,
                                     mark.line + 1 if mark else None,
                                     mark.column + 1 if mark else None)]) from None
        except yaml.YAMLError as e:
            raise SpecError([Problem("", f"YAML error: {e}", file)]) from None
        if node is None:
            raise SpecError([Problem("", "the spec is empty; it needs at least 'name' and 'model'",
                                     file, 1, 1)])
        where: dict[tuple, Where] = {}
        problems: list[Problem] = []
        data = _build(node, (), where, problems, loader, file)
    finally:
        loader.dispose()
    if problems:
        raise SpecError(problems)
    if not isinstance(data, dict):
        kind = type(data).__name__ if data is not None else "null"
        raise SpecError([Problem("", f"the spec must be a mapping (name: ..., model: ...), not a {kind}",
                                 file, 1, 1)])
    return Source(data, where, file, text)


def read(path_or_text: str | Path) -> Source:
    """Read a spec from a file path, or from YAML text when it is not a path."""
    s = str(path_or_text)
    if "\n" not in s and (s.endswith((".yaml", ".yml")) or Path(s).exists()):
        p = Path(s)
        if not p.exists():
            raise SpecError([Problem("", f"no such spec file: {s}", s)])
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise SpecError([Problem("", f"the file is not UTF-8 text ({e.reason} at byte {e.start})", s)]) from None
        except OSError as e:
            raise SpecError([Problem("", f"cannot read the file: {e.strerror}", s)]) from None
        return parse(text, s)
    return parse(s, "<text>")


def dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, allow_unicode=True)

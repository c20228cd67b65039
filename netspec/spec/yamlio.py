"""YAML in and out: safe loading that remembers where every value was written.

Only plain YAML types are built (mappings, lists, strings, numbers, booleans, null);
any tag that would build a Python object is refused before anything is constructed,
and duplicate keys are errors rather than silently overwritten.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

from ..errors import Problem, SpecError
from ..files import FileProblem, read_text

Where = tuple[str, int | None, int | None]  # file, line, col (1-based)

_PLAIN_TAGS = {
    "tag:yaml.org,2002:" + t
    for t in ("str", "int", "float", "bool", "null", "seq", "map", "timestamp")
}


class Source:
    """Raw spec data plus the file position of every node, keyed by path tuple."""

    def __init__(self, data: Any, where: dict[tuple, Where], file: str, text: str = ""):
        self.data, self.where, self.file, self.text = data, where, file, text
        self.keys: dict[tuple, Where] = {}  # position of each mapping key (for unknown-key errors)

    def position(self, path: tuple) -> Where:
        """Position of the deepest written node on `path`."""
        path = tuple(path)
        while path and path not in self.where:
            path = path[:-1]
        return self.where.get(path, (self.file, 1 if self.text else None, 1 if self.text else None))

    def problem(self, path: tuple, message: str, at_key: bool = False) -> Problem:
        """A Problem at `path` (at its key rather than its value when `at_key` and known)."""
        file, line, col = self.keys.get(tuple(path)) if at_key and tuple(path) in self.keys \
            else self.position(path)
        return Problem(dotted(path), message, file, line, col)


def dotted(path) -> str:
    return ".".join(str(p) for p in path)


MAX_NODES = 100_000  # far beyond any real spec; stops alias bombs ("billion laughs")
MAX_DEPTH = 100  # real specs nest about 8 deep; deeper would overflow Python's stack
MAX_BYTES = 1 << 20  # a spec file of more than 1 MiB is not a spec (read before parsing)
# what YAML itself refuses (its Reader's rule); found first so each is reported at its place
_NOT_PRINTABLE = re.compile("[^\x09\x0A\x0D\x20-\x7E\x85\xA0-\uD7FF\uE000-\uFFFD\U00010000-\U0010FFFF]")


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with the limits applied while the node graph is composed, before
    any of it is built: a file huge in keys or nested too deep is refused as it is read."""

    def __init__(self, text, file):
        super().__init__(text)
        self.file, self.depth, self.nodes = file, 0, 0

    def compose_node(self, parent, index):
        self.nodes += 1
        self.depth += 1
        if self.depth > MAX_DEPTH or self.nodes > MAX_NODES:
            mark = self.peek_event().start_mark
            what = (f"values nest more than {MAX_DEPTH} levels deep" if self.depth > MAX_DEPTH
                    else f"the spec has more than {MAX_NODES:,} values")
            raise SpecError([Problem("", f"{what}; this is not a network spec (netspec stops here)",
                                     self.file, mark.line + 1, mark.column + 1)])
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


class _Walk:
    """State of one parse: problems found, key positions, and guards against alias abuse."""

    def __init__(self, loader, file):
        self.loader, self.file = loader, file
        self.problems: list[Problem] = []
        self.keys: dict[tuple, Where] = {}
        self.open: set[int] = set()  # nodes being built (a recursive alias comes back to one)
        self.count = 0


def _at(node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _build(node, path, where, w: _Walk):
    w.count += 1
    if w.count > MAX_NODES or len(path) > 2 * MAX_DEPTH:  # aliases nest and repeat what they name
        raise SpecError([Problem(dotted(path[:MAX_DEPTH]), f"the spec expands to more than {MAX_NODES:,} "
                                 "values or nests too deep (YAML aliases repeating aliases?); write it out "
                                 "plainly", w.file, *_at(node))])
    where[path] = (w.file, *_at(node))
    if node.tag not in _PLAIN_TAGS:
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        w.problems.append(Problem(dotted(path), f"YAML tag '{tag}' is not allowed: "
                                  "specs hold plain data only (nothing is ever evaluated); remove the tag",
                                  w.file, *_at(node)))
        return None
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
        if id(node) in w.open:
            raise SpecError([Problem(dotted(path), "a YAML alias refers to a node that contains it "
                                     "(a recursive structure); write the value out", w.file, *_at(node))])
        w.open.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [_build(v, path + (i,), where, w) for i, v in enumerate(node.value)]
            return _mapping(node, path, where, w)
        finally:
            w.open.discard(id(node))
    try:
        return w.loader.construct_object(node, deep=True)
    except (ValueError, OverflowError, yaml.YAMLError) as e:  # 5000 digits, 2020-13-45, ...
        w.problems.append(Problem(dotted(path), _scalar_message(node, e), w.file, *_at(node)))
        return None


def _scalar_message(node, e: Exception) -> str:
    text = str(node.value)
    digits = len(text.lstrip("+-"))
    if node.tag.endswith(":int") and digits > 1000:
        return (f"a whole number of {digits:,} digits is too long to be a setting (Python reads at "
                f"most {sys.get_int_max_str_digits() or 4300:,}); quote it if it is text")
    shown = text if len(text) <= 40 else text[:37] + "..."
    return f"'{shown}' cannot be read as {node.tag.rsplit(':', 1)[-1]} ({str(e).splitlines()[0][:100]}); quote it if it is text"


def _mapping(node, path, where, w: _Walk):
    w.loader.flatten_mapping(node)  # resolves YAML merge keys (<<)
    out = {}
    for knode, vnode in node.value:
        key = _build(knode, path + ("<key>",), {}, w)
        if isinstance(key, (list, dict)):
            w.problems.append(Problem(dotted(path), "a mapping key must be a plain value", w.file, *_at(knode)))
            continue
        if key in out:
            first = w.keys.get(path + (key,), (w.file, "?", "?"))
            w.problems.append(Problem(dotted(path + (key,)),
                                      f"duplicate key '{key}' (first written at line {first[1]}); keep one",
                                      w.file, *_at(knode)))
            continue
        w.keys[path + (key,)] = (w.file, *_at(knode))
        out[key] = _build(vnode, path + (key,), where, w)
    return out


_HINTS = {
    "cannot start any token": " (YAML indents with spaces, never tabs)",
    "mapping values are not allowed here": " (a second ':' on one line? quote a string that holds ': ', "
                                           "or check the indentation)",
}


def _syntax_message(e: yaml.MarkedYAMLError, text: str = "") -> str:
    msg = f"YAML syntax error: {e.problem or e.context or 'cannot parse'}"
    if e.context and e.problem:
        where = ""
        if e.context_mark is not None and (e.problem_mark is None or e.context_mark.line != e.problem_mark.line
                                           or e.context_mark.column != e.problem_mark.column):
            where = f" started at line {e.context_mark.line + 1}, column {e.context_mark.column + 1}"
        msg += f" ({e.context}{where})"
    mark = e.problem_mark
    if mark is not None and "mapping values are not allowed here" in msg and mark.line > 0:
        before = [ln for ln in text.splitlines()[:mark.line] if ln.strip()]
        item = re.match(r"^\s*- +([A-Za-z_][\w-]*)\s*$", before[-1]) if before else None
        if item:  # '- relu' then 'name: x' below it
            return msg + f" (to give '{item[1]}' keys beside it, write '- {item[1]}:' with a colon)"
    for k, hint in _HINTS.items():
        if k in msg:
            msg += hint
    return msg


def _unprintable(text: str, file: str) -> list[Problem]:
    out = []
    for m in _NOT_PRINTABLE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        col = m.start() - (text.rfind("\n", 0, m.start()) + 1) + 1
        c = m.group()
        name = {"\0": "NUL", "\x1b": "ESC", "\x7f": "DEL", "\x08": "backspace", "\x0c": "form feed"}.get(c, "")
        out.append(Problem("", f"control character U+{ord(c):04X}{' (' + name + ')' if name else ''} is not "
                               "allowed in a YAML file; remove it (in a double-quoted string, write it as "
                               f"\\u{ord(c):04x})", file, line, col))
        if len(out) == 20:
            break
    return out


def parse(text: str, file: str = "<spec>") -> Source:
    """Parse YAML text into a Source; raises SpecError with positions."""
    bad = _unprintable(text, file)
    if bad:
        raise SpecError(bad)
    loader = _Loader(text, file)
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            raise SpecError([Problem("", _syntax_message(e, text), file,
                                     mark.line + 1 if mark else None,
                                     mark.column + 1 if mark else None)]) from None
        except yaml.YAMLError as e:
            raise SpecError([Problem("", f"YAML error: {e}", file)]) from None
        if node is None or node.tag == "tag:yaml.org,2002:null":  # nothing, '---' or 'null' alone
            raise SpecError([Problem("", "the spec is empty; it needs at least 'name' and 'model'",
                                     file, 1, 1)])
        where: dict[tuple, Where] = {}
        w = _Walk(loader, file)
        data = _build(node, (), where, w)
    finally:
        loader.dispose()
    if w.problems:
        raise SpecError(w.problems)
    if not isinstance(data, dict):
        kind = type(data).__name__ if data is not None else "null"
        raise SpecError([Problem("", f"the spec must be a mapping (name: ..., model: ...), not a {kind}",
                                 file, 1, 1)])
    source = Source(data, where, file, text)
    source.keys = w.keys
    return source


def read(path_or_text: str | Path) -> Source:
    """Read a spec from a file path, or from YAML text when it is not a path."""
    s = str(path_or_text)
    # one line without ':' cannot be a spec (a mapping): it is a file name too
    if "\n" not in s and (s.endswith((".yaml", ".yml")) or Path(s).exists() or ":" not in s):
        p = Path(s)
        if not p.exists():
            near = [q for q in (Path(s + ".yaml"), Path(s + ".yml")) if q.exists()]
            raise SpecError([Problem("", f"no such spec file: {s}"
                                     + (f"; did you mean '{near[0]}'?" if near else ""), s)])
        if p.is_dir():
            raise SpecError([Problem("", f"{s} is a folder; give a spec file (.yaml) in it", s)])
        try:
            text = read_text(p, MAX_BYTES)
        except FileProblem as e:
            raise SpecError([Problem("", str(e), s)]) from None
        return parse(text, s)
    return parse(s, "<text>")


def dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, allow_unicode=True)

"""The spec language: YAML -> validated pydantic models. Never imports torch."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import Problem, SpecError, suggest
from ..yamlio import Source, dotted, parse, read
from .base import REGISTRY, Strict
from .layers import *  # noqa: F401,F403
from .root import KINDS, BaseSpec, NetworkSpec
from .training import *  # noqa: F401,F403

__all__ = ["load", "validate", "Spec", "BaseSpec", "NetworkSpec", "KINDS", "apply_set",
           "parse_set", "get_path", "set_path", "SpecError"]

Spec = BaseSpec


def load(path_or_text: str | Path | dict, overrides: list[str] = ()) -> BaseSpec:
    """Read, override (`PATH=VALUE` strings) and validate a spec; SpecError lists every problem."""
    if isinstance(path_or_text, dict):
        source = Source(copy.deepcopy(path_or_text), {}, "<dict>")
    else:
        source = read(path_or_text)
    problems = []
    for item in overrides:
        try:
            apply_set(source, item)
        except SpecError as e:
            problems += e.problems
    if problems:
        raise SpecError(problems)
    return validate(source)


def validate(source: Source) -> BaseSpec:
    data = source.data
    kind = data.get("kind", "network")
    cls = KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise SpecError([source.problem(("kind",), f"unknown kind '{kind}'{suggest(kind, KINDS)}")])
    try:
        spec = cls.model_validate(data)
    except ValidationError as e:
        raise SpecError(_problems(e, source, cls)) from None
    spec._source = source
    return spec


# --- pydantic errors -> FILE:LINE:COL: path: message ---
def _file_path(loc: tuple, data: Any) -> tuple:
    """Map a pydantic loc to the path as written in the file (component tags are real keys
    there; a scalar shorthand ends the path at the component)."""
    out, node, parent = [], data, None
    for part in loc:
        if isinstance(node, dict) and part in node:
            parent, node = node, node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            parent, node = node, node[part]
        elif isinstance(parent, dict) and part in parent and not isinstance(node, (dict, list)):
            node = parent[part]  # a sibling key (name/inputs) beside a scalar shorthand
            out[-1] = part
            continue
        elif isinstance(node, str) and part == node:
            continue  # bare name: the tag is the value itself
        else:
            if isinstance(node, dict) or isinstance(part, int):
                out.append(part)  # missing key: point at its parent, name it in the path
            break
        out.append(part)
    return tuple(out)


def _model_for(loc: tuple, root: type) -> type | None:
    """The model class whose field set an error at `loc` refers to (for suggestions)."""
    for part in reversed(loc[:-1]):
        if isinstance(part, str):
            for table in REGISTRY.values():
                if part in table:
                    return table[part]
            field = _SECTIONS.get(part)
            if field is not None:
                return field
    return root if len(loc) == 1 else None


def _sections() -> dict[str, type]:
    from .root import Network
    from .training import Data, EarlyStopping, RandomSearch, Sweep, TensorBoard, Train
    out = {"model": Network, "data": Data, "train": Train, "sweep": Sweep, "random": RandomSearch,
           "early_stopping": EarlyStopping, "tensorboard": TensorBoard}
    for cls in KINDS.values():
        for name, f in cls.model_fields.items():
            ann = f.annotation
            if isinstance(ann, type) and issubclass(ann, Strict) and name not in out:
                out[name] = ann
    return out


_SECTIONS: dict[str, type] = {}


def _message(err: dict, loc: tuple, root: type) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        model = _model_for(loc, root)
        valid = [n for n in (model.model_fields if model else []) if n != "type"]
        return f"unknown key '{loc[-1]}'{suggest(loc[-1], valid)}"
    if kind == "missing":
        return f"'{loc[-1]}' is required"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return msg
    if kind.startswith(("value_error", "assertion_error")):
        msg = msg.split(", ", 1)[-1] if msg.startswith(("Value error", "Assertion failed")) else msg
    got = err.get("input")
    if kind in ("int_type", "int_parsing", "float_type", "float_parsing", "bool_type", "bool_parsing",
                "string_type", "list_type", "dict_type", "literal_error", "int_from_float",
                "greater_than", "greater_than_equal", "less_than", "less_than_equal",
                "string_pattern_mismatch", "too_short", "too_long") and not isinstance(got, (dict, list)):
        msg += f" (got {got!r})"
    return msg


def _problems(e: ValidationError, source: Source, root: type) -> list[Problem]:
    if not _SECTIONS:
        _SECTIONS.update(_sections())
    seen, out = set(), []
    for err in e.errors():  # a value failing every member of a union errs once per member: keep the first
        loc = tuple(err["loc"])
        # a failed union member shows up as e.g. ('optimizer','function-before[...]',...): drop those
        loc = tuple(p for p in loc if not (isinstance(p, str) and "[" in p))
        path = _file_path(loc, source.data)
        p = source.problem(path, _message(err, loc, root))
        p.path = dotted(path) if path else dotted(loc)
        if p.path not in seen:
            seen.add(p.path)
            out.append(p)
    return sorted(out, key=lambda p: (p.line or 0, p.col or 0))


# --- paths: the sweep/--set syntax, dotted keys into the spec as written ---
def _split(path: str) -> list:
    return [int(p) if p.lstrip("-").isdigit() else p for p in path.split(".")]


def get_path(data: Any, path: str) -> Any:
    node = data
    for part in _split(path):
        node = node[part]
    return node


def set_path(data: dict, path: str, value: Any) -> tuple:
    """Set `value` at `path` in raw spec data; returns the written path tuple.

    A component written in shorthand (`- linear: 64`, `- relu`) is expanded to its mapping
    form when the path goes inside it. Raises KeyError/IndexError/TypeError with a message.
    """
    parts = _split(path)
    if not path or any(p == "" for p in parts):
        raise KeyError(f"'{path}' is not a dotted path")
    node, done = data, []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not isinstance(part, int) or not -len(node) <= part < len(node):
                raise IndexError(f"'{dotted(done)}' is a list of {len(node)} items; "
                                 f"'{part}' is not an index in it")
            if isinstance(node[part], str) and not last and parts[i + 1] == node[part]:
                node[part] = {node[part]: None}  # bare name -> mapping
        elif isinstance(node, dict):
            if isinstance(part, int):
                part = str(part)
            if not last and part not in node:
                node[part] = {}
            elif not last and not isinstance(node[part], (dict, list)):
                # scalar shorthand ('linear: 64') going deeper: expand by the first argument
                cls = _component(part)
                if cls is None or cls.first is None:
                    raise TypeError(f"'{dotted(done + [part])}' holds a value, not a mapping; "
                                    f"cannot go into it")
                node[part] = {} if node[part] is None else {cls.first: node[part]}
        else:
            raise TypeError(f"'{dotted(done)}' holds a value, not a mapping; cannot go into it")
        if last:
            node[part] = value
        else:
            node = node[part]
        done.append(part)
    return tuple(done)


def _component(tag: str):
    for table in REGISTRY.values():
        if tag in table:
            return table[tag]
    return None


def parse_set(item: str) -> tuple[str, Any]:
    """'train.epochs=2' -> ('train.epochs', 2); the value is read as YAML."""
    if "=" not in item:
        raise SpecError([Problem("", f"--set expects PATH=VALUE (e.g. train.epochs=2), got '{item}'",
                                 "--set")])
    path, text = item.split("=", 1)
    src = parse(f"v: {text}" if text.strip() else "v: null", f"--set {item}")
    return path.strip(), src.data["v"]


def apply_set(source: Source, item: str) -> None:
    path, value = parse_set(item)
    try:
        written = set_path(source.data, path, value)
    except (KeyError, IndexError, TypeError) as e:
        raise SpecError([Problem(path, str(e.args[0]), f"--set {item}")]) from None
    for key in [k for k in source.where if k[:len(written)] == written]:
        del source.where[key]
    source.where[written] = (f"--set {item}", None, None)


# --- back to the written form (for the run folder's spec.yaml) ---
def written(obj: Any) -> Any:
    """A validated spec (or part) as a user would write it: components as {name: args},
    every default filled in, so the file fully records what ran and loads back as is."""
    from pydantic import BaseModel

    from .base import Component
    if isinstance(obj, Component):
        args = {k: written(v) for k, v in obj if k not in ("type", "name", "inputs") and v is not None}
        wiring = {k: v for k, v in (("name", getattr(obj, "name", None)),
                                    ("inputs", getattr(obj, "inputs", None))) if v is not None}
        if not args and not wiring:
            return obj.type
        return {obj.type: args or None, **wiring}
    if isinstance(obj, BaseModel):
        return {k: written(v) for k, v in obj if v is not None}
    if isinstance(obj, dict):
        return {k: written(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [written(v) for v in obj]
    return obj

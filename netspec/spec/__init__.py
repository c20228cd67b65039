"""The spec language: YAML -> validated pydantic models. Never imports torch."""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, get_args

from pydantic import ValidationError

from ..errors import Problem, SpecError, suggest
from .yamlio import Source, dotted, parse, read
from .base import REGISTRY, Strict, YamlBool
from .layers import *  # noqa: F401,F403
from .root import KINDS, BaseSpec, NetworkSpec
from .training import *  # noqa: F401,F403
from .seq2seq import Seq2SeqSpec  # noqa: I001 (after root and training: it builds on both)
from .gan import GanSpec  # noqa: I001 (likewise)

KINDS["gan"] = GanSpec
KINDS["seq2seq"] = Seq2SeqSpec

__all__ = ["load", "validate", "Spec", "BaseSpec", "NetworkSpec", "KINDS", "apply_set",
           "parse_set", "get_path", "set_path", "split_path", "SpecError"]

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
            opts = [a for a in get_args(ann) if a is not type(None)]
            ann = opts[0] if len(opts) == 1 else ann  # X | None -> X
            if isinstance(ann, type) and issubclass(ann, Strict) and name not in out:
                out[name] = ann
    return out


_SECTIONS: dict[str, type] = {}


def _got(v: Any) -> str:
    if v is None:
        return "nothing (null)"
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, (bool, YamlBool)):
        return f"{v!r}".lower() + " (YAML reads true/false/yes/no/on/off as booleans)"
    return repr(v)


# what each pydantic type error expected, in plain words
_EXPECTED = {
    "int_type": "a whole number", "int_parsing": "a whole number", "int_from_float": "a whole number",
    "float_type": "a number", "float_parsing": "a number", "bool_type": "true or false",
    "bool_parsing": "true or false", "string_type": "a string", "list_type": "a list",
    "tuple_type": "a list", "dict_type": "a mapping (key: value)", "model_type": "a mapping (key: value)",
    "model_attributes_type": "a mapping (key: value)", "none_required": None, "literal_error": None,
}
_PATTERNS = {  # regex -> what it means
    r"^[A-Za-z_][A-Za-z0-9_]*$": "letters, digits and '_', not starting with a digit",
    r"^[A-Za-z0-9][A-Za-z0-9_.=,+-]*$": "letters, digits and _ . = , + - (it names a folder), "
                                       "starting with a letter or digit",
}


def _expected(err: dict) -> str | None:
    if err["type"] == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return "one of " + expected.replace(" or ", ", ") if " or " in expected else expected
    return _EXPECTED.get(err["type"])


def _message(err: dict, loc: tuple, root: type) -> str:
    kind, msg, ctx = err["type"], err["msg"], err.get("ctx") or {}
    got = err.get("input")
    if kind == "extra_forbidden":
        model = _model_for(loc, root)
        valid = [n for n in (model.model_fields if model else []) if n != "type"]
        return f"unknown key '{loc[-1]}'{suggest(loc[-1], valid)}"
    if kind == "missing":
        return f"'{loc[-1]}' is required"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return msg
    if kind.startswith(("value_error", "assertion_error")):
        return msg.split(", ", 1)[-1] if msg.startswith(("Value error", "Assertion failed")) else msg
    if kind == "literal_error":
        hint = suggest(got, re.findall(r"'([^']*)'", ctx.get("expected", ""))) if isinstance(got, str) else ""
        expected = ctx.get("expected", "")
        one_of = "one of " if ", " in expected else ""
        if hint.startswith("; did you mean"):
            return f"{_got(got)} is not {one_of}{expected}{hint}"
        return f"expected {one_of}{expected}, got {_got(got)}"
    if kind == "int_from_float":
        return f"expected a whole number, got {got!r}"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind] or 'nothing'}, got {_got(got)}"
    if kind == "finite_number":
        return f"expected a finite number, got {got!r}"
    bounds = {"greater_than": "greater than {gt}", "greater_than_equal": "at least {ge}",
              "less_than": "less than {lt}", "less_than_equal": "at most {le}"}
    if kind in bounds:
        return f"must be {bounds[kind].format(**ctx)}, got {got!r}"
    if kind in ("too_short", "too_long"):
        n = ctx.get("min_length" if kind == "too_short" else "max_length")
        what = ("character" if isinstance(got, str) else "item") + ("s" if n != 1 else "")
        if kind == "too_short" and isinstance(got, str) and n == 1:
            return "must not be empty"
        return (f"needs at least {n} {what}" if kind == "too_short" else f"takes at most {n} {what}") \
            + f", got {ctx.get('actual_length', len(got) if hasattr(got, '__len__') else '?')}"
    if kind in ("string_too_short", "string_too_long"):
        n = ctx.get("min_length" if kind == "string_too_short" else "max_length")
        if kind == "string_too_short" and n == 1:
            return "must not be empty"
        return f"must be {'at least' if kind == 'string_too_short' else 'at most'} {n} characters, got {len(got)}"
    if kind == "string_pattern_mismatch":
        pattern = ctx.get("pattern", "")
        return f"{got!r} is not a valid name: use {_PATTERNS.get(pattern, 'the pattern ' + pattern)}"
    return msg


def _member_tag(part) -> bool:
    """Is this loc part the name of a union member (pydantic adds one per member tried)?"""
    return isinstance(part, str) and (bool(re.fullmatch(r"[a-z][a-z-]*\[.*\]", part)) or part in (
        "int", "float", "str", "bool", "none", "constrained-int", "constrained-float", "constrained-str"))


def _members_cut(loc: tuple, data: Any) -> tuple[tuple, int]:
    """(loc without union member names, index of the first one in loc). A part that is a
    key written in the file is never taken for a member name."""
    out, node, cut = [], data, None
    for i, part in enumerate(loc):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif _member_tag(part):
            cut = i if cut is None else cut
            continue
        else:
            node = None
        out.append(part)
    return tuple(out), len(loc) if cut is None else cut


def _best(group: list[dict]) -> tuple[dict, str | None]:
    """One error for a value that failed every member of a union: the member it nearly fit
    (a constraint, not a type, failed), else 'expected A, B or C'."""
    fits = [e for e in group if e["type"] not in _EXPECTED]
    # "unknown key 'ayers'; did you mean 'layers'?" says more than "'layers' is required"
    fits.sort(key=lambda e: e["type"] == "missing")
    if fits or len(group) == 1:
        return (fits or group)[0], None
    wanted = [w for w in (_expected(e) for e in group) if w]
    wanted = list(dict.fromkeys(wanted))
    text = ", ".join(wanted[:-1]) + (" or " if len(wanted) > 1 else "") + wanted[-1] if wanted else "another value"
    return group[0], f"expected {text}, got {_got(group[0].get('input'))}"


_ADAPTER: list = []


def _layer_list():
    """One TypeAdapter for a layer list, made on first use (making one costs ~10 ms)."""
    if not _ADAPTER:
        from pydantic import TypeAdapter
        _ADAPTER.append(TypeAdapter(list[LayerSpec]))  # noqa: F405
    return _ADAPTER[0]


def validate_layers(spec: BaseSpec, raw: list, path: tuple) -> tuple[list | None, list[Problem]]:
    """Validate a layer list given as raw data (a parameterised block with one use's values
    in place); problems point at `path` + the item's place in the file."""
    from .root import Network
    try:
        return _layer_list().validate_python(raw), []
    except ValidationError as e:
        if spec.source is None:
            return None, [Problem(dotted(path), str(e))]
        return None, _problems(e, spec.source, Network, prefix=path)


def _problems(e: ValidationError, source: Source, root: type, prefix: tuple = ()) -> list[Problem]:
    if not _SECTIONS:
        _SECTIONS.update(_sections())
    groups: dict[tuple, list[dict]] = {}
    errors = [{**err, "loc": prefix + tuple(err["loc"])} for err in e.errors()]
    for err in errors:  # a value failing every member of a union errs once per member
        loc = tuple(err["loc"])
        cut = _members_cut(loc, source.data)[1]
        groups.setdefault(loc[:cut], []).append(err)
    seen, out = set(), []
    for group in groups.values():
        err, text = _best(group)
        # drop the union member names from the loc: ('optimizer','function-before[...]',...)
        loc = _members_cut(tuple(err["loc"]), source.data)[0]
        path = _file_path(loc, source.data)
        if err["type"] == "missing" and any(
                e["type"] == "extra_forbidden" and len(e["loc"]) == len(err["loc"]) and e["loc"][:-1] == err["loc"][:-1]
                and suggest(e["loc"][-1], [loc[-1]]).startswith("; did you mean") for e in errors):
            continue  # 'out_channels' is required: already said by "unknown key 'out_channel'; did you mean ..."
        msg = text or _message(err, loc, root)
        arg = loc[-1] if loc and isinstance(loc[-1], str) and loc[-1] not in path[-1:] else None
        if arg and err["type"] not in ("extra_forbidden", "missing") and not msg.startswith(f"'{arg}'"):
            msg = f"{arg} {msg}" if msg.startswith("must") else f"{arg}: {msg}"  # a shorthand value ('dropout: 1.5'): name the argument it set
        p = source.problem(path, msg, at_key=err["type"] == "extra_forbidden")
        p.path = dotted(path) if path else dotted(loc)
        if p.path not in seen:
            seen.add(p.path)
            out.append(p)
    return sorted(out, key=lambda p: (p.line or 0, p.col or 0))


# --- paths: the sweep/--set syntax, dotted keys into the spec as written ---
class Quoted(str):
    """A path segment written in quotes: a key as is (dots and digits included)."""


def split_path(path: str) -> list:
    """'a.0."b.c"' -> ['a', 0, Quoted('b.c')]: segments are separated by dots, a segment
    of digits is a list index, and a segment in double or single quotes is a key as is
    (as in TOML's dotted keys), for keys that hold dots, such as sweep.grid's."""
    parts, i, n = [], 0, len(path)
    while i <= n:
        if i < n and path[i] in "\"'":
            end = path.find(path[i], i + 1)
            if end < 0:
                raise KeyError(f"'{path}': the quote at character {i + 1} is not closed")
            parts.append(Quoted(path[i + 1:end]))
            i = end + 1
            if i < n and path[i] != ".":
                raise KeyError(f"'{path}': a quoted key must be followed by '.' or the end, "
                               f"not {path[i]!r}")
            i += 1
            if i == n:
                raise KeyError(f"'{path}' ends with '.'")
            continue
        end = path.find(".", i)
        end = n if end < 0 else end
        seg = path[i:end]
        if any(q in seg for q in "\"'"):
            raise KeyError(f"'{path}': quote a whole segment between dots, e.g. sweep.grid.\"optimizer.adam.lr\"")
        parts.append(int(seg) if seg.lstrip("-").isdigit() else seg)
        i = end + 1
    return parts


def _split(path: str) -> list:
    return split_path(path)


def get_path(data: Any, path: str) -> Any:
    node = data
    for part in _split(path):
        node = node[part]
    return node


PATH_KEYED = (("sweep", "grid"), ("sweep", "random", "params"))  # mappings whose keys are paths


def set_path(data: dict, path: str, value: Any) -> tuple:
    """Set `value` at `path` in raw spec data; returns the written path tuple.

    A component written in shorthand (`- linear: 64`, `- relu`) is expanded to its mapping
    form when the path goes inside it. Raises KeyError/IndexError/TypeError with a message.
    """
    parts = _split(path) if path else []
    if not path or any(p == "" and not isinstance(p, Quoted) for p in parts):
        raise KeyError(f"'{path}' is not a dotted path")
    for keyed in PATH_KEYED:
        k = len(keyed)
        if (tuple(parts[:k]) == keyed and len(parts) > k + 1 and not isinstance(parts[k], Quoted)
                and parts[k] not in (_lookup(data, keyed) or {})):
            written = ".".join(str(p) for p in parts[k:])
            raise KeyError(f"the keys of {'.'.join(keyed)} are spec paths, which hold dots: quote the key, "
                           f"as in {'.'.join(keyed)}.\"{written}\"=VALUE (on a shell, wrap the whole "
                           f"PATH=VALUE in single quotes)")
    node, done = data, []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not isinstance(part, int) or not -len(node) <= part < len(node):
                raise IndexError(f"'{dotted(done)}' is a list of {len(node)} items; "
                                 f"'{part}' is not an index in it")
            part %= len(node)  # -1 -> the last item's real index (positions are keyed by it)
            if isinstance(node[part], str) and not last and parts[i + 1] == node[part]:
                node[part] = {node[part]: None}  # bare name -> mapping
        elif isinstance(node, dict):
            part = str(part)  # an index as a key ('3'), and a Quoted key, are plain keys from here on
            if not last and part not in node:
                node[part] = {}
            elif not last and isinstance(node[part], str) and parts[i + 1] == node[part]:
                node[part] = {node[part]: None}  # bare name ('loss: bce') -> mapping
            elif not last and node[part] is None:
                node[part] = {}  # a component written without arguments ('- add:')
            elif not last and not isinstance(node[part], (dict, list)):
                # scalar shorthand ('linear: 64') going deeper: expand by the first argument
                cls = _component(part)
                if cls is None or cls.first is None:
                    raise TypeError(f"'{dotted(done + [part])}' holds a value, not a mapping; "
                                    f"cannot go into it")
                node[part] = {cls.first: node[part]}
        else:
            raise TypeError(f"'{dotted(done)}' holds a value, not a mapping; cannot go into it")
        if last:
            node[part] = value
        else:
            node = node[part]
        done.append(part)
    return tuple(done)


def _lookup(data: Any, keys: tuple):
    for k in keys:
        data = data.get(k) if isinstance(data, dict) else None
    return data if isinstance(data, dict) else None


def _component(tag: str):
    for table in REGISTRY.values():
        if tag in table:
            return table[tag]
    return None


def parse_set(item: str) -> tuple[str, Any]:
    """'train.epochs=2' -> ('train.epochs', 2); the value is read as YAML. The '=' that
    ends PATH is the first one outside quotes (`sweep.grid."a=b"=[1, 2]`)."""
    cut = _first_equals(item)
    if cut is None:
        raise SpecError([Problem("", f"--set expects PATH=VALUE (e.g. train.epochs=2), got '{item}'",
                                 "--set")])
    path, text = item[:cut], item[cut + 1:]
    try:
        src = parse(f"v: {text}" if text.strip() else "v: null", f"--set {item}")
    except SpecError as e:
        msg = e.problems[0].message.replace("YAML syntax error: ", "")
        shown = repr(text if len(text) <= 60 else text[:57] + "...")
        fix = "" if "control character" in msg or "quote it" in msg else "; quote it"
        raise SpecError([Problem(path.strip(), f"VALUE {shown} is not valid YAML: {msg}{fix}",
                                 "--set")]) from None
    return path.strip(), src.data["v"]


def _first_equals(item: str) -> int | None:
    quote = None
    for i, c in enumerate(item):
        if quote:
            quote = None if c == quote else quote
        elif c in "\"'":
            quote = c
        elif c == "=":
            return i
    return item.find("=") if quote and "=" in item else None  # an unclosed quote: the path says so


def apply_set(source: Source, item: str) -> None:
    path, value = parse_set(item)
    try:
        written = set_path(source.data, path, value)
    except (KeyError, IndexError, TypeError) as e:
        raise SpecError([Problem(path, str(e.args[0]), f"--set {item}")]) from None
    for key in [k for k in source.where if k[:len(written)] == written]:
        del source.where[key]
    for n in range(1, len(written) + 1):  # intermediate mappings --set created
        if written[:n] not in source.where:
            source.where[written[:n]] = (f"--set {item}", None, None)
    source.where[written] = (f"--set {item}", None, None)


# --- back to the written form (for the run folder's spec.yaml) ---
def written(obj: Any) -> Any:
    """A validated spec (or part) as a user would write it: components as {name: args},
    every default filled in, so the file fully records what ran and loads back as is."""
    from pydantic import BaseModel

    from .base import Component
    if hasattr(obj, "written_form"):  # a parameterised block: its layers as written ('$name' kept)
        return obj.written_form()
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

"""The component rule, once: a component is a bare name or a one-key mapping
{name: arguments}; a scalar or list argument is the component's first argument.

Each component is one pydantic model tagged by `type`; `components(...)` makes the
tagged union plus a before-validator that turns the written form into the tagged one.
"""
from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from ..errors import suggest

# tag -> class, for every component family; used for suggestions and the JSON Schema.
REGISTRY: dict[str, dict[str, type]] = {}


class Strict(BaseModel):
    """Every spec model: unknown keys are errors, never silently dropped; no NaN/inf; and
    a YAML boolean is not a number (pydantic would quietly read `out_features: true` as 1)."""
    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_numbers(cls, data):
        if isinstance(data, dict):
            for k, v in data.items():
                field = cls.model_fields.get(k) if k != "type" else None
                if field is not None and isinstance(v, (bool, list)) and _bool_as_number(field.annotation, v):
                    data = {**data, k: [YamlBool(x) if isinstance(x, bool) else x for x in v]
                            if isinstance(v, list) else YamlBool(v)}
        return data


class YamlBool:
    """A YAML boolean where a number belongs: fails validation (pydantic would read it as
    0 or 1), and the error mapping words it as a boolean."""

    def __init__(self, value: bool):
        self.value = value

    def __repr__(self) -> str:
        return str(self.value).lower()


def _members(ann) -> list:
    """The types a value of annotation `ann` may take (Annotated and unions unwrapped)."""
    origin = get_origin(ann)
    if origin is Annotated:
        return _members(get_args(ann)[0])
    if origin is Union or type(ann).__name__ == "UnionType":
        return [m for a in get_args(ann) for m in _members(a)]
    return [ann]


def _bool_as_number(ann, value) -> bool:
    """True when `value` holds a boolean where `ann` wants a number (and takes no boolean)."""
    members = _members(ann)
    if isinstance(value, list):
        items = [get_args(m)[0] for m in members if get_origin(m) is list and get_args(m)]
        return bool(items) and any(_bool_as_number(items[0], v) for v in value)
    if not isinstance(value, bool):
        return False
    lits = [a for m in members if get_origin(m) is Literal for a in get_args(m)]
    numeric = any(m in (int, float) for m in members) or any(
        isinstance(a, (int, float)) and not isinstance(a, bool) for a in lits)
    takes_bool = any(m in (bool, Any, object) for m in members) or any(isinstance(a, bool) for a in lits)
    return numeric and not takes_bool


class Component(Strict):
    type: str
    first: ClassVar[str | None] = None  # the argument a scalar/list shorthand sets

    @classmethod
    def tag(cls) -> str:
        return cls.model_fields["type"].default

    def args(self, *, exclude=()) -> dict:
        """Arguments as written (minus tag and netspec-level fields)."""
        skip = {"type", *exclude}
        return {k: v for k, v in self if k not in skip}


def _describe(v: Any) -> str:
    return f"{type(v).__name__} {v!r}" if not isinstance(v, (dict, list)) else type(v).__name__


def _own_fields(cls) -> list[str]:
    return [f for f in cls.model_fields if f not in ("type", "name", "inputs")]


def normalize(value: Any, table: dict[str, type], what: str, siblings: tuple = ()) -> Any:
    if isinstance(value, BaseModel):
        return value
    extra = {}
    if isinstance(value, str):
        name, args = value, None
    elif isinstance(value, dict):
        keys = [k for k in value if k not in siblings]
        if len(keys) != 1:
            raise PydanticCustomError("component", _shape_message(keys, value, table, what, siblings))
        name, args = keys[0], value[keys[0]]
        extra = {k: value[k] for k in siblings if k in value}
    else:
        raise PydanticCustomError(
            "component", "expected a {what} (a name such as '{example}', or 'name: arguments'), "
            "got {got}", {"what": what, "example": next(iter(table)), "got": _describe(value)})
    if not isinstance(name, str) or name not in table:
        hint = suggest(name, table) or f"; known {what}s: {', '.join(sorted(table))}"
        raise PydanticCustomError("unknown_component", "unknown {what} '{name}'{hint}",
                                  {"what": what, "name": str(name), "hint": hint})
    cls = table[name]
    if args is None:
        args = {}
    elif not isinstance(args, dict):
        if cls.first is None:
            own = _own_fields(cls)
            if not own:
                raise PydanticCustomError("component", f"'{name}' takes no arguments; write just '{name}'")
            raise PydanticCustomError(
                "component", f"'{name}' has no shorthand value; write its arguments as a mapping, "
                f"'{name}: {{{own[0]}: ...}}'")
        args = {cls.first: args}
    if "type" in args:
        raise PydanticCustomError("component", "'type' is not an argument of '{name}'", {"name": name})
    return {"type": name, **args, **extra}


def _shape_message(keys: list, value: dict, table: dict, what: str, siblings: tuple) -> str:
    """Why a mapping is not one component, and how to write it."""
    known = [k for k in keys if isinstance(k, str) and k in table]
    if not keys:
        example = "linear: 64" if "linear" in table else next(iter(table))
        return (f"this item has only {', '.join(map(str, value))}; add the {what} itself "
                f"(e.g. '- {example}') with {'it' if len(value) == 1 else 'them'} beside it")
    if len(known) > 1:
        return (f"one item holds several {what}s ({', '.join(known)}); give each its own "
                "list item ('- ...')")
    if len(known) == 1:
        name, cls = known[0], table[known[0]]
        others = [k for k in keys if k != name]
        args = value[name]
        fields = _own_fields(cls)
        inside = [k for k in others if k in fields]
        if inside:
            shown = dict(args) if isinstance(args, dict) else ({cls.first: args} if cls.first and args is not None else {})
            shown.update({k: value[k] for k in inside})
            body = ", ".join(f"{k}: {v}" for k, v in shown.items())
            return (f"{', '.join(map(repr, inside))} {'is an argument' if len(inside) == 1 else 'are arguments'} "
                    f"of '{name}': write {'it' if len(inside) == 1 else 'them'} inside, '{name}: {{{body}}}'")
        valid = [*siblings, *fields]
        return (f"unknown key '{others[0]}' beside '{name}'{suggest(others[0], valid)}"
                + (f" (an item may carry {' and '.join(siblings)} beside the {what})" if siblings else ""))
    shown = ", ".join(map(str, keys))
    return (f"a {what} is written as its name or as a one-key mapping 'name: arguments'; "
            f"none of the keys {shown} is a {what}{suggest(keys[0], table)}")


def components(family: str, what: str, classes: list[type], siblings: tuple = ()):
    """The annotated, tagged union type for a component family."""
    table = REGISTRY.setdefault(family, {})
    for c in classes:
        table[c.tag()] = c
    union = Annotated[Union[tuple(classes)], Field(discriminator="type")]  # noqa: UP007
    return Annotated[union, BeforeValidator(lambda v: normalize(v, table, what, siblings))]


def family_of(cls: type) -> str | None:
    for fam, table in REGISTRY.items():
        if cls in table.values():
            return fam
    return None

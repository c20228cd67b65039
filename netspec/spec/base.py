"""The component rule, once: a component is a bare name or a one-key mapping
{name: arguments}; a scalar or list argument is the component's first argument.

Each component is one pydantic model tagged by `type`; `components(...)` makes the
tagged union plus a before-validator that turns the written form into the tagged one.
"""
from __future__ import annotations

from typing import Annotated, Any, ClassVar, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from ..errors import suggest

# tag -> class, for every component family; used for suggestions and the JSON Schema.
REGISTRY: dict[str, dict[str, type]] = {}


class Strict(BaseModel):
    """Every spec model: unknown keys are errors, never silently dropped."""
    model_config = ConfigDict(extra="forbid", validate_default=True)


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


def normalize(value: Any, table: dict[str, type], what: str, siblings: tuple = ()) -> Any:
    if isinstance(value, BaseModel):
        return value
    extra = {}
    if isinstance(value, str):
        name, args = value, None
    elif isinstance(value, dict):
        keys = [k for k in value if k not in siblings]
        if len(keys) != 1:
            shown = ", ".join(map(str, keys)) or "none"
            raise PydanticCustomError(
                "component", "a {what} is written as its name or as a one-key mapping "
                "'name: arguments'; this mapping has keys: {keys}", {"what": what, "keys": shown})
        name, args = keys[0], value[keys[0]]
        extra = {k: value[k] for k in siblings if k in value}
    else:
        raise PydanticCustomError(
            "component", "expected a {what} (a name such as '{example}', or 'name: arguments'), "
            "got {got}", {"what": what, "example": next(iter(table)), "got": _describe(value)})
    if not isinstance(name, str) or name not in table:
        raise PydanticCustomError("unknown_component", "unknown {what} '{name}'{hint}",
                                  {"what": what, "name": str(name), "hint": suggest(name, table)})
    cls = table[name]
    if args is None:
        args = {}
    elif not isinstance(args, dict):
        if cls.first is None:
            raise PydanticCustomError(
                "component", "'{name}' takes no shorthand value; write its arguments as a "
                "mapping, '{name}: {{...}}'", {"name": name})
        args = {cls.first: args}
    if "type" in args:
        raise PydanticCustomError("component", "'type' is not an argument of '{name}'", {"name": name})
    return {"type": name, **args, **extra}


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

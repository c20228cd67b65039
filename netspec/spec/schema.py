"""JSON Schema of the spec format *as users write it*: bare names, one-key mappings,
scalar shorthands and name/inputs beside a layer, so an editor's YAML language server
completes and checks real files. Derived from the pydantic models (no torch)."""
from __future__ import annotations

import copy

from . import KINDS
from .base import REGISTRY

SIBLINGS = {"layer": ("name", "inputs")}
NOT_WRITTEN = {"activation": ("name", "inputs")}  # an activation inside a layer has no wiring


def _variants(defs: dict, name: str, ref: str, family: str) -> list[dict]:
    d = defs[ref.rsplit("/", 1)[-1]]
    props = {k: v for k, v in d.get("properties", {}).items() if k != "type"}
    required = [r for r in d.get("required", []) if r != "type"]
    siblings = {k: props.pop(k) for k in SIBLINGS.get(family, ()) if k in props}
    for k in NOT_WRITTEN.get(family, ()):
        props.pop(k, None)
    cls = REGISTRY[family][name]
    args: list[dict] = [{"type": "object", "properties": props, "required": required,
                         "additionalProperties": False}]
    if cls.first and cls.first in props:
        args.append(props[cls.first])
    if not required:
        args.append({"type": "null"})
    doc = (cls.__doc__ or "").strip()
    mapping = {"type": "object", "properties": {name: {"anyOf": args}, **siblings},
               "required": [name], "additionalProperties": False,
               "title": name}
    if doc:
        mapping["description"] = doc
    out = [mapping]
    if not required:
        out.insert(0, {"const": name, "description": doc or name})
    return out


def _family(mapping: dict) -> str | None:
    names = set(mapping)
    for fam, table in REGISTRY.items():
        if names == set(table):
            return fam
    return None


def _rewrite(node, defs, families: dict):
    """Replace each tagged union by a reference to its family's written forms, which are
    defined once in $defs (an activation or initializer inside every layer stays small)."""
    if isinstance(node, dict):
        disc = node.get("discriminator")
        if disc and disc.get("propertyName") == "type":
            fam = _family(disc["mapping"])
            if fam:
                key = f"{fam}-component"
                if key not in families:
                    families[key] = {}  # placeholder while its members are rewritten
                    families[key] = {"anyOf": [_rewrite(v, defs, families) for n, r in disc["mapping"].items()
                                               for v in _variants(defs, n, r, fam)]}
                return {"$ref": f"#/$defs/{key}"}
        return {k: _rewrite(v, defs, families) for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite(v, defs, families) for v in node]
    return node


def _refs(node, out: set) -> set:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            out.add(ref[len("#/$defs/"):])
        for v in node.values():
            _refs(v, out)
    elif isinstance(node, list):
        for v in node:
            _refs(v, out)
    return out


def json_schema() -> dict:
    kinds = []
    all_defs = {}
    for kind, cls in KINDS.items():
        s = cls.model_json_schema(mode="validation")
        defs = s.pop("$defs", {})
        all_defs.update(defs)
        s["properties"]["kind"] = ({"const": kind} if kind != "network" else {"const": "network"})
        if kind != "network" and "kind" not in s.setdefault("required", []):
            s["required"].append("kind")
        kinds.append(s)
    families: dict = {}
    top = {"$schema": "https://json-schema.org/draft/2020-12/schema",
           "title": "netspec spec", "anyOf": kinds}
    top = _rewrite(top, all_defs, families)
    defs = {k: _rewrite(v, all_defs, families) for k, v in all_defs.items()}
    defs.update(families)
    # keep the definitions still referenced (a component's own model is inlined in its family)
    used, todo = set(), _refs(top, set())
    while todo:
        k = todo.pop()
        if k not in used and k in defs:
            used.add(k)
            todo |= _refs(defs[k], set())
    top["$defs"] = {k: defs[k] for k in sorted(used)}
    _block_params(top["$defs"])
    return copy.deepcopy(top)


PARAM_REF = {"type": "string", "pattern": r"^\$[A-Za-z_][A-Za-z0-9_]*$",
             "description": "a parameter of the block, as '$name'"}


def _block_params(defs: dict) -> None:
    """Inside a parameterised block any layer argument may be a '$name' reference: its
    layers get a copy of the layer forms where every argument also takes one."""
    if "BlockDef" not in defs or "layer-component" not in defs:
        return

    def open_args(node):
        if isinstance(node, dict):
            out = {k: open_args(v) for k, v in node.items()}
            if isinstance(node.get("properties"), dict):
                out["properties"] = {k: {"anyOf": [open_args(v), {"$ref": "#/$defs/param-ref"}]}
                                     for k, v in node["properties"].items()}
            return out
        if isinstance(node, list):
            return [open_args(v) for v in node]
        return node

    defs["param-ref"] = PARAM_REF
    defs["layer-component-in-block"] = open_args(defs["layer-component"])
    defs["BlockDef"]["properties"]["layers"]["items"] = {"$ref": "#/$defs/layer-component-in-block"}

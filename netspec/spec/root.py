"""Top-level spec models: the shared sections and one class per `kind`."""
from __future__ import annotations

import copy
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from ..errors import suggest
from .base import Strict
from .layers import LayerSpec, Size

PARAM = r"^[A-Za-z_][A-Za-z0-9_]*$"


def substitute(node: Any, values: dict, path: tuple = (), missing: list | None = None) -> Any:
    """A copy of raw layer data with every '$name' string replaced by values[name]; names
    not in `values` are collected in `missing` as (path, name). Nothing is evaluated."""
    if isinstance(node, str) and node.startswith("$"):
        if node[1:] in values:
            return copy.deepcopy(values[node[1:]])
        if missing is not None:
            missing.append((path, node[1:]))
        return node
    if isinstance(node, dict):
        return {k: substitute(v, values, path + (k,), missing) for k, v in node.items()}
    if isinstance(node, list):
        return [substitute(v, values, path + (i,), missing) for i, v in enumerate(node)]
    return node


class BlockDef(Strict):
    """A block with parameters: `params` names each with its default, and the layers refer
    to them as '$name' (a whole value: `out_channels: $width`). A use passes values with
    `params` (and per repetition with `each`)."""
    params: dict[Annotated[str, Field(pattern=PARAM)], Any] = {}
    # names of the block's inputs, for a block fed by several layers (a U-Net's skip);
    # a use wires them with `inputs: [...]`, in this order
    inputs: Annotated[list[Annotated[str, Field(pattern=PARAM)]], Field(min_length=1)] = ["input"]
    layers: Annotated[list[LayerSpec], Field(min_length=1)]
    _raw = PrivateAttr(default=None)  # the layers as written, '$name' kept

    @model_validator(mode="wrap")
    @classmethod
    def _defaults(cls, data, handler):
        """Validate the layers with the defaults in place (so a block is checked once even
        if unused); keep the written layers for each use's own values."""
        raw = None
        if isinstance(data, dict) and isinstance(data.get("layers"), list):
            raw = copy.deepcopy(data["layers"])
            params = data.get("params") if isinstance(data.get("params"), dict) else {}
            missing: list = []
            layers = substitute(raw, params, (), missing)
            if missing:
                where, name = missing[0]
                raise PydanticCustomError(
                    "block_param", "layers.{at}: unknown parameter '${name}'{hint} (declare it under "
                    "params, with its default)", {"at": ".".join(map(str, where)), "name": name,
                                                 "hint": suggest(name, params)})
            data = {**data, "layers": layers}
        inst = handler(data)
        if raw is not None:
            inst._raw = raw
        return inst

    def written_form(self) -> dict:
        return {"params": copy.deepcopy(self.params), "inputs": list(self.inputs),
                "layers": copy.deepcopy(self._raw)}


class Scale(Strict):
    """One size of a scaled family (Ultralytics' n/s/m/l/x): `depth` multiplies the repeat of
    every block used more than once, `width` the sizes of every weighted layer but the
    network's output layer (rounded up to a multiple of round_to, at most max_channels)."""
    depth: Annotated[float, Field(gt=0)] = 1.0
    width: Annotated[float, Field(gt=0)] = 1.0
    max_channels: Size | None = None
    round_to: Size = 8
from .training import Data, LossSpec, OptimizerSpec, Sweep, Train


class Network(Strict):
    """A network: a layer list (a chain, or a DAG through name/inputs) over one input."""
    input_shape: Annotated[list[Size], Field(min_length=1)] | None = None
    input_dtype: Literal["float", "long"] = "float"  # long: token ids (for embedding)
    layers: Annotated[list[LayerSpec], Field(min_length=1)]
    blocks: dict[str, Annotated[list[LayerSpec], Field(min_length=1)] | BlockDef] = {}
    scales: dict[Annotated[str, Field(pattern=PARAM)], Scale] = {}
    scale: str | None = None  # which of `scales` to build (default: the first); --scale picks one

    @field_validator("scale")
    @classmethod
    def _scale_known(cls, v, info):
        scales = info.data.get("scales") or {}
        if v is not None and v not in scales:
            known = suggest(v, scales) if scales else "; this network has no 'scales'"
            raise PydanticCustomError("scale", "unknown scale '{s}'{hint}", {"s": v, "hint": known})
        return v

    @property
    def chosen_scale(self) -> Scale | None:
        if not self.scales:
            return None
        return self.scales[self.scale or next(iter(self.scales))]


class BaseSpec(Strict):
    name: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.=,+-]*$")]
    description: str | None = None
    seed: Annotated[int, Field(ge=0, lt=2**32)] = 0  # numpy's generators take no negative seed
    data: Data | None = None
    train: Train = Train()
    sweep: Sweep | None = None
    _source = PrivateAttr(default=None)  # yamlio.Source: positions for later errors

    @property
    def source(self):
        return self._source

    def problem(self, path: tuple, message: str):
        from ..errors import Problem
        if self._source is None:
            return Problem(".".join(map(str, path)), message)
        return self._source.problem(path, message)


class NetworkSpec(BaseSpec):
    kind: Literal["network"] = "network"
    model: Network
    loss: LossSpec | None = None
    optimizer: OptimizerSpec | None = None


KINDS: dict[str, type[BaseSpec]] = {"network": NetworkSpec}

"""Top-level spec models: the shared sections and one class per `kind`."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, PrivateAttr

from .base import Strict
from .layers import LayerSpec, Size
from .training import Data, LossSpec, OptimizerSpec, Sweep, Train


class Network(Strict):
    """A network: a layer list (a chain, or a DAG through name/inputs) over one input."""
    input_shape: Annotated[list[Size], Field(min_length=1)] | None = None
    input_dtype: Literal["float", "long"] = "float"  # long: token ids (for embedding)
    layers: Annotated[list[LayerSpec], Field(min_length=1)]
    blocks: dict[str, Annotated[list[LayerSpec], Field(min_length=1)]] = {}


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

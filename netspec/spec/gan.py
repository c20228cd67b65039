"""`kind: gan`: a generator from a noise vector to a data-shaped sample, a discriminator
scoring real against generated samples, and how the two are trained against each other."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from ..errors import suggest
from .base import REGISTRY, Strict
from .root import BaseSpec, Network
from .training import Frac, OptimizerSpec

Size = Annotated[int, Field(gt=0)]
GAN_LOSSES = ("standard", "non_saturating", "least_squares")


class Latent(Strict):
    """The generator's input: a noise vector of `size` values."""
    size: int
    distribution: Literal["normal", "uniform"] = "normal"  # uniform: U(-1, 1)

    @field_validator("size")
    @classmethod
    def _size(cls, v):
        if v < 1:
            raise PydanticCustomError("latent_size", "the latent size must be at least 1 (got {v}); "
                                      "DCGANs use 32 to 128", {"v": v})
        return v


class GanSettings(Strict):
    """How the two networks play. loss: `standard` is the minimax loss of the GAN paper
    (the generator minimises log(1 - D(G(z)))), `non_saturating` has the generator push
    D(G(z)) toward "real" instead (the notes' g_loss; stronger gradients early), both on
    logits (sigmoid cross-entropy); `least_squares` is LSGAN's squared error on D's raw
    score. label_smoothing: real targets become 1 - label_smoothing (one-sided).
    d_steps: discriminator updates per generator update. conditional: feed the class
    label (one-hot) to both networks, so a given class can be asked for."""
    loss: Literal["standard", "non_saturating", "least_squares"] = "non_saturating"
    label_smoothing: Frac = 0.0
    d_steps: Size = 1
    conditional: bool = False
    classes: Size | None = None  # with conditional: the number of class labels

    @field_validator("loss", mode="before")
    @classmethod
    def _loss(cls, v):
        if v not in GAN_LOSSES:
            supervised = isinstance(v, str) and v in REGISTRY.get("loss", {})
            hint = suggest(str(v), GAN_LOSSES)
            raise PydanticCustomError(
                "gan_loss", "'{v}' is {what}; gan.loss is one of standard, non_saturating or "
                "least_squares{hint}", {"v": str(v), "what": "a supervised loss" if supervised else
                                        "not a GAN loss", "hint": hint if "did you" in hint else ""})
        return v


class GanOptimizers(Strict):
    generator: OptimizerSpec
    discriminator: OptimizerSpec

    @model_validator(mode="before")
    @classmethod
    def _two(cls, v: Any):
        if isinstance(v, str) or (isinstance(v, dict) and len(v) == 1
                                  and next(iter(v)) in REGISTRY.get("optimizer", {})):
            name = v if isinstance(v, str) else next(iter(v))
            raise PydanticCustomError(
                "gan_optimizer", "a GAN has one optimizer per network: write 'optimizer: "
                "{generator: {{name}: {...}}, discriminator: {{name}: {...}}}'", {"name": name})
        return v


class GanSpec(BaseSpec):
    kind: Literal["gan"]
    latent: Latent
    generator: Network  # its input is the latent vector (plus the one-hot label): set by netspec
    discriminator: Network  # input_shape defaults to the generator's output; ends in one logit
    gan: GanSettings = GanSettings()
    optimizer: GanOptimizers | None = None
    loss: SkipJsonSchema[None] = None  # only to point a misplaced 'loss' at gan.loss

    @field_validator("loss", mode="before")
    @classmethod
    def _no_loss(cls, v):
        if v is None:  # the default (validate_default)
            return v
        raise PydanticCustomError("gan_loss", "a GAN's loss is set under 'gan: {loss: ...}' "
                                  "(standard, non_saturating or least_squares); move it there", {})

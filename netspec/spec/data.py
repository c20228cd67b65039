"""Data sources for real data (image folders, Parquet tables, .npy arrays) and the
augmentations of `data.augment` (spec side, no torch). Loaders live in netspec/data/."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from .base import Component, components

Size = Annotated[int, Field(gt=0)]
Prob = Annotated[float, Field(ge=0, le=1)]
Task = Literal["auto", "classification", "regression"]


class ImageFolder(Component):
    """A folder with one subfolder per class holding PNG or JPEG images (class names are
    the subfolder names, sorted). Images are resized to model.input_shape [C, H, W] and
    converted to C channels (1: grey, 3: RGB), values in [0, 1]. Decoded images are cached
    in a memory-mapped file, rebuilt when a file is added, removed or changed."""
    type: Literal["image_folder"] = "image_folder"
    first = "path"
    path: str
    cache: bool = True
    cache_dir: str | None = None  # default: $NETSPEC_CACHE, else ~/.cache/netspec
    workers: Annotated[int, Field(ge=0)] = 0  # DataLoader processes decoding images when the cache is built


class _Table(Component):
    first = "path"
    path: str
    target: str  # the label column
    features: list[str] | None = None  # default: every column but the target
    task: Task = "auto"


class Parquet(_Table):
    """A Parquet table (read with pyarrow): named feature columns and a target column.
    String targets are mapped to classes (sorted names)."""
    type: Literal["parquet"] = "parquet"


class Npy(Component):
    """Arrays in .npy files: features `x` ([samples, ...]) and targets `y` ([samples] or
    [samples, outputs]). Large files are memory-mapped and read batch by batch
    (see data.in_memory)."""
    type: Literal["npy"] = "npy"
    x: str
    y: str
    task: Task = "auto"


DATA_SOURCES = [ImageFolder, Parquet, Npy]


# --- augmentation: applied batch-wise on the training device, to training data only ---
class RandomCrop(Component):
    """Pad each image by `padding` pixels on every side, then crop a random window of the
    original size (a random shift of up to `padding` pixels)."""
    type: Literal["random_crop"] = "random_crop"
    first = "padding"
    padding: Size = 4
    fill: Literal["zeros", "reflect", "replicate"] = "zeros"


class HorizontalFlip(Component):
    """Mirror each image left-right with probability p."""
    type: Literal["horizontal_flip"] = "horizontal_flip"
    first = "p"
    p: Prob = 0.5


class VerticalFlip(Component):
    type: Literal["vertical_flip"] = "vertical_flip"
    first = "p"
    p: Prob = 0.5


class Affine(Component):
    """A random rotation (degrees, up to +-), shift (a fraction of the size, up to +-) and
    scale ([low, high]) per image, bilinear, filled with zeros."""
    type: Literal["affine"] = "affine"
    first = "degrees"
    degrees: Annotated[float, Field(ge=0, le=180)] = 0.0
    translate: Annotated[float, Field(ge=0, lt=1)] = 0.0
    scale: Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=2, max_length=2)] = [1.0, 1.0]

    @model_validator(mode="after")
    def _scale(self):
        if self.scale[0] > self.scale[1]:
            raise ValueError("scale must be [low, high] with low <= high")
        return self


class Rotation(Component):
    """A random rotation of up to +-degrees (affine with only a rotation)."""
    type: Literal["rotation"] = "rotation"
    first = "degrees"
    degrees: Annotated[float, Field(gt=0, le=180)] = 10.0


class Noise(Component):
    """Gaussian noise of standard deviation `std` added to every value."""
    type: Literal["noise"] = "noise"
    first = "std"
    std: Annotated[float, Field(gt=0)] = 0.05


AUGMENT_CLASSES = [RandomCrop, HorizontalFlip, VerticalFlip, Affine, Rotation, Noise]
IMAGE_AUGMENTS = {"random_crop", "horizontal_flip", "vertical_flip", "affine", "rotation"}
AugmentSpec = components("augment", "augmentation", AUGMENT_CLASSES)

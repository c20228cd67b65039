"""Everything around the network: data, loss, optimizer, scheduler, metrics, train, sweep."""
from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field, model_validator

from .base import Component, Strict, components
from .data import DATA_SOURCES, AugmentSpec
from .text import SEQUENCE_METRICS, TEXT_SOURCES

Size = Annotated[int, Field(gt=0)]
Rate = Annotated[float, Field(gt=0)]
Frac = Annotated[float, Field(ge=0, lt=1)]


# --- losses ---
class Loss(Component):
    reduction: Literal["mean", "sum"] = "mean"


class CrossEntropy(Loss):
    """Logits and class indices (or one-hot/probabilities)."""
    type: Literal["cross_entropy"] = "cross_entropy"
    first = "label_smoothing"
    label_smoothing: Frac = 0.0
    weight: list[float] | None = None
    ignore_index: int = -100


class NLL(Loss):
    """Log-probabilities (after log_softmax) and class indices."""
    type: Literal["nll"] = "nll"
    weight: list[float] | None = None
    ignore_index: int = -100


class BCE(Loss):
    """Probabilities (after sigmoid) and 0/1 targets; class indices become one-hot."""
    type: Literal["bce"] = "bce"


class BCEWithLogits(Loss):
    type: Literal["bce_with_logits"] = "bce_with_logits"
    pos_weight: list[float] | float | None = None


class MSE(Loss):
    type: Literal["mse"] = "mse"


class L1(Loss):
    type: Literal["l1"] = "l1"


class SmoothL1(Loss):
    type: Literal["smooth_l1"] = "smooth_l1"
    first = "beta"
    beta: Rate = 1.0


class Huber(Loss):
    type: Literal["huber"] = "huber"
    first = "delta"
    delta: Rate = 1.0


LOSS_CLASSES = [CrossEntropy, NLL, BCE, BCEWithLogits, MSE, L1, SmoothL1, Huber]
LossSpec = components("loss", "loss", LOSS_CLASSES)
CLASSIFICATION_LOSSES = {"cross_entropy", "nll", "bce", "bce_with_logits"}


# --- optimizers ---
class Optimizer(Component):
    first = "lr"
    weight_decay: Annotated[float, Field(ge=0)] = 0.0


class SGD(Optimizer):
    type: Literal["sgd"] = "sgd"
    lr: Rate = 0.01
    momentum: Annotated[float, Field(ge=0)] = 0.0
    dampening: float = 0.0
    nesterov: bool = False

    @model_validator(mode="after")
    def _nesterov(self):
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("nesterov needs momentum > 0 and dampening 0")
        return self


class Adam(Optimizer):
    type: Literal["adam"] = "adam"
    lr: Rate = 0.001
    betas: Annotated[list[Annotated[float, Field(ge=0, lt=1)]], Field(min_length=2, max_length=2)] = [0.9, 0.999]
    eps: Rate = 1e-8
    amsgrad: bool = False


class AdamW(Adam):
    type: Literal["adamw"] = "adamw"
    weight_decay: Annotated[float, Field(ge=0)] = 0.01


class RMSprop(Optimizer):
    type: Literal["rmsprop"] = "rmsprop"
    lr: Rate = 0.01
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.99
    eps: Rate = 1e-8
    momentum: Annotated[float, Field(ge=0)] = 0.0
    centered: bool = False


class Adagrad(Optimizer):
    type: Literal["adagrad"] = "adagrad"
    lr: Rate = 0.01
    lr_decay: Annotated[float, Field(ge=0)] = 0.0
    eps: Rate = 1e-10


OPTIMIZER_CLASSES = [SGD, Adam, AdamW, RMSprop, Adagrad]
OptimizerSpec = components("optimizer", "optimizer", OPTIMIZER_CLASSES)


# --- learning-rate schedulers (stepped once per epoch) ---
class StepLR(Component):
    type: Literal["step"] = "step"
    first = "step_size"
    step_size: Size
    gamma: Rate = 0.1


class Cosine(Component):
    """Cosine annealing over T_max epochs (default: train.epochs)."""
    type: Literal["cosine"] = "cosine"
    first = "T_max"
    T_max: Size | None = None
    eta_min: Annotated[float, Field(ge=0)] = 0.0


class Plateau(Component):
    """Reduce the LR when train.monitor stops improving."""
    type: Literal["plateau"] = "plateau"
    first = "patience"
    factor: Annotated[float, Field(gt=0, lt=1)] = 0.1
    patience: Annotated[int, Field(ge=0)] = 10
    threshold: Annotated[float, Field(ge=0)] = 1e-4
    min_lr: Annotated[float, Field(ge=0)] = 0.0


class Exponential(Component):
    type: Literal["exponential"] = "exponential"
    first = "gamma"
    gamma: Rate


SchedulerSpec = components("scheduler", "scheduler", [StepLR, Cosine, Plateau, Exponential])


# --- metrics (names are TensorBoard tags: val/accuracy, test/top_k_accuracy, ...) ---
class Accuracy(Component):
    type: Literal["accuracy"] = "accuracy"


class TopK(Component):
    type: Literal["top_k_accuracy"] = "top_k_accuracy"
    first = "k"
    k: Size = 5


class MAE(Component):
    type: Literal["mae"] = "mae"


class MSEMetric(Component):
    type: Literal["mse"] = "mse"


class Perplexity(Component):
    type: Literal["perplexity"] = "perplexity"


class IoU(Component):
    """Intersection over union of binary masks (segmentation): predicted pixels are logits
    above 0 (bce_with_logits) or values above 0.5; target pixels are values above 0.5."""
    type: Literal["iou"] = "iou"


METRIC_CLASSES = [Accuracy, TopK, MAE, MSEMetric, Perplexity, IoU, *SEQUENCE_METRICS]
MetricSpec = components("metric", "metric", METRIC_CLASSES)


# --- data sources ---
class Digits(Component):
    """scikit-learn's bundled handwritten digits: 1797 images [1, 8, 8] in [0, 1], 10 classes."""
    type: Literal["digits"] = "digits"


class Npz(Component):
    """Arrays from a .npz file: features under key `x`, targets under key `y`. Integer or
    string targets (or one-hot rows) are class labels, floats are values (regression)."""
    type: Literal["npz"] = "npz"
    first = "path"
    path: str
    x: str = "x"
    y: str = "y"
    task: Literal["auto", "classification", "regression"] = "auto"


class Csv(Component):
    """A CSV file with a header (read with pyarrow): named feature columns and one target
    column. A target that is not numeric is mapped to class indices (sorted class names).
    An empty, NaN or non-numeric value is refused, naming its line and column."""
    type: Literal["csv"] = "csv"
    first = "path"
    path: str
    target: str
    features: list[str] | None = None  # default: every column but the target
    delimiter: str = ","
    task: Literal["auto", "classification", "regression"] = "auto"


class SyntheticClassification(Component):
    """Gaussian blobs shaped like model.input_shape: one centre per class (seeded)."""
    type: Literal["synthetic_classification"] = "synthetic_classification"
    first = "samples"
    samples: Size = 1000
    classes: Annotated[int, Field(ge=2)] = 2
    noise: Annotated[float, Field(ge=0)] = 1.0


class SyntheticRegression(Component):
    """y = x @ w + noise, for a seeded random w; targets of size `outputs`."""
    type: Literal["synthetic_regression"] = "synthetic_regression"
    first = "samples"
    samples: Size = 1000
    outputs: Size = 1
    noise: Annotated[float, Field(ge=0)] = 0.1


SOURCE_CLASSES: list[type] = [Digits, Npz, Csv, SyntheticClassification, SyntheticRegression,
                               *DATA_SOURCES, *TEXT_SOURCES]
SourceSpec = components("source", "data source", SOURCE_CLASSES)


class Data(Strict):
    source: SourceSpec
    validation_split: Frac = 0.0
    test_split: Frac = 0.0
    normalize: Literal["none", "standard", "minmax"] = "none"  # statistics from the train split
    stratify: bool = False  # validation and test splits keep each class's share (class labels only)
    class_weight: Literal["none", "balanced"] = "none"  # balanced: loss weights n / (classes * count)
    augment: list[AugmentSpec] = []  # training batches only, on the training device, seeded
    in_memory: Literal["auto", "always", "never"] = "auto"  # auto: memory-map arrays over 512 MB

    @model_validator(mode="after")
    def _splits(self):
        if self.validation_split + self.test_split >= 1:
            raise ValueError("validation_split + test_split must leave some data to train on (sum < 1)")
        return self


# --- training ---
class EarlyStopping(Strict):
    monitor: str | None = None  # default: train.monitor
    patience: Annotated[int, Field(ge=1)] = 5
    min_delta: Annotated[float, Field(ge=0)] = 0.0


class TensorBoard(Strict):
    """verbosity 0: loss and metrics; 1: + learning rate and gradient norm;
    2: + weight and gradient histograms; 3: + activation histograms."""
    verbosity: Literal[0, 1, 2, 3] = 0
    histogram_every: Size = 1  # epochs
    graph: bool = True


class Train(Strict):
    epochs: Size = 10
    batch_size: Size = 64
    metrics: list[MetricSpec] = []
    monitor: str = "val/loss"  # drives best checkpoint, early stopping, plateau, sweeps
    mode: Literal["auto", "min", "max"] = "auto"  # auto: max for accuracy-like metrics
    early_stopping: EarlyStopping | None = None
    scheduler: SchedulerSpec | None = None
    clip_grad_norm: Rate | None = None
    clip_grad_value: Rate | None = None
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    precision: Literal["auto", "32", "16", "bf16"] = "auto"  # auto: 16-bit mixed on cuda only
    shuffle: bool = True
    log_every: Size = 10  # steps between train/loss points in TensorBoard
    checkpoint_every: Size = 1  # epochs
    diagnose_every: Size = 5  # epochs between expensive diagnostics (samples, quality, decoding); and the last
    threads: Size | None = None  # torch CPU threads; sweeps set it per trial
    tensorboard: TensorBoard = TensorBoard()


# --- sweeps ---
class Choice(Component):
    type: Literal["choice"] = "choice"
    first = "values"
    values: Annotated[list[Any], Field(min_length=1)]


class _Range(Component):
    first = "range"
    range: Annotated[list[float], Field(min_length=2, max_length=2)]

    @model_validator(mode="after")
    def _order(self):
        if self.range[0] >= self.range[1]:
            raise ValueError("range must be [low, high] with low < high")
        return self


class UniformDist(_Range):
    type: Literal["uniform"] = "uniform"


class LogUniform(_Range):
    type: Literal["log_uniform"] = "log_uniform"

    @model_validator(mode="after")
    def _positive(self):
        if self.range[0] <= 0:
            raise ValueError("log_uniform needs low > 0")
        return self


class IntRange(_Range):
    """An integer from low to high, both included."""
    type: Literal["int"] = "int"
    range: Annotated[list[int], Field(min_length=2, max_length=2)]


Distribution = components("distribution", "distribution", [Choice, UniformDist, LogUniform, IntRange])


class RandomSearch(Strict):
    trials: Size
    seed: int = 0
    params: Annotated[dict[str, Distribution], Field(min_length=1)]


class Sweep(Strict):
    grid: dict[str, Annotated[list[Any], Field(min_length=1)]] = {}
    random: RandomSearch | None = None
    metric: str | None = None  # default: train.monitor
    mode: Literal["auto", "min", "max"] = "auto"

    @model_validator(mode="after")
    def _something(self):
        if not self.grid and self.random is None:
            raise ValueError("a sweep needs a 'grid' or 'random' section")
        return self


def metric_mode(name: str, mode: str = "auto") -> str:
    """min or max for a metric tag; auto picks max for accuracy-like metrics."""
    if mode != "auto":
        return mode
    leaf = name.rsplit("/", 1)[-1]
    # score/classes: a GAN's quality/* (higher is better)
    return "max" if ("accuracy" in leaf or leaf in {"bleu", "exact_match", "confidence", "score", "iou",
                                                   "classes"}) else "min"


Number = Union[int, float]

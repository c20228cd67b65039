"""A GAN's data scaling: real samples are mapped into the generator's output range, which
is found by following the generator's output back to its squash (tanh, sigmoid)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..compiler import Concat, Graph, Reshape

SQUASH = {nn.Tanh: (-1.0, 1.0), nn.Sigmoid: (0.0, 1.0)}
# layers whose output stays within their input's range: they move, drop or average values
# (dropout zeroes and, while training, rescales the kept ones; its output at sampling is unscaled)
KEEP_RANGE = (Reshape, nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout, nn.Dropout2d, nn.MaxPool1d,
              nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)


def output_range(generator) -> tuple[float, float] | None:
    """The bounds of a compiled generator's output: the squash (tanh, sigmoid; a layer's
    `activation:` too) found by following the output back through layers that keep the
    range (reshape, flatten, dropout, pooling, nearest/linear upsampling, a concat of
    equally bounded parts, blocks); None when the output is unbounded."""
    return _range(generator.module, lambda: None)


def _range(m: nn.Module, upstream):
    """Range of m's output; `upstream()` gives the range of its (first) input."""
    if type(m) in SQUASH:
        return SQUASH[type(m)]
    if isinstance(m, KEEP_RANGE) or (isinstance(m, nn.Upsample) and m.mode in ("nearest", "linear", "bilinear")):
        return upstream()
    if isinstance(m, Graph):
        wiring = dict(m.wiring)

        def at(name):
            if name == "input":
                return upstream()
            mod, inputs = m._modules[name], wiring[name]
            if isinstance(mod, Concat):
                ranges = {at(i) for i in inputs}
                return ranges.pop() if len(ranges) == 1 else None
            return _range(mod, lambda: at(inputs[0]))
        return at(m.output)
    if isinstance(m, nn.Sequential):  # repeated blocks
        r = upstream
        for sub in m:
            r = (lambda sub, r: lambda: _range(sub, r))(sub, r)
        return r()
    return None


@dataclass
class Scale:
    """Real data is mapped linearly from its range [low, high] onto the generator's output
    range (tanh: [-1, 1], sigmoid: [0, 1]; unbounded: unchanged), so both live in one space."""
    low: float
    high: float
    a: float | None = None
    b: float | None = None

    @classmethod
    def of(cls, generator, x: torch.Tensor) -> Scale:
        """generator: the compiled generator (its output range is found by output_range)."""
        lo, hi = float(x.min()), float(x.max())
        if hi <= lo:
            hi = lo + 1.0
        a, b = output_range(generator) or (None, None)
        return cls(lo, hi, a, b)

    def to_gen(self, x):
        return x if self.a is None else self.a + (x - self.low) / (self.high - self.low) * (self.b - self.a)

    def to_data(self, v):
        return v if self.a is None else self.low + (v - self.a) / (self.b - self.a) * (self.high - self.low)

    def pixels(self, v):
        """Generator output -> [0, 1] for display."""
        return ((self.to_data(v) - self.low) / (self.high - self.low)).clamp(0, 1)

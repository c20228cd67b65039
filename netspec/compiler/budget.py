"""What a network will cost, checked before anything is allocated.

- Layers are counted from the spec (blocks times their repeats) before compiling: a six-line
  spec with `block: {repeat: 1000000}` is refused at once, not after minutes of building.
- Weights, and the activations one training batch keeps for the backward pass, are
  estimated from the shapes inferred on the meta device and compared with this machine's
  memory: a conv2d with a million channels is refused by `build`, not by the allocator at
  the first step.
"""
from __future__ import annotations

import math

from ..files import gib, memory_bytes

MAX_LAYERS = 10_000  # layers of one network, blocks expanded; real networks have at most a few hundred
FLOAT = 4  # bytes per value (float32)


def layer_count(network, limit: int = MAX_LAYERS) -> int:
    """Layers of `network` with every block expanded (times its repeat); counting stops a
    little past `limit`, so a bomb costs nothing to count. A block that uses itself counts
    once here (the builder reports it)."""
    blocks = getattr(network, "blocks", None) or {}
    memo: dict[str, int] = {}

    def size(layers, stack) -> int:
        n = 0
        for layer in layers:
            if getattr(layer, "type", None) == "block" and layer.use in blocks and layer.use not in stack:
                if layer.use not in memo:
                    block = blocks[layer.use]  # a layer list, or a parameterised block
                    memo[layer.use] = size(getattr(block, "layers", block), stack | {layer.use})
                n += memo[layer.use] * layer.repeat
            else:
                n += 1 + (getattr(layer, "activation", None) is not None)
            if n > limit:
                return n
        return n
    return size(network.layers or [], frozenset())


def check_layers(spec, network, path: tuple, problems: list) -> bool:
    """False (with a problem) when `network` has more than MAX_LAYERS layers, blocks expanded."""
    n = layer_count(network)
    if n <= MAX_LAYERS:
        return True
    repeats = [(i, layer) for i, layer in enumerate(network.layers or []) if getattr(layer, "type", None) == "block"]
    where = path + ("layers", repeats[0][0], "block") if repeats else path
    problems.append(spec.problem(where, f"the network has more than {MAX_LAYERS:,} layers once its blocks are "
                                        f"repeated (counted before building anything); use fewer repeats or "
                                        f"smaller blocks"))
    return False


def check_size(spec, compiled, path: tuple, problems: list) -> None:
    """Weights, and a training batch's activations, against this machine's memory."""
    have = memory_bytes()
    need = compiled.parameters * FLOAT
    if need > have // 2:
        big = max(compiled.rows, key=lambda r: r.parameters)
        problems.append(spec.problem(path, f"{compiled.parameters:,} parameters need {gib(need)} "
                                           f"for the weights alone (training needs about 4x that); this "
                                           f"machine has {have / 2**30:.0f} GiB: use smaller layers "
                                           f"(the largest, {big.name}, has {big.parameters:,})"))
        return
    train = getattr(spec, "train", None)
    batch = getattr(train, "batch_size", None) or 1
    per_sample = math.prod(compiled.input_shape) + sum(math.prod(r.output_shape) for r in compiled.rows)
    acts = 2 * FLOAT * batch * per_sample  # kept for backward, and their gradients
    if acts > have // 2:
        big = max(compiled.rows, key=lambda r: math.prod(r.output_shape))
        problems.append(spec.problem(path, f"a training batch of {batch:,} needs about {gib(acts)} for its "
                                           f"activations (the largest, {big.name}, outputs {big.output_shape}: "
                                           f"{gib(FLOAT * batch * math.prod(big.output_shape))} a batch); this "
                                           f"machine has {have / 2**30:.0f} GiB: use smaller layers or a smaller "
                                           "train.batch_size"))

"""Spec -> torch modules, with shape inference layer by layer.

The layer table (BUILDERS) and its builders are in layers.py, the modules they make in
modules.py and attention.py. Everything is first built on the meta device, so shapes and
parameter counts are known (and absurd sizes refused) before any weight is allocated;
then the module is materialised and initialised on the CPU.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import suggest
from ..spec import layers as L
from ..spec import validate_layers
from ..spec.root import substitute
from .budget import check_layers, check_size  # noqa: F401 (check_size: the kinds call it from here)
from .layers import (BUILDERS, KEEPS_SEQUENCE, MAKES_SEQUENCE, MULTI_INPUT, TOKEN_LAYERS, Bad,
                     activation, init_weights, on_meta)
from .modules import Add, Concat, Graph, Recurrent, Repeat, Reshape

__all__ = ["BUILDERS", "Bad", "Compiled", "Graph", "Recurrent", "Row", "check_size",
           "compile_network", "materialize", "format_summary", "on_meta", "Add", "Concat", "Reshape"]

Shape = tuple


# --- compiling one network ---
@dataclass
class Row:
    name: str
    type: str
    output_shape: list
    parameters: int
    trainable: int


@dataclass
class Compiled:
    module: nn.Module
    rows: list[Row]
    input_shape: tuple
    output_shape: tuple
    inits: list = field(default_factory=list)  # (module, init spec), applied after materialising

    @property
    def parameters(self):
        return sum(r.parameters for r in self.rows)

    @property
    def trainable(self):
        return sum(r.trainable for r in self.rows)

    def report(self, kind="network") -> dict:
        return {"kind": kind, "parameters": self.parameters, "trainable_parameters": self.trainable,
                "input_shape": list(self.input_shape), "output_shape": list(self.output_shape),
                "layers": [r.__dict__ for r in self.rows]}


def _count(m: nn.Module) -> tuple[int, int]:
    ps = list(m.parameters())
    return sum(p.numel() for p in ps), sum(p.numel() for p in ps if p.requires_grad)


class _Builder:
    """Walks one layer list, collecting every problem it can (a branch after a bad layer
    is skipped, since its input shape is unknown). A node's kind is "long" (token ids),
    "seq" (a float sequence [time, features]) or "float" (anything else)."""

    def __init__(self, spec, network, path: tuple, ctx: dict, problems: list):
        self.spec, self.network, self.ctx, self.problems = spec, network, ctx, problems
        self.path = path
        self.inits = []
        self.uses: list[str] = []  # the block uses being built, for problems inside blocks
        scales = getattr(network, "scales", None)
        self.scale = network.chosen_scale if scales else None
        self.fixed = _output_layer(network.layers) if self.scale else None

    def bad(self, path, msg):
        if self.uses:
            msg += " (" + "; ".join(self.uses) + ")"
        self.problems.append(self.spec.problem(path, msg))

    def chain(self, layers, lpath: tuple, in_shape, in_dtype, prefix="", stack=(), inputs=None):
        """Build a layer list; returns (Graph|None, rows, out_shape|None, out kind). `inputs`
        (a block's) maps input names to (shape, kind); the default is one, 'input'."""
        shapes = dict(inputs) if inputs else {"input": (in_shape, in_dtype)}
        nodes, rows = [], []
        counts: dict[str, int] = {}
        alias: dict[str, str] = {}  # item name -> the node holding its output (after its activation)
        prev = next(iter(shapes))
        names = set()
        for i, layer in enumerate(layers):
            where = lpath + (i, layer.type)
            kind = layer.use if layer.type == "block" else layer.type  # a block is named for what it uses
            counts[kind] = counts.get(kind, 0) + 1
            name = layer.name or f"{kind}_{counts[kind]}"
            if layer.name:
                if layer.name in names or layer.name in (inputs or ("input",)):
                    self.bad(lpath + (i, "name"), f"layer name '{layer.name}' is used twice; names must be unique")
                    prev = None
                    continue
                names.add(layer.name)
            while name in shapes:  # a generated name colliding with a user name
                name += "_"
            wanted = layer.inputs if layer.inputs is not None else [prev]
            wanted = [wanted] if isinstance(wanted, str) else wanted
            src = []
            for w in wanted:
                if w is None:  # the previous layer failed: skip silently
                    src = None
                    break
                real = alias.get(w, w)
                if real not in shapes:
                    first = list(inputs or ("input",))
                    known = {*first, *alias}
                    self.bad(lpath + (i, "inputs"),
                             f"unknown input '{w}'{suggest(w, known)} (inputs name earlier layers, or "
                             f"{' or '.join(map(repr, first))})")
                    src = None
                    break
                src.append(real)
            if src is None or any(shapes[s] is None for s in src):
                shapes[name] = None
                alias[layer.name or name] = name
                prev = layer.name or name
                continue
            in_shapes = [shapes[s][0] for s in src]
            dtypes = {shapes[s][1] for s in src}
            act = None
            try:
                if layer.type == "block":
                    module, out, sub_rows, dtype = self.block(layer, where, [shapes[s] for s in src],
                                                              prefix + name + ".", stack)
                    rows += sub_rows
                else:
                    module, out, dtype = self.one(layer, in_shapes, dtypes, len(src))
                    p, t = _count(module)
                    rows.append(Row(prefix + name, layer.type, list(out), p, t))
                    if getattr(layer, "init", None) is not None:
                        self.inits.append((module, layer.init))
                if math.prod(out) > 2**31:
                    raise Bad(f"output {list(out)} has {math.prod(out):.3g} values per sample; "
                              "that cannot fit in memory: use smaller sizes")
                act = getattr(layer, "activation", None)
                act = act if isinstance(act, L.Layer) else None  # a transformer's `activation` is torch's own
                amod = activation(act, out, self.ctx)[0] if act is not None else None
            except Bad as e:
                self.bad(where, str(e))
                shapes[name] = None
                alias[layer.name or name] = name
                prev = layer.name or name
                continue
            nodes.append((name, module, src))
            shapes[name] = (tuple(out), dtype)
            last = name
            if act is not None:
                aname = f"{name}_{act.type}"
                while aname in shapes:  # a user layer already has that name
                    aname += "_"
                nodes.append((aname, amod, [name]))
                shapes[aname] = (tuple(out), dtype)
                rows.append(Row(prefix + aname, act.type, list(out), 0, 0))
                last = aname
            alias[layer.name or name] = last
            prev = layer.name or name
        final = alias.get(prev, prev)
        if not nodes or shapes.get(final) is None:
            return None, rows, None, None
        return Graph(nodes, final, tuple(inputs or ("input",))), rows, shapes[final][0], shapes[final][1]

    def one(self, layer, in_shapes, dtypes, n_inputs):
        """Build one (non-block) layer: (module, out_shape, out kind)."""
        if layer.type not in MULTI_INPUT and n_inputs > 1:
            raise Bad(f"{layer.type} takes one input; merge several with add or concat first")
        if "long" in dtypes and layer.type not in TOKEN_LAYERS:
            raise Bad(f"{layer.type} gets token ids (input_dtype: long); put an embedding layer first")
        if layer.type in TOKEN_LAYERS and dtypes != {"long"}:
            raise Bad("embedding reads token ids: set model.input_dtype: long "
                      "and put the embedding first")
        if self.scale is not None and layer is not self.fixed:
            layer = scaled(layer, self.scale)
        seq = dtypes == {"seq"}
        shape = in_shapes if layer.type in MULTI_INPUT else in_shapes[0]
        with on_meta():
            try:
                module, out = BUILDERS[layer.type](layer, shape, {**self.ctx, "sequence": seq})
            except (RuntimeError, ValueError, OverflowError, TypeError) as e:
                if isinstance(e, TypeError) and "overflow" not in str(e).lower():
                    raise  # a bug, not a spec problem
                if "overflow" in str(e).lower():
                    raise Bad("its sizes are too large to be represented at all; "
                              "use smaller sizes") from None
                raise Bad(f"cannot be built on an input of {list(shape)}: "
                          f"{str(e).splitlines()[0]}; check its sizes") from None
        makes = layer.type in MAKES_SEQUENCE or (layer.type in ("rnn", "lstm", "gru") and layer.output == "sequence")
        keeps = seq and layer.type in KEEPS_SEQUENCE
        return module, out, "seq" if (makes or keeps) and len(out) == 2 else "float"

    def block(self, layer: L.Block, where, ins, prefix, stack):
        blocks = self.network.blocks
        if layer.use not in blocks:
            where = ".".join(map(str, self.path)) + ".blocks"
            raise Bad(f"unknown block '{layer.use}'{suggest(layer.use, blocks) if blocks else f'; define it under {where}'}")
        if layer.use in stack:
            raise Bad(f"block '{layer.use}' uses itself (through {' -> '.join(stack)})")
        definition = blocks[layer.use]
        params = getattr(definition, "params", None)
        names = list(getattr(definition, "inputs", None) or ["input"])
        in_shapes = [i[0] for i in ins]
        if len(in_shapes) != len(names):
            if len(names) == 1:
                raise Bad(f"block '{layer.use}' takes one input, but this use gives {len(in_shapes)} "
                          "(a block that declares `inputs: [x, y]` takes several)")
            raise Bad(f"block '{layer.use}' takes {len(names)} inputs ({', '.join(names)}), "
                      f"but this use gives {len(in_shapes)}; name them in `inputs: [...]`")
        if len(names) > 1 and layer.repeat > 1:
            raise Bad("a block with several inputs cannot repeat (each copy would get only the "
                      "previous copy's output)")
        shape, dtype = ins[0]
        if params is None and (layer.params or layer.each):
            raise Bad(f"block '{layer.use}' has no params, so a use passes no params or each; "
                      f"declare them in {'.'.join(map(str, self.path))}.blocks.{layer.use}.params")
        for key in [*layer.params, *(k for e in layer.each for k in e)]:
            if key not in (params or {}):
                raise Bad(f"block '{layer.use}' has no parameter '{key}'{suggest(key, params or {})}")
        bpath = self.path + ("blocks", layer.use) + (("layers",) if params is not None else ())
        repeat = layer.repeat
        if self.scale is not None and repeat > 1:
            repeat = max(round(repeat * self.scale.depth), 1)
        if repeat > MAX_REPEAT:  # each copy is real modules: refuse before building a million
            raise Bad(f"repeat {repeat} makes {repeat:,} copies of block '{layer.use}'; at most {MAX_REPEAT:,}")
        parts, rows = [], []
        use = dotted_use(where)
        line = self.spec.problem(where, "").line
        for r in range(repeat):
            before = len(self.problems)
            sub_prefix = prefix + (f"{r}." if repeat > 1 else "")
            note = f"in block '{layer.use}' used at {use}" + (f", line {line}" if line else "") + (
                f", repeat {r + 1} of {repeat}" if repeat > 1 else "")
            self.uses.append(note)
            try:
                layers = definition
                if params is not None:
                    values = {**params, **layer.params, **(layer.each[r] if r < len(layer.each) else {})}
                    layers, found = validate_layers(self.spec, substitute(definition._raw, values), bpath)
                    for p in found:
                        p.message += f" ({'; '.join(self.uses)})"
                    self.problems += found
                if layers is None:
                    g = None
                else:
                    named = {names[0]: (shape, dtype), **dict(zip(names[1:], ins[1:]))}
                    g, sub_rows, out, dtype = self.chain(layers, bpath, shape, dtype, sub_prefix,
                                                         stack + (layer.use,), named)
            finally:
                self.uses.pop()
            if g is None:
                if len(self.problems) == before:
                    raise Bad(f"block '{layer.use}' is empty")
                raise Bad(f"block '{layer.use}' (repeat {r + 1} of {repeat}) does not fit its input "
                          f"{list(shape)}; see the problems reported in it")
            parts.append(g)
            rows += sub_rows
            shape = out
        module = parts[0] if len(parts) == 1 else Repeat(*parts)
        return module, shape, rows, dtype


MAX_REPEAT = 1000


def dotted_use(path: tuple) -> str:
    return ".".join(str(p) for p in path[:-1])  # the item, without its component tag


# the sizes a scale's width multiplies, per layer type
WIDTH_FIELDS = {"linear": "out_features", "conv1d": "out_channels", "conv2d": "out_channels",
                "conv_transpose2d": "out_channels", "embedding": "embedding_dim", "rnn": "hidden_size",
                "lstm": "hidden_size", "gru": "hidden_size", "transformer_encoder_layer": "dim_feedforward",
                "transformer_decoder_layer": "dim_feedforward"}


def _output_layer(layers):
    """The last weighted layer of a network's own list: its size is the output's, never scaled."""
    for layer in reversed(layers):
        if layer.type in WIDTH_FIELDS:
            return layer
        if layer.type == "block":
            return None
    return None


def scaled(layer, scale):
    """The layer with its width multiplied as Ultralytics does: min(n, max_channels) * width,
    rounded up to a multiple of round_to."""
    field_name = WIDTH_FIELDS.get(layer.type)
    n = getattr(layer, field_name, None) if field_name else None
    if not isinstance(n, int) or scale.width == 1 and scale.max_channels is None:
        return layer
    if scale.max_channels is not None:
        n = min(n, scale.max_channels)
    n = max(math.ceil(n * scale.width / scale.round_to) * scale.round_to, scale.round_to)
    return layer.model_copy(update={field_name: n})


def compile_network(spec, network, path: tuple, problems: list, ctx: dict,
                    input_shape=None) -> Compiled | None:
    """Build one network on the meta device. Adds to `problems`; None if it failed."""
    shape = input_shape or network.input_shape
    if shape is None:
        problems.append(spec.problem(path, "input_shape is required (one sample's shape, no batch "
                                           "dimension, e.g. [1, 28, 28])"))
        return None
    if not check_layers(spec, network, path, problems):  # before building anything
        return None
    b = _Builder(spec, network, path, ctx, problems)
    before = len(problems)
    graph, rows, out, _ = b.chain(network.layers, path + ("layers",), tuple(shape), network.input_dtype)
    if graph is None or len(problems) > before:
        return None
    if network.input_dtype == "long" and ctx.get("pad_index") is not None:
        graph.pad_index = ctx["pad_index"]
    return Compiled(graph, rows, tuple(shape), tuple(out), b.inits)


def materialize(compiled: Compiled, seed: int | None = None) -> nn.Module:
    """Allocate the meta module on the CPU and initialise it (seeded)."""
    if seed is not None:
        torch.manual_seed(seed)
    module = compiled.module.to_empty(device="cpu")
    for m in module.modules():
        if m is not module and hasattr(m, "reset_parameters"):
            m.reset_parameters()
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.reset_running_stats()
    for m, init in compiled.inits:
        init_weights(m, init)
    return module


def format_summary(rep: dict, title: str = "") -> str:
    """A Keras-like summary table."""
    lines = []
    nets = rep.get("networks") or {"": rep}
    for net_name, net in nets.items():
        rows = [(r["name"], r["type"], str(r["output_shape"]), f"{r['parameters']:,}") for r in net["layers"]]
        head = ("Layer", "Type", "Output shape", "Params")
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
        fmt = "  ".join(f"{{:{'>' if i == 3 else '<'}{w}}}" for i, w in enumerate(widths))
        rule = "-" * (sum(widths) + 6)
        if net_name:
            lines.append(f"{net_name}:")
        lines += [fmt.format(*head), rule]
        lines.append(fmt.format("input", "input", str(net["input_shape"]), "0"))
        lines += [fmt.format(*r) for r in rows]
        lines.append(rule)
        if net_name:
            lines.append(f"{net_name} parameters: {net['parameters']:,} (trainable {net['trainable_parameters']:,})")
            lines.append("")
    lines.append(f"Total parameters:     {rep['parameters']:,}")
    lines.append(f"Trainable parameters: {rep['trainable_parameters']:,}")
    lines.append(f"Non-trainable:        {rep['parameters'] - rep['trainable_parameters']:,}")
    if title:
        lines.insert(0, title)
    return "\n".join(lines)

"""Spec errors: every problem found, each pointing at FILE:LINE:COL and a spec path."""
from __future__ import annotations

class Problem:
    """One thing wrong with a spec. (A plain class: `netspec --help` must stay cheap.)"""

    def __init__(self, path: str, message: str, file: str = "<spec>", line: int | None = None,
                 col: int | None = None):
        self.path = path  # dotted path as written in the file, e.g. "model.layers.2.conv2d"
        self.message, self.file, self.line, self.col = message, file, line, col

    def __repr__(self) -> str:
        return f"Problem({str(self)!r})"

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}:{self.col or 1}"
        return f"{where}: {self.path or '<top>'}: {self.message}"


class SpecError(Exception):
    """A wrong spec (or command line). Exit code 2; printed one problem per line."""

    def __init__(self, problems: list[Problem]):
        # in the order of the file, as an editor lists them (checks run in several passes);
        # problems without a position (the spec as a whole) first
        files = {p.file for p in problems}
        if len(files) == 1:
            problems = sorted(problems, key=lambda p: (p.line or 0, p.col or 0))
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class RunError(Exception):
    """A run that failed (diverged loss, failed trial). Exit code 1."""


# How messages name options: the `netspec` command sets "cli" (`--resume`); a Python caller
# keeps "python" (`resume=True`), so an error names what the reader can actually change.
FLAVOUR = "python"


def arg(name: str) -> str:
    """An option's name as this caller writes it: `--dry-run` or `dry_run`."""
    return "--" + name.replace("_", "-") if FLAVOUR == "cli" else name


def option(name: str, value="True") -> str:
    """An option as this caller gives it: `--overwrite` / `--out DIR` on the command line,
    `overwrite=True` / `out=DIR` in Python. `value` is shown as written."""
    if FLAVOUR == "cli":
        return arg(name) if value == "True" else f"{arg(name)} {value}"
    return f"{name}={value}"


def override(text: str) -> str:
    """A spec override as this caller gives it: `--set name=x`, or netspec.load(..., ["name=x"])."""
    return f"--set {text}" if FLAVOUR == "cli" else f'netspec.load(..., ["{text}"])'


# what other libraries (Keras, TFLearn, PyTorch) call a component netspec names otherwise;
# keys are squashed: lower case, no '_' or '-'
KNOWN_AS = {
    "dense": "linear", "fullyconnected": "linear", "fc": "linear",
    "simplernn": "rnn", "upsampling1d": "upsample", "upsampling2d": "upsample",
    "batchnormalization": "batch_norm", "layernormalization": "layer_norm", "concatenate": "concat", "maxpooling1d": "max_pool1d",
    "maxpooling2d": "max_pool2d", "averagepooling1d": "avg_pool1d", "averagepooling2d": "avg_pool2d",
    "avgpooling2d": "avg_pool2d",
    "batchnorm1d": "batch_norm", "batchnorm2d": "batch_norm", "spatialdropout2d": "dropout2d",
    "conv2dtranspose": "conv_transpose2d", "deconv2d": "conv_transpose2d", "logsoftmax": "log_softmax",
    "leakyrelu": "leaky_relu", "swish": "silu", "categoricalcrossentropy": "cross_entropy",
    "sparsecategoricalcrossentropy": "cross_entropy", "crossentropyloss": "cross_entropy",
    "binarycrossentropy": "bce", "meansquarederror": "mse", "nllloss": "nll",
    # global pools reduce a whole axis: never point them at a windowed pool (a different layer)
    "globalaveragepooling1d": "global_avg_pool", "globalaveragepool1d": "global_avg_pool",
    "globalaveragepooling2d": "global_avg_pool", "globalaveragepool2d": "global_avg_pool",
    "globalaveragepool": "global_avg_pool", "globalavgpool1d": "global_avg_pool",
    "globalavgpool2d": "global_avg_pool", "globalavgpooling1d": "global_avg_pool",
    "globalmaxpooling1d": "global_max_pool", "globalmaxpooling2d": "global_max_pool",
    "globalmaxpool1d": "global_max_pool", "globalmaxpool2d": "global_max_pool",
    "multiheadattention": "multi_head_attention", "mha": "multi_head_attention",
    "attention": "multi_head_attention", "transformerencoder": "transformer_encoder_layer",
    "transformerblock": "transformer_encoder_layer", "transformerdecoder": "transformer_decoder_layer",
    "positionalencoding": "position_embedding", "positionalembedding": "position_embedding",
    "tokenandpositionembedding": "position_embedding", "sinusoidalpositionalencoding": "position_embedding",
}


def _squash(word: str) -> str:
    return word.lower().replace("_", "").replace("-", "")


def suggest(word: str, choices) -> str:
    """' (did you mean 'x'?)' for the closest valid name, or a list when nothing is close.
    Case, '_' and other libraries' names for the same thing (Dense, MaxPooling2D) are seen through."""
    import difflib
    choices = sorted(set(map(str, choices)))
    known = KNOWN_AS.get(_squash(str(word)))
    # another library's name for a component is certain; spelling closeness is a guess
    close = [known] if known in choices else difflib.get_close_matches(str(word), choices, n=1, cutoff=0.6)
    if not close:
        squashed = {_squash(c): c for c in choices}
        if _squash(str(word)) in squashed:
            close = [squashed[_squash(str(word))]]
        else:
            close = [squashed[m] for m in difflib.get_close_matches(_squash(str(word)), squashed, n=1, cutoff=0.7)]
    if close:
        return f"; did you mean '{close[0]}'?"
    if len(choices) <= 12:
        return "; valid: " + ", ".join(choices)
    return ""

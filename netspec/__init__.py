"""netspec: declare a neural network and its training in YAML.

    spec = netspec.load("specs/digits_cnn.yaml", ["train.epochs=3"])
    model = netspec.build(spec)          # a plain torch.nn.Module
    result = netspec.train(spec, out="runs")
    run = netspec.load_run("runs/digits-cnn")   # predict / sample / translate with a trained run

`import netspec` is cheap: torch is imported only when building or training.
"""
from .errors import RunError, SpecError

__version__ = "0.1.0"
__all__ = ["load", "build", "train", "load_run", "SpecError", "RunError"]


def load(path_or_text, overrides=()):
    """Read and validate a spec (a file path, YAML text or a dict); `overrides` are
    'PATH=VALUE' strings as for --set. Raises SpecError listing every problem."""
    from .spec import load as _load
    return _load(path_or_text, list(overrides))


def build(spec, **context):
    """The torch.nn.Module of a network spec (for a GAN or seq2seq: a module holding each network)."""
    from .kinds import build as _build
    return _build(spec, **context)


def train(spec, out="runs", **kw):
    """Train a spec (or run its sweep); returns the result with `.metrics`."""
    if spec.sweep is not None and kw.get("folder") is None:
        from .sweep import run_sweep
        progress = kw.pop("progress", True)
        return run_sweep(spec, out=out, quiet=not progress, **kw)
    from .engine.runs import run
    return run(spec, out=out, **kw)


def load_run(run_dir, checkpoint="best", device="cpu"):
    """A trained run folder loaded for inference: `.spec`, `.model` on `device`, and
    `.predict(x)` (with the run's own preprocessing), `.sample()`, `.translate()`."""
    from .infer import load_run as _load_run
    return _load_run(run_dir, checkpoint, device)

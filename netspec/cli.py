"""The `netspec` command. Thin: each command parses its options and calls the library.
Heavy imports (torch) happen inside the commands that need them."""
from __future__ import annotations

import functools
import json
import sys

import click

from .errors import RunError, SpecError


def _fail(code: int, lines: list[str]):
    for line in lines:
        click.echo(line, err=True)
    sys.exit(code)


def handled(fn):
    """Spec errors exit 2 with FILE:LINE:COL lines; failed runs exit 1; no tracebacks
    unless --debug."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from . import errors
        debug = click.get_current_context().find_root().params.get("debug")
        flavour, errors.FLAVOUR = errors.FLAVOUR, "cli"  # messages name --options, not Python arguments
        try:
            return fn(*args, **kwargs)
        except SpecError as e:
            if debug:
                raise
            n = len(e.problems)
            _fail(2, [str(p) for p in e.problems]
                  + ([f"{n} problems found."] if n > 1 else []))
        except RunError as e:
            if debug:
                raise
            _fail(1, [f"error: {e}"])
        except KeyboardInterrupt:
            _fail(130, ["interrupted"])
        except MemoryError:  # what the size checks could not foresee (data, a huge sample request)
            if debug:
                raise
            _fail(1, ["error: out of memory: this machine cannot hold what was asked for; use smaller "
                      "layers, data or train.batch_size (--debug shows where)"])
        finally:
            errors.FLAVOUR = flavour  # an in-process caller (a test, a notebook) keeps its own
    return wrapper


# Option names, one scheme for every command: --out DIR names a folder (train's run folders),
# -o/--output FILE names a file (predict's predictions, sample's image or array, export's model).
OUTPUT_FILE = click.option("-o", "--output", default=None, metavar="FILE",
                           help="File to write: .png (an image grid) or .npy (an array).")


def deprecated(old: str, name: str):
    """An old spelling kept working, hidden from --help; its value arrives as `name`, to be
    merged with the new option by `renamed`."""
    return click.option(old, name, default=None, hidden=True, help="Deprecated.")


def renamed(new_value, old_value, old: str, new: str):
    """The value of an option given by its new or its deprecated spelling (with a warning)."""
    if old_value is None:
        return new_value
    if new_value is not None:
        raise click.UsageError(f"give {new} only, not also {old} (its deprecated spelling)")
    click.echo(f"warning: {old} is deprecated here; use {new} (--out names folders, as in "
               "train --out DIR)", err=True)
    return old_value


SET = click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE",
                   help="Override one value (dotted path, YAML value), e.g. --set train.epochs=2. Repeatable.")
SCALE = click.option("--scale", metavar="NAME", default=None,
                     help="Size of a scaled family to use, one of the spec's model.scales "
                          "(the same as --set model.scale=NAME).")


def _with_scale(overrides, scale):
    return (f"model.scale={scale}", *overrides) if scale else overrides


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show Python tracebacks on errors.")
@click.version_option(package_name="netspec")
def main(debug):
    """Declare a neural network and its training in YAML; build, train and sweep it.

    \b
      netspec build specs/digits_cnn.yaml        validate and summarise
      netspec train specs/digits_cnn.yaml        train, logging to runs/<name>/
      tensorboard --logdir runs                  watch it
    """


@main.command()
@click.argument("spec_file", metavar="SPEC")
@SET
@SCALE
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
@handled
def build(spec_file, overrides, scale, as_json):
    """Validate SPEC, infer every shape and print a summary of the network."""
    from . import spec as S
    spec = S.load(spec_file, _with_scale(overrides, scale))
    from .compiler import format_summary
    from .kinds import report
    rep = report(spec)
    if as_json:
        click.echo(json.dumps(rep, indent=2))
    else:
        click.echo(format_summary(rep, f"{spec.name} ({spec.kind})"))
        for note in rep.get("notes", []):
            click.echo(f"note: {note}")


@main.command()
def schema():
    """Print the JSON Schema of the spec format (for editor completion)."""
    from .spec.schema import json_schema
    click.echo(json.dumps(json_schema(), indent=2))


@main.command()
@click.argument("spec_file", metavar="SPEC")
@SET
@SCALE
@click.option("--out", default="runs", show_default=True, metavar="DIR", help="Folder that holds the run folders.")
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint in OUT/<name>/ "
                                             "(a sweep: skip finished trials, resume the rest).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1),
              help="Sweep trials run at once, each in its own process.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where sweep trials run: local processes, or a Ray cluster (RAY_ADDRESS or a local one).")
@click.option("--nproc", type=click.IntRange(1), default=1, show_default=True,
              help="Data-parallel processes for one run (DistributedDataParallel).")
@click.option("--overwrite", is_flag=True, help="Delete an earlier run in OUT/<name>/ and start afresh "
                                                "(without it, an existing run folder is refused).")
@click.option("--dry-run", is_flag=True, help="Validate and list what would run, then stop.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@handled
def train(spec_file, overrides, scale, out, resume, overwrite, workers, executor, nproc, dry_run, quiet):
    """Train SPEC; write TensorBoard logs, checkpoints, spec.yaml and metrics.json
    into OUT/<name>/ (a sweep: one folder per trial plus results.csv)."""
    if resume and overwrite:
        raise click.UsageError("--resume continues a run and --overwrite deletes it: pick one")
    from . import spec as S
    overrides = _with_scale(overrides, scale)
    spec = S.load(spec_file, overrides)
    if spec.sweep is not None:
        if nproc > 1:
            raise click.UsageError("--nproc trains one run on several processes; a sweep runs trials in "
                                   "parallel with --workers N instead")
        from .sweep import run_sweep
        result = run_sweep(spec, out=out, workers=workers, executor=executor, resume=resume,
                           dry_run=dry_run, quiet=quiet, overwrite=overwrite)
        if result is not None and result.failed:
            raise RunError(f"{result.failed} of {len(result.trials)} trials failed; see {result.folder}/results.csv")
        return
    if dry_run:
        from .kinds import compile_spec
        compile_spec(spec)
        click.echo(f"{spec_file}: valid; would train '{spec.name}' into {out}/{spec.name}/")
        return
    from .engine.distributed import launch, rank_env, run_rank
    if nproc > 1:
        launch(spec_file, overrides, out=out, nproc=nproc, resume=resume, overwrite=overwrite, quiet=quiet)
        return
    if rank_env():  # one of several data-parallel ranks (started by --nproc or torchrun)
        run_rank(spec, out=out, resume=resume, overwrite=overwrite, progress=not quiet, report=True)
        return
    from .engine.runs import run
    run(spec, out=out, resume=resume, overwrite=overwrite, progress=not quiet, report=True)


@main.command()
@click.argument("run_dir", metavar="RUN")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default=None,
              help="Split to evaluate  [default: test; val where the data has no test split. A GAN reports "
                   "the quality of its samples, plus D's view of the split's real samples]")
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="best", show_default=True)
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE",
              help="Override the run's spec, e.g. to point data.source at other files.")
@handled
def evaluate(run_dir, split, checkpoint, overrides):
    """Evaluate a trained run's checkpoint on a split of its data; print the metrics as JSON."""
    from .engine.runs import evaluate_run
    metrics = evaluate_run(run_dir, split=split, which=checkpoint, overrides=overrides)
    click.echo(json.dumps(metrics, indent=2))


@main.command()
@click.argument("run_dir", metavar="RUN")
@click.argument("inputs", required=False)
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="best", show_default=True)
@click.option("-o", "--output", default="-", metavar="FILE", help="File for the predictions (default: stdout).")
@handled
def predict(run_dir, inputs, checkpoint, output):
    """Run a trained checkpoint on INPUTS and write one JSON line per sample: .npz (key x),
    .npy or .csv of features, PNG/JPEG images or a folder of them; text models (sequence
    classifier, language model, seq2seq): a text file, or stdin, one text per line."""
    from .infer.commands import predict_run
    predict_run(run_dir, inputs, which=checkpoint, output=output)


@main.command()
@click.argument("run_dir", metavar="RUN")
@click.option("--format", "fmt", type=click.Choice(["onnx", "torchscript", "safetensors"]), default="onnx",
              show_default=True, help="onnx: runs in onnxruntime without torch or netspec; torchscript: "
                                      "traced graphs; safetensors: the weights for netspec.build(spec).")
@click.option("--output", "-o", default=None,
              help="File to write  [default: RUN/<name>.onnx, .torchscript.pt or .safetensors]")
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="best", show_default=True)
@handled
def export(run_dir, fmt, output, checkpoint):
    """Write a trained run for use outside netspec. ONNX: the run's preprocessing is inside
    the graph and its first output is what `netspec predict` reports; the file is checked
    with onnx.checker and against torch in onnxruntime. seq2seq: an encoder and a one-step
    decoder; vocabularies and classes go to <name>.json beside the graphs."""
    from .infer.export import export as _export
    _export(run_dir, fmt, output, checkpoint, say=click.echo)


@main.command()
@click.argument("run_dir", metavar="RUN")
@click.option("-n", "--n", "n", default=None, type=click.IntRange(1),
              help="How many samples  [default: 64 images for a GAN, 1 text for a language model]")
@OUTPUT_FILE
@deprecated("--out", "old_out")
@click.option("--temperature", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="Lower is more conservative: a language model divides its logits by it (0: always the "
                   "most likely token); a GAN scales its noise (above 0).")
@click.option("--prime", default="", help="Language model: text to start from.")
@click.option("--length", default=200, show_default=True, type=click.IntRange(1))
@click.option("--label", type=int, default=None, help="Conditional GAN: the class to generate.")
@click.option("--seed", type=int, default=0, show_default=True)
@handled
def sample(run_dir, n, output, old_out, temperature, prime, length, label, seed):
    """Generate from a trained run: a GAN's samples (-o grid.png, or an array -o x.npy;
    default RUN/samples.png), or a language model's text (printed)."""
    output = renamed(output, old_out, "--out", "-o/--output FILE")
    from .infer.commands import sample_run
    sample_run(run_dir, n=n, out=output, temperature=temperature, prime=prime, length=length,
               label=label, seed=seed)


if __name__ == "__main__":
    main()

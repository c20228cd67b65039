"""`netspec predict` and `netspec sample`: a Run's answers written where the user asked."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..errors import Problem, SpecError, arg
from . import inputs as I
from .run import load_run


def predict_run(run_dir, inputs, which="best", output="-"):
    """One JSON line per sample (networks), or one translation per line (seq2seq)."""
    I.check_output(output)
    run = load_run(run_dir, which)
    if run.kind == "gan":
        raise SpecError([Problem("kind", "a GAN does not predict; generate samples with 'netspec sample'",
                                 str(run_dir))])
    if run.kind == "seq2seq":
        from ..data.text import read_lines
        outputs = run.translate(read_lines(inputs))
        I.write("".join(o + "\n" for o in outputs), output)
        return outputs
    prediction = run.predict(inputs)
    I.write(prediction.jsonl(), output)
    return prediction


def sample_run(run_dir, which="last", n=None, out=None, temperature=1.0, prime="", length=200, label=None,
               seed=0):
    """A GAN: n samples as a PNG grid (image data) or a .npy array in the data's range. A
    language model: n texts, printed or written to `out`."""
    run = load_run(run_dir, which)
    if run.language_model:
        return _texts(run, n or 1, out, temperature, prime, length, label, seed)
    if run.kind != "gan":
        raise SpecError([Problem("kind", f"'{run.kind}' runs cannot be sampled; 'netspec sample' is for "
                                         "GANs and language models", str(run_dir))])
    from ..kinds.gan import grid, is_image, write_png
    n = n or 64
    if prime:
        raise SpecError([Problem(arg("prime"), f"{arg('prime')} is for language models; a GAN starts from noise",
                                 "netspec sample")])
    g = run.spec.gan
    if label is not None and not g.conditional:
        raise SpecError([Problem(arg("label"), "this GAN is not conditional (gan.conditional is false), so it "
                                            f"cannot be asked for a class; drop {arg('label')}", str(run_dir))])
    if label is not None and not 0 <= label < g.classes:
        names = f" ({', '.join(map(str, run.classes))})" if run.classes else ""
        raise SpecError([Problem(arg("label"), f"label {label} is outside 0..{g.classes - 1}{names}", str(run_dir))])
    out = Path(out) if out else Path(run_dir) / "samples.png"
    shape = tuple(run.info["shape"])
    if out.suffix not in (".png", ".npy") or (out.suffix == ".png" and not is_image(shape)):
        why = "" if is_image(shape) else f"; samples {list(shape)} are not images, so write .npy"
        where = "-o/--output" if arg("out") == "--out" else "out"  # the file option's name on the CLI, in Python
        raise SpecError([Problem(where, f"{out}: write a .png (image grid) or .npy (array){why}", "netspec sample")])
    samples = run.sample(n, temperature, label, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npy":
        np.save(out, samples)
    else:
        lo, hi = run.scale.low, run.scale.high
        pixels = ((torch.from_numpy(samples) - lo) / (hi - lo)).clamp(0, 1)
        columns = g.classes if g.conditional and label is None else math.ceil(math.sqrt(n))
        write_png(out, grid(pixels, columns))
    what = f" of class {label}" if label is not None else ""
    print(f"wrote {n} samples{what} to {out}")
    return out


def _texts(run, n, out, temperature, prime, length, label, seed) -> list[str]:
    if label is not None:
        raise SpecError([Problem(arg("label"), f"{arg('label')} is for conditional GANs; a language model takes "
                                 f"{arg('prime')}",
                                 "netspec sample")])
    texts = run.sample(n, temperature, prime=prime, length=length, seed=seed)
    body = texts[0] if n == 1 else "\n".join(f"--- sample {i + 1} ---\n{t}" for i, t in enumerate(texts))
    if out:
        Path(out).write_text(body + "\n", encoding="utf-8")
        print(f"wrote {n} sample{'s' if n > 1 else ''} to {out}")
    else:
        print(body)
    return texts

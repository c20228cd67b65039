"""What `predict` reads, checked before the model sees it.

Files: .npz (the run's x key, or 'x', or its only array), .npy, .csv with a header (a run
trained on a CSV picks its feature columns by name), PNG/JPEG images and folders of them
(through Pillow, converted to the model's [channels, height, width] and to the training
data's value range). Every problem is a SpecError naming the file and, for bad values,
the row; values far outside what the model was trained on get a warning naming the range.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from ..errors import Problem, SpecError

IMAGES = {".png", ".jpg", ".jpeg"}
ARRAYS = {".npz", ".npy", ".csv"}


def fail(path, message):
    raise SpecError([Problem("inputs", message, str(path))])


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def read(path, spec, value_range=None) -> tuple[np.ndarray, list[str] | None]:
    """(samples as float32 [N, ...], file names when the samples are images) from a file or folder."""
    if path is None or str(path) == "-":
        fail("netspec predict", "name the inputs to predict: a .npz (key x), .npy or .csv file, "
                                "or PNG/JPEG images or a folder of them")
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGES and f.is_file())
        if not files:
            fail(path, "this folder holds no .png, .jpg or .jpeg images")
        return images(files, spec, value_range), [str(f) for f in files]
    if not p.exists():
        fail(path, "no such file")
    if not p.is_file():
        fail(path, "not a regular file")
    suffix = p.suffix.lower()
    if suffix in IMAGES:
        return images([p], spec, value_range), [str(p)]
    if suffix not in ARRAYS:
        fail(path, "predict reads .npz, .npy or .csv files, PNG/JPEG images, or a folder of images")
    try:
        arr = _csv(p, spec) if suffix == ".csv" else _numpy(p, spec)
    except (ValueError, OSError, EOFError, IndexError) as e:  # (EOFError: click would say only "Aborted!")
        why = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        fail(path, f"not readable as numeric {suffix} data: {why}")
    if arr.dtype.kind not in "iufb":
        fail(path, f"holds {arr.dtype} values; predict needs numbers")
    if arr.ndim == 0:
        fail(path, "holds a single number; it needs one row per sample ([samples, features...])")
    if len(arr) == 0:
        fail(path, f"holds no samples (shape {list(arr.shape)})")
    return np.asarray(arr, dtype=np.float32), None


def _numpy(p: Path, spec):
    if p.stat().st_size == 0:
        raise ValueError("the file is empty")
    f = np.load(p, allow_pickle=False)
    if isinstance(f, np.ndarray):  # np.load reads the contents, whatever the name says
        return f
    src = spec.data.source if spec.data is not None else None
    key = src.x if src is not None and src.type == "npz" else "x"
    if key not in f.files and len(f.files) != 1:
        fail(p, f"no array '{key}' in it (it holds {', '.join(f.files) or 'nothing'})")
    return f[key if key in f.files else f.files[0]]


def _csv(p: Path, spec):
    import csv
    src = spec.data.source if spec.data is not None else None
    delimiter = src.delimiter if src is not None and src.type == "csv" else ","
    with open(p, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.reader(f, delimiter=delimiter) if r]
    if not rows:
        fail(p, "empty file")
    header, rows = rows[0], rows[1:]
    cols = list(range(len(header)))
    if src is not None and src.type == "csv":  # the run's feature columns, by name
        names = src.features or [h for h in header if h != src.target]
        missing = [n for n in names if n not in header]
        if missing:
            fail(p, f"no column {', '.join(map(repr, missing))} (the run was trained on {', '.join(names)})")
        cols = [header.index(n) for n in names]
    out = np.empty((len(rows), len(cols)), dtype=np.float32)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            try:
                out[i, j] = float(r[c])
            except (ValueError, IndexError):
                fail(p, f"row {i + 1} (line {i + 2}), column {header[c]!r}: "
                        f"{r[c]!r} is not a number" if c < len(r) else f"row {i + 1} has only {len(r)} fields")
    return out


def images(files: list[Path], spec, value_range=None) -> np.ndarray:
    """Images -> [N, C, H, W] float32 in the training data's range (0-1 without one): grey
    for one channel, RGB for three, resized to the model's height and width."""
    try:
        import PIL  # noqa: F401
    except ImportError:
        fail(files[0], "reading images needs Pillow: pip install pillow")
    shape = tuple(spec.model.input_shape) if spec.kind == "network" else ()
    if len(shape) == 2:  # [height, width]: one grey channel (fit_shape drops it again)
        shape = (1, *shape)
    if len(shape) != 3 or shape[0] not in (1, 3):
        fail(files[0], f"this model reads samples of shape {list(shape)}, not images ([1 or 3, height, width])")
    c, h, w = shape
    lo, hi = value_range if value_range is not None else (0.0, 1.0)
    from ..data.images import BadImage, read_image  # decoded and resized exactly as image_folder trains
    out = np.empty((len(files), c, h, w), dtype=np.float32)
    for i, f in enumerate(files):
        try:
            px = read_image(f, shape).astype(np.float32) / 255.0
        except BadImage as e:
            fail(f, e.why)
        out[i] = lo + px * (hi - lo)
    return out


def check_finite(x: np.ndarray, path) -> None:
    """NaN or inf would come out as NaN probabilities: refuse them, naming the first row."""
    bad = ~np.isfinite(x.reshape(len(x), -1))
    if bad.any():
        row, col = map(int, np.argwhere(bad)[0])
        rows = int(bad.any(1).sum())
        v = x.reshape(len(x), -1)[row, col]
        fail(path, f"row {row + 1} holds {v} (at value {col + 1} of the sample)"
                   + (f"; {rows} rows hold NaN or inf" if rows > 1 else "")
                   + ": replace or drop them; the model cannot predict from them")


def fit_shape(x, want: tuple, path):
    """Samples reshaped to the model's input (flat rows of an image's pixels are fine)."""
    if tuple(x.shape[1:]) == want:
        return x
    if x.ndim >= 1 and len(x) and math.prod(x.shape[1:]) == math.prod(want):
        return x.reshape(len(x), *want)
    fail(path, f"the samples have shape {list(x.shape[1:])}; the model reads {list(want)} (model.input_shape)")


def check_range(x: np.ndarray, value_range, path) -> None:
    """Warn when inputs lie far outside the training data's range (raw 0-16 or 0-255 pixels
    given to a model trained on 0-1 ones): the answers would be confidently wrong."""
    if value_range is None or not x.size:
        return
    lo, hi = value_range
    span = max(hi - lo, 1e-8)
    xlo, xhi = float(x.min()), float(x.max())
    if xlo < lo - 0.5 * span or xhi > hi + 0.5 * span:
        hint = f" (e.g. divide these by {xhi / hi:g})" if lo == 0 and xlo >= 0 and hi > 0 else ""
        warn(f"{path}: the inputs range over [{xlo:g}, {xhi:g}] but the model was trained on values in "
             f"[{lo:g}, {hi:g}]; scale them as the training data was{hint}, or the predictions mean little")


def check_output(output) -> None:
    """-o checked before any work: a folder or a missing folder is a clear error."""
    if output in (None, "-"):
        return
    p = Path(output)
    if p.is_dir():
        raise SpecError([Problem("-o", f"{output} is a folder; name a file to write, e.g. -o "
                                       f"{p / 'predictions.jsonl'}", "netspec predict")])
    if not p.parent.is_dir():
        raise SpecError([Problem("-o", f"the folder {p.parent} does not exist; create it or pick another path",
                                 "netspec predict")])


def write(text: str, output) -> None:
    """Predictions to stdout ('-') or a file."""
    if output in (None, "-"):
        sys.stdout.write(text)
        return
    check_output(output)
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as e:
        raise SpecError([Problem("-o", f"cannot write {output}: {e.strerror or e}", "netspec predict")]) from None

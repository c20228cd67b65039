"""Tables -> arrays: CSV and Parquet through pyarrow (imported only when a table is read).

Named feature columns and one target column. Every value is checked once, here: an empty,
missing, NaN, infinite or non-numeric value is refused naming its line (CSV) or row
(Parquet) and its column, and so are duplicate column names (which would otherwise
silently shadow each other)."""
from __future__ import annotations

import csv
import sys
from collections import Counter

import numpy as np

from .base import Arrays, _classes_of, _file, fail

_MISSING_WORDS = {"nan", "na", "n/a", "null", "none"}  # what pandas and R write for a missing value
_MAX_LABEL = 1 << 31


def _pyarrow(spec):
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        fail(spec, "reading tables needs pyarrow: pip install pyarrow", "path")
    import pyarrow as pa
    import pyarrow.compute as pc
    return pa, pc


class _Where:
    """How errors name a row: a CSV file line (found again by a Python reader, only when
    an error is reported) or a Parquet row index."""

    def __init__(self, path: str, delimiter: str | None = None):
        self.path, self.delimiter = path, delimiter

    def __call__(self, row: int) -> str:
        if self.delimiter is None:
            return f"{self.path} row {row} (0-based)"
        return f"{self.path} line {_line_of(self.path, self.delimiter, row)}"


def _big_fields():
    # the csv module stops at 131072 characters a field; a wide text cell is not an error
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def _line_of(path: str, delimiter: str, row: int) -> int:
    """The file line where data row `row` (0-based, blank lines skipped as pyarrow does) starts."""
    _big_fields()
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter=delimiter)
        seen, start = -1, 1
        for r in reader:
            if r and seen == row:
                return start
            if r:
                seen += 1
            start = reader.line_num + 1
    return start


def _header(spec, src) -> list[str]:
    _big_fields()
    try:
        with open(_file(spec, src.path), newline="", encoding="utf-8") as f:
            header = next((r for r in csv.reader(f, delimiter=src.delimiter) if r), None)
    except UnicodeDecodeError:
        fail(spec, f"{src.path} is not UTF-8 text", "path")
    except csv.Error as e:
        fail(spec, f"{src.path} line 1: {e}", "path")
    if header is None:
        fail(spec, f"{src.path} is empty; it needs a header row and data rows", "path")
    return [h.strip() for h in header]


def _check_names(spec, path: str, header: list[str], src) -> list[str]:
    """The columns to read (features, then the target), or an error naming what is wrong."""
    dup = [h for h, c in Counter(header).items() if c > 1]
    if dup:
        where = ", ".join(f"'{h}' (columns {', '.join(str(i + 1) for i, x in enumerate(header) if x == h)})"
                          for h in dup)
        fail(spec, f"{path} repeats column names: {where}; give every column its own name", "path")
    if src.target not in header:
        fail(spec, f"no column '{src.target}' in {path}; columns: {', '.join(header)}", "target")
    feats = src.features or [h for h in header if h != src.target]
    for name in feats:
        if name not in header:
            fail(spec, f"no column '{name}' in {path}; columns: {', '.join(header)}", "features")
    if src.target in feats:
        fail(spec, f"the target column '{src.target}' is also listed as a feature", "features")
    if not feats:
        fail(spec, f"{path} has no feature columns besides the target '{src.target}'", "features")
    return feats


def csv_file(src, spec) -> Arrays:
    header = _header(spec, src)
    feats = _check_names(spec, src.path, header, src)
    pa, pc = _pyarrow(spec)
    import pyarrow.csv as pcsv
    wanted = [*feats, src.target]
    # every column read as text: pyarrow's type guessing would make "NA" or "" a silent null
    opts = pcsv.ConvertOptions(column_types={h: pa.string() for h in wanted}, include_columns=wanted,
                               null_values=[], strings_can_be_null=False, quoted_strings_can_be_null=False)
    try:
        table = pcsv.read_csv(src.path, parse_options=pcsv.ParseOptions(delimiter=src.delimiter),
                              convert_options=opts)
    except pa.ArrowInvalid as e:
        fail(spec, _parse_error(src.path, src.delimiter, len(header), e), "path")
    except UnicodeDecodeError:
        fail(spec, f"{src.path} is not UTF-8 text", "path")
    if table.num_rows == 0:
        fail(spec, f"{src.path} has a header but no data rows", "path")
    return _arrays(spec, src, table, feats, _Where(src.path, src.delimiter), pa, pc)


def _parse_error(path: str, delimiter: str, width: int, e) -> str:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter=delimiter)
        for r in reader:
            if r and len(r) != width:
                return f"{path} line {reader.line_num} has {len(r)} fields, the header has {width}"
    return f"{path} cannot be read as CSV: {str(e).splitlines()[0][:300]}"


def parquet(src, spec) -> Arrays:
    p = _file(spec, src.path)
    pa, pc = _pyarrow(spec)
    import pyarrow.parquet as pq
    try:
        schema = pq.read_schema(p)
    except (pa.ArrowInvalid, OSError) as e:
        fail(spec, f"{src.path} is not a readable Parquet file: {str(e).splitlines()[0][:300]}", "path")
    header = list(schema.names)
    feats = _check_names(spec, src.path, header, src)
    try:
        table = pq.read_table(p, columns=[*feats, src.target])
    except (pa.ArrowInvalid, OSError) as e:
        fail(spec, f"{src.path} cannot be read: {str(e).splitlines()[0][:300]}", "path")
    if table.num_rows == 0:
        fail(spec, f"{src.path} has no rows", "path")
    return _arrays(spec, src, table, feats, _Where(src.path), pa, pc)


def _arrays(spec, src, table, feats, where, pa, pc) -> Arrays:
    x = np.empty((table.num_rows, len(feats)), dtype=np.float32)
    for j, name in enumerate(feats):
        x[:, j] = _numbers(spec, table.column(name), name, where, pa, pc, "features")
    target = table.column(src.target)
    task = src.task
    numeric = _castable(target, pa, pc)
    if task == "regression" or (task == "auto" and numeric is not None
                                and not np.all(np.mod(numeric[np.isfinite(numeric)], 1) == 0)):
        y = _numbers(spec, target, src.target, where, pa, pc, "target")
        return Arrays(x, y[:, None], "regression", checked=True)
    if numeric is not None:  # whole numbers: class indices
        y = _numbers(spec, target, src.target, where, pa, pc, "target", labels=True)
        return Arrays(x, y.astype(np.int64), "classification", checked=True)
    texts = target.cast(pa.string()) if target.type != pa.string() else target
    values = pc.utf8_trim_whitespace(texts).to_pylist()
    for i, v in enumerate(values):
        if v is None or v == "" or v.lower() in _MISSING_WORDS:
            fail(spec, f"{where(i)}, column '{src.target}': the label is "
                       f"{'empty' if not v else repr(v)} (a missing value); every row needs a label: "
                       "fill it in or drop the row", "target")
    y, names = _classes_of(values)
    return Arrays(x, y, "classification", names, checked=True)


def _castable(col, pa, pc):
    """The column as float64 numbers, or None when some value is not a number."""
    try:
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            col = pc.utf8_trim_whitespace(col)
        return col.cast(pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _numbers(spec, col, name, where, pa, pc, key, labels=False) -> np.ndarray:
    """A column as finite float32 numbers; else the first bad value, named by line/row and column."""
    v = _castable(col, pa, pc)
    if v is None or col.null_count:
        for i, raw in enumerate(col.to_pylist()):
            text = None if raw is None else str(raw).strip()
            if text is None or text == "":
                fail(spec, f"{where(i)}, column '{name}': the value is empty (a missing value); fill it in "
                           "or drop the row", key)
            try:
                float(text)
            except ValueError:
                shown = f"'{text}'" if len(text) <= 40 else f"'{text[:40]}...' ({len(text)} characters)"
                fail(spec, f"{where(i)}, column '{name}': {shown} is not a number"
                           + (" (list only numeric columns under 'features')" if key == "features" else ""), key)
        fail(spec, f"column '{name}' of {where.path} cannot be read as numbers", key)
    with np.errstate(over="ignore"):  # beyond float32: inf, reported below with the original text
        v32 = v.astype(np.float32)
    bad = ~np.isfinite(v32)
    if labels and not bad.any():
        bad = (v < 0) | (v >= _MAX_LABEL)
    if bad.any():
        i = int(np.argmax(bad))
        raw = str(col[i].as_py()).strip()
        if labels and np.isfinite(v[i]):
            why = ("a negative class label; labels are 0 or more" if v[i] < 0
                   else f"too large for a class index (classes are 0..N-1)")
        elif np.isnan(v[i]):
            why = "NaN (a missing value)" + ("; every row needs a label" if key == "target" else "")
        elif np.isinf(v[i]):
            why = "infinite"
        else:
            why = "too large for 32-bit floats (over 3.4e38)"
        fail(spec, f"{where(i)}, column '{name}': '{raw[:40]}' is {why}; netspec trains only on finite "
                   "numbers: fix the value or drop the row", key)
    return v32


SOURCES = {"csv": csv_file, "parquet": parquet}

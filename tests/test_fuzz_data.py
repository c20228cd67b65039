"""Property: whatever a data file holds (CSV cells that are empty, NaN, huge, quoted, ragged
or text; image files of random bytes; truncated Parquet and .npy files), loading it either
gives finite data or raises a clean SpecError naming the file, never another exception."""
from __future__ import annotations

import io
import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import netspec
from netspec import data as D
from netspec.errors import SpecError

EXAMPLES = int(os.environ.get("NETSPEC_FUZZ_EXAMPLES", "60"))
CELLS = st.sampled_from(["1", "0", "-1", "2.5", "", " ", "nan", "NaN", "inf", "-inf", "1e400", "1e39", "1e300",
                         "99999999999999999999999", "x", "cat", "\"a,b\"", "\"\"", "NA", "null", "0x10", "1_0",
                         "\"1\n2\"", "é", "9" * 200])
SPEC = """
name: f
seed: 0
data:
  source: {SOURCE}
  validation_split: 0.2
model:
  input_shape: {SHAPE}
  layers: [flatten, {linear: 2}]
"""


def load(tmp_path, source, shape="[2]"):
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.replace("{SOURCE}", source).replace("{SHAPE}", shape))
    return D.load(netspec.load(path))


def finite_or_clean_error(tmp_path, source, shape, filename):
    try:
        d = load(tmp_path, source, shape)
    except SpecError as e:
        assert str(filename) in str(e) or "samples" in str(e) or "splits" in str(e), str(e)
        return
    for x, y in d.splits.values():
        assert torch.isfinite(x[:]).all()
        if y is not None and y.dtype.is_floating_point:
            assert torch.isfinite(y).all()


fuzz = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))


@fuzz
@given(rows=st.lists(st.lists(CELLS, min_size=1, max_size=5), min_size=0, max_size=8),
       header=st.lists(st.sampled_from(["a", "b", "y", "a", ""]), min_size=1, max_size=4))
def test_csv_cells(tmp_path_factory, rows, header):
    tmp = tmp_path_factory.mktemp("csv")
    f = tmp / "t.csv"
    f.write_text(",".join(header) + "\n" + "".join(",".join(r) + "\n" for r in rows), encoding="utf-8")
    finite_or_clean_error(tmp, f"{{csv: {{path: {f}, target: y}}}}", "[2]", f)


@fuzz
@given(blob=st.binary(max_size=300), cut=st.integers(0, 2000))
def test_image_parquet_and_npy_bytes(tmp_path_factory, blob, cut):
    tmp = tmp_path_factory.mktemp("bytes")
    # an image folder with one valid and one random file per class
    from PIL import Image
    for c in ("a", "b"):
        (tmp / "img" / c).mkdir(parents=True)
        Image.new("RGB", (5, 5), (10, 20, 30)).save(tmp / "img" / c / "ok.png")
        (tmp / "img" / c / "bad.png").write_bytes(blob)
    os.environ["NETSPEC_CACHE"] = str(tmp / "cache")
    finite_or_clean_error(tmp, f"{{image_folder: {tmp / 'img'}}}", "[1, 4, 4]", tmp / "img")
    # a real Parquet file and a real .npy, cut short and with random bytes appended
    import pyarrow as pa
    import pyarrow.parquet as pq
    buf = io.BytesIO()
    pq.write_table(pa.table({"a": [1.0, 2.0, 3.0, 4.0], "b": [0, 1, 0, 1], "y": ["p", "q", "p", "q"]}), buf)
    (tmp / "t.parquet").write_bytes(buf.getvalue()[:cut] + blob)
    finite_or_clean_error(tmp, f"{{parquet: {{path: {tmp / 't.parquet'}, target: y}}}}", "[2]", tmp / "t.parquet")
    np.save(tmp / "x.npy", np.arange(20, dtype=np.float32).reshape(10, 2))
    np.save(tmp / "y.npy", np.arange(10) % 2)
    (tmp / "x.npy").write_bytes((tmp / "x.npy").read_bytes()[:cut] + blob)
    finite_or_clean_error(tmp, f"{{npy: {{x: {tmp / 'x.npy'}, y: {tmp / 'y.npy'}}}}}", "[2]", tmp / "x.npy")
    for save in (np.savez, np.savez_compressed):
        save(tmp / "d.npz", x=np.arange(20, dtype=np.float32).reshape(10, 2), y=np.arange(10) % 2)
        raw = (tmp / "d.npz").read_bytes()
        (tmp / "d.npz").write_bytes(raw[:cut] + blob + raw[cut + len(blob):])  # cut, or overwritten inside
        finite_or_clean_error(tmp, f"{{npz: {tmp / 'd.npz'}}}", "[2]", tmp / "d.npz")


@pytest.mark.parametrize("content", [b"", b"\xff\xfe\x00", b"a,b,y\n", b"y\n1\n2\n"])
def test_degenerate_csv_files(tmp_path, content):
    f = tmp_path / "t.csv"
    f.write_bytes(content)
    with pytest.raises(SpecError) as e:
        load(tmp_path, f"{{csv: {{path: {f}, target: y}}}}")
    assert str(f) in str(e.value)

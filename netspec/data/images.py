"""Image folders -> arrays: one subfolder per class, PNG and JPEG read with Pillow.

Images are resized to model.input_shape [C, H, W] and converted to C channels, then kept
as uint8 in a cache file that is memory-mapped: a second epoch, run or trial reads the
decoded pixels from it instead of decoding again. The cache file is named by a
fingerprint of the folder (every image's path, size and mtime) and the target shape, so
adding, removing, renaming or rewriting an image makes a new one; it is written to a
temporary name and renamed when complete, so a killed build or two trials building at
once never leave a half-written cache that is later read.
"""
from __future__ import annotations

import hashlib
import math
import os
import sys
import uuid
from pathlib import Path

import numpy as np

from ..errors import SpecError
from ..files import gib, memory_bytes
from .base import Arrays, fail

EXTENSIONS = {".png", ".jpg", ".jpeg"}
MODES = {1: "L", 3: "RGB", 4: "RGBA"}
MAX_PIXELS = 2**26  # 8192 x 8192: far beyond what a network here trains on
_VERSION = "1"  # bump when decoding changes, so old caches are not read


class BadImage(Exception):
    def __init__(self, path, why: str):
        self.path, self.why = path, f"not a readable image ({why}); PNG and JPEG files are read: fix or remove it"
        super().__init__(f"{path}: {self.why}")


def read_image(path, shape) -> np.ndarray:
    """One image as uint8 [C, H, W], resized (bilinear) to shape [C, H, W]; BadImage if unreadable."""
    from PIL import Image
    c, h, w = shape
    try:
        with Image.open(path) as im:
            if im.format not in ("PNG", "JPEG", "MPO"):
                raise BadImage(path, f"it is {im.format or 'an unknown format'}")
            im.draft(MODES[c], (w, h))  # JPEG: decode at a reduced scale when the target is small
            im = im.convert(MODES[c])
            if im.size != (w, h):
                im = im.resize((w, h), Image.BILINEAR)
            a = np.asarray(im, dtype=np.uint8)
    except BadImage:
        raise
    except Exception as e:  # noqa: BLE001 (truncated, corrupt, a decompression bomb: each names the file)
        raise BadImage(path, f"{type(e).__name__}: {str(e)[:200]}") from None
    return a[None] if c == 1 else a.transpose(2, 0, 1)


def listing(spec, root: Path) -> tuple[list[str], list[Path], np.ndarray]:
    """Class names (sorted subfolder names), image files and their class indices."""
    if not root.exists():
        fail(spec, f"no such folder: {root} (relative paths start from the current directory, {Path.cwd()})",
             "path")
    if not root.is_dir():
        fail(spec, f"{root} is a file; image_folder needs a folder with one subfolder per class", "path")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        fail(spec, f"{root} has no subfolders; put each class's images in a subfolder named after the class "
                   f"({root}/cat/1.png, {root}/dog/1.png, ...)", "path")
    files, labels = [], []
    for i, name in enumerate(classes):
        found = sorted(f for f in (root / name).iterdir()
                       if f.suffix.lower() in EXTENSIONS and not f.name.startswith(".") and f.is_file())
        if not found:
            fail(spec, f"the class folder {root / name} holds no PNG or JPEG images "
                       f"(files ending in {', '.join(sorted(EXTENSIONS))})", "path")
        files += found
        labels += [i] * len(found)
    return classes, files, np.array(labels, dtype=np.int64)


def _shape(spec) -> tuple[int, int, int]:
    shape = tuple(spec.model.input_shape or ())
    if len(shape) != 3 or shape[0] not in MODES:
        fail(spec, f"image_folder reads images as model.input_shape [channels, height, width] with 1 (grey), "
                   f"3 (RGB) or 4 (RGBA) channels; input_shape is {list(shape) or 'not set'}: set e.g. "
                   "input_shape: [3, 32, 32]")
    if shape[1] * shape[2] > MAX_PIXELS:  # every image is resized to this: refuse before decoding one
        raise SpecError([spec.problem(("model", "input_shape"), f"image_folder resizes every image to "
                                                                f"{shape[1]:,} x {shape[2]:,} pixels; at most "
                                                                f"{MAX_PIXELS:,} per image: use a smaller size")])
    return shape


def cache_root(src) -> Path:
    if src.cache_dir:
        return Path(src.cache_dir).expanduser()
    if os.environ.get("NETSPEC_CACHE"):
        return Path(os.environ["NETSPEC_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "netspec"


def fingerprint(root: Path, files: list[Path], shape) -> str:
    h = hashlib.sha256(f"{_VERSION}|{list(shape)}|{root.resolve()}".encode())
    for f in files:
        st = f.stat()
        h.update(f"\0{f.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()[:32]


def image_folder(src, spec) -> Arrays:
    root = Path(src.path).expanduser()
    shape = _shape(spec)
    classes, files, labels = listing(spec, root)
    x = None
    if src.cache:
        folder = cache_root(src) / "images" / hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
        target = folder / f"{fingerprint(root, files, shape)}.npy"
        if target.exists():
            try:
                x = np.load(target, mmap_mode="r")
            except (ValueError, OSError):  # unreadable (another program touched it): build it again
                x = None
            if x is not None and x.shape != (len(files), *shape):
                x = None
        if x is None:
            x = _build(spec, src, files, shape, folder, target)
    if x is None:
        need = len(files) * math.prod(shape)
        if need > memory_bytes() // 2:
            raise SpecError([spec.problem(("model", "input_shape"), f"{len(files):,} images of {list(shape)} need "
                                                                    f"{gib(need)} in memory, more than this machine "
                                                                    f"can hold: use a smaller input_shape, or let "
                                                                    f"image_folder cache them on disk (cache: true)")])
        x = np.empty((len(files), *shape), dtype=np.uint8)
        _decode_into(spec, x, files, shape, src.workers)
    return Arrays(x, labels, "classification", classes, scale=1 / 255, origin=str(root), checked=True)


def _build(spec, src, files, shape, folder: Path, target: Path):
    """Decode every image into a new cache file; None (decoding into memory) when the cache
    folder cannot be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{target.stem}.{uuid.uuid4().hex[:8]}.tmp.npy"
        x = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(files), *shape))
    except OSError as e:
        print(f"netspec: cannot write the image cache in {folder} ({e.strerror}); decoding into memory "
              "instead (set data.source.image_folder.cache_dir)", file=sys.stderr)
        return None
    try:
        _decode_into(spec, x, files, shape, src.workers)
        x.flush()
        del x
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    for old in folder.glob("*.npy"):  # caches of the folder as it was before
        if old != target and not old.name.startswith("."):
            old.unlink(missing_ok=True)
    return np.load(target, mmap_mode="r")


class _Files:
    """The files as a map-style dataset for DataLoader workers: (index, pixels or error)."""

    def __init__(self, files, shape):
        self.files, self.shape = files, shape

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        try:
            return i, read_image(self.files[i], self.shape)
        except BadImage as e:
            return i, str(e)  # a worker's exception would arrive wrapped in a traceback


def _as_is(item):
    return item


def _decode_into(spec, out: np.ndarray, files, shape, workers: int) -> None:
    items = _Files(files, shape)
    if workers:
        from torch.utils.data import DataLoader
        it = DataLoader(items, batch_size=None, num_workers=workers, collate_fn=_as_is, prefetch_factor=16)
    else:
        it = (items[i] for i in range(len(items)))
    for i, a in it:
        if isinstance(a, str):
            fail(spec, a, "path")
        out[i] = a


SOURCES = {"image_folder": image_folder}

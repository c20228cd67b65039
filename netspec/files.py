"""Reading user-named files safely: only regular files, never more than a size limit.

A path given by a user may name a device (/dev/zero never ends), a FIFO (opening it waits
for a writer forever), a socket or a folder. Each reader here opens without blocking,
checks what it opened (fstat of the open file, so a swap after a check cannot fool it) and
reads at most `limit` bytes. Problems are a FileProblem with a plain message; the caller
names the spec path or option that gave the file. No torch, no numpy: any layer may use it.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

MiB = 1 << 20


class FileProblem(Exception):
    """A file that cannot be read as asked; `str()` is the message for the user."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def size_text(n: int) -> str:
    for unit, k in (("GiB", 1 << 30), ("MiB", MiB), ("KiB", 1 << 10)):
        if n >= k:
            return f"{n / k:.1f} {unit}"
    return f"{n} bytes"


def check_regular(path, limit: int | None = None) -> int:
    """The size of `path` if it is a regular file within `limit` bytes; else FileProblem.
    For readers that open the file themselves (numpy, torch): stat never blocks."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileProblem(f"no such file: {path}") from None
    except OSError as e:
        raise FileProblem(f"cannot read {path}: {e.strerror}") from None
    _check(path, st, limit)
    return st.st_size


def _check(path, st, limit):
    if not stat.S_ISREG(st.st_mode):
        raise FileProblem(f"{path} is {_kind(st.st_mode)}, not a regular file; give a file")
    if limit is not None and st.st_size > limit:
        raise FileProblem(f"{path} is {size_text(st.st_size)}, more than the {size_text(limit)} "
                          "netspec reads from such a file")


def read_bytes(path, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes (refused before reading more)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise FileProblem(f"no such file: {path}") from None
    except IsADirectoryError:
        raise FileProblem(f"{path} is a folder, not a regular file; give a file") from None
    except OSError as e:
        raise FileProblem(f"cannot read {path}: {e.strerror}") from None
    try:
        _check(path, os.fstat(fd), limit)
        chunks, total = [], 0
        while True:  # the file may grow after fstat: still never past the limit
            chunk = os.read(fd, min(MiB, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise FileProblem(f"{path} is more than the {size_text(limit)} netspec reads from such a file")
        return b"".join(chunks)
    except OSError as e:
        raise FileProblem(f"cannot read {path}: {e.strerror}") from None
    finally:
        os.close(fd)


def read_text(path, limit: int, encoding: str = "utf-8") -> str:
    """The text of a regular file (see read_bytes); not decodable text is a FileProblem."""
    data = read_bytes(path, limit)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise FileProblem(f"{path} is not {encoding.upper()} text ({e.reason} at byte {e.start}, "
                          f"line {line})") from None


def is_within(path: Path, folder: Path) -> bool:
    """Whether `path` (resolved, symlinks followed) lies inside `folder` (resolved)."""
    try:
        Path(path).resolve().relative_to(Path(folder).resolve())
        return True
    except ValueError:
        return False


def memory_bytes() -> int:
    """This machine's memory: what is read or built for a spec must fit in it."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 16 * 2**30


def gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB"

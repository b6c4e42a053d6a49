"""Read a file a user named (``-f``, ``--from-lock``, ``--from-report``, a pip constraints file)
with one bounded reader: every way the read can go wrong is one error line naming the file.

* Only regular files are read. The path is ``stat``-ed first and a directory, FIFO, socket or
  device is refused before it is opened (``/dev/zero`` would never end, a FIFO would wait for a
  writer forever); the file is then opened with ``O_NONBLOCK`` and ``fstat``-ed again, so a
  FIFO swapped in meanwhile cannot block us either.
* At most ``limit`` bytes are read; a larger file is refused (the size is checked on the open
  file and again while reading, so a file that grows cannot exhaust memory).
* The text must be UTF-8.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

from .errors import SpecError, UnslothError

ErrorFactory = Callable[[str], UnslothError]

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def kind_of(mode: int) -> str:
    """``"a regular file"``, ``"a directory"``, ``"a FIFO (named pipe)"``, ... for ``st_mode``."""
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def _size_text(n: int) -> str:
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000} MB"
    return f"{n} bytes"


def read_bytes(
    path: str | os.PathLike[str], what: str, *, limit: int, error: ErrorFactory = SpecError
) -> bytes:
    """The content of the regular file ``path`` (at most ``limit`` bytes). ``what`` starts every
    message ("environment file", "lock"); ``error`` makes the exception (default SpecError)."""
    shown = os.fspath(path)

    def fail(why: str) -> UnslothError:
        return error(f"{what} {shown} {why}")

    try:
        st = Path(path).stat()
    except FileNotFoundError:
        raise fail("does not exist") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise fail(f"cannot be read: {getattr(exc, 'strerror', None) or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise fail(f"is {kind_of(st.st_mode)}; give a regular file")
    if st.st_size > limit:
        raise fail(f"is {st.st_size} bytes; refusing files over {_size_text(limit)}")
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise fail(f"cannot be read: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # swapped for something else since the stat above
            raise fail(f"is {kind_of(st.st_mode)}; give a regular file")
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise fail(f"is over {_size_text(limit)}; refusing it")
    except OSError as exc:
        raise fail(f"cannot be read: {exc.strerror}") from None
    finally:
        os.close(fd)
    return b"".join(chunks)


def read_text(
    path: str | os.PathLike[str], what: str, *, limit: int, error: ErrorFactory = SpecError
) -> str:
    """:func:`read_bytes` decoded as UTF-8 (a file that is not is refused, naming the byte)."""
    data = read_bytes(path, what, limit=limit, error=error)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{what} {os.fspath(path)} is not UTF-8 (byte {exc.start})") from None


def is_regular(path: Path) -> bool:
    """Whether ``path`` is a regular file (following links), without opening it."""
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except (OSError, ValueError):
        return False


def file_digest(path: Path, kind: str = "sha256") -> str:
    """The hex ``kind`` digest (sha256 or md5) of the file at ``path``, read in 1 MiB chunks."""
    import hashlib

    h = hashlib.new(kind, usedforsecurity=kind != "md5")
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

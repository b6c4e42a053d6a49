"""Every file conda-unsloth writes for the user goes through one policy, checked before any
work is done (no solve, no render) and applied again at the moment of writing:

* the name is a file name: not empty, no control characters (a newline in a path we print or
  write into a script could end a comment line), valid UTF-8;
* a symbolic link is followed: the file it points to is what the rules below see, and what is
  replaced (the link stays a link);
* an existing path must be a regular file. A directory, FIFO, socket or device is **refused**,
  not written to: the atomic rename below would replace ``/dev/null`` with a regular file (as
  root), and writing into a FIFO blocks until someone reads it. Writing to the terminal is what
  leaving out ``-o`` (or ``--dry-run``) is for, so ``-o /dev/stdout`` is refused too;
* its directory must exist and be writable. ``make_parents_under=ROOT`` (the ``module`` verb's
  NAME/VERSION tree) lets missing directories below an existing ROOT be created at write time;
  those we create are removed again, if empty, when the write fails;
* an existing file that conda-unsloth did not write (its first 2000 bytes lack ``mark``) is
  replaced only with ``--force``;
* it is never one of the command's own input files, even with ``--force``;
* the write is atomic: a temp file from ``tempfile.mkstemp`` in the same directory, fsynced,
  given the old file's permission bits (or ``mode`` for a new file), ``os.replace``-d over the
  path, the directory fsynced. If anything fails the old file is whole and no temp file stays;
* ``dry_run``: every check runs, nothing is written.

``write_atomic`` is the low-level write (atomic, special files refused) for files inside an env
that are ours by construction (the marker, the verification report).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError
from .userfiles import kind_of

GENERATED_MARK = "conda-unsloth"  # every file we write names us in its first lines
HEAD_BYTES = 2000
_BAD_CATEGORIES = {"Cc": "a control character", "Zl": "a line separator", "Zp": "a line separator"}


# ----------------------------------------------------------------------------- names


def control_char(value: str) -> str | None:
    """A description of the first character of ``value`` that must never reach a file we write
    (control characters incl. newline, tab, CR, NUL, ESC, DEL, C1; Unicode line separators;
    lone surrogates, i.e. bytes that are not UTF-8), or None."""
    if value.isprintable():  # no Cc, Zl, Zp or Cs character (nor any other we pass): the fast path
        return None
    for ch in value:
        cat = unicodedata.category(ch)
        if cat in _BAD_CATEGORIES:
            return f"{_BAD_CATEGORIES[cat]} ({ch!r})"
        if cat == "Cs":
            return f"bytes that are not UTF-8 ({ch!r})"
    return None


def refuse_control(value: str | os.PathLike[str], what: str) -> None:
    """UsageError when ``value`` (a name or path we print or write) holds a control character;
    ``what`` names it in the message ("--report", "environment name")."""
    text = os.fspath(value)
    bad = control_char(text)
    if bad is not None:
        raise UsageError(
            f"{what} {text!r} contains {bad}; refusing it",
            hints=["use a name without control characters"],
        )


# ----------------------------------------------------------------------------- reading heads


def written_by_us(path: str | os.PathLike[str], mark: str = GENERATED_MARK) -> bool:
    """Whether the regular file ``path`` has ``mark`` in its first 2000 bytes (False for
    anything that is not a regular file: it is never opened)."""
    try:
        if not stat.S_ISREG(Path(path).stat().st_mode):
            return False
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except (OSError, ValueError):
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        head = os.read(fd, HEAD_BYTES)
    except OSError:
        return False
    finally:
        os.close(fd)
    return mark in head.decode("utf-8", errors="replace")


# ----------------------------------------------------------------------------- the policy


@dataclass(frozen=True)
class OutputFile:
    """A file the user asked us to write. ``flag`` is how they named it, for messages ("-o",
    "--lock", "--sbatch"); ``example`` a file name for the "is a directory" hint; ``inputs``
    the command's input files with their flags (never overwritten)."""

    path: str
    flag: str = "-o"
    force: bool = False
    inputs: tuple[tuple[str, str], ...] = ()
    mode: int = 0o644
    mark: str = GENERATED_MARK
    example: str = "FILE"
    make_parents_under: str | None = None

    @classmethod
    def of(
        cls,
        path: str | os.PathLike[str],
        flag: str = "-o",
        *,
        force: bool = False,
        inputs: Sequence[tuple[str | os.PathLike[str], str]] = (),
        mode: int = 0o644,
        mark: str = GENERATED_MARK,
        example: str = "FILE",
        make_parents_under: str | os.PathLike[str] | None = None,
    ) -> OutputFile:
        return cls(
            path=os.fspath(path),
            flag=flag,
            force=force,
            inputs=tuple((os.fspath(p), f) for p, f in inputs),
            mode=mode,
            mark=mark,
            example=example,
            make_parents_under=os.fspath(make_parents_under) if make_parents_under else None,
        )

    # -- checks

    def _fail(self, why: str, hints: Sequence[str] = ()) -> UsageError:
        return UsageError(f"{self.flag} {self.path}{why}", hints=list(hints))

    def real(self) -> Path:
        """The path the write replaces: ``path`` with symbolic links followed."""
        return Path(self.path).resolve()

    def check(self) -> OutputFile:
        """Everything that can be known before the write (see the module docstring); returns
        ``self`` so ``OutputFile.of(...).check()`` reads as one step."""
        path = self.path
        if not path:
            raise UsageError(
                f"{self.flag} '': the file name is empty; give one like {self.example}"
            )
        if path == "-":  # the shells' "standard output", never a file named "-"
            raise UsageError(
                f"{self.flag} -: not a file name; give one like {self.example}",
                hints=["--dry-run prints what would be written (where the verb has it), or "
                       "--json gives it as data"],
            )  # fmt: skip
        refuse_control(path, self.flag)
        names_dir = path.endswith(("/", os.sep)) or path.rsplit("/", 1)[-1] in (".", "..")
        if names_dir and not Path(path).is_dir():  # a directory that is not there
            shown = path.rstrip("/" + os.sep) or path
            raise self._fail(f": directory {shown} does not exist", hints=[f"mkdir -p {shown}"])
        real = self.real()
        try:  # the path as given, links followed by the kernel (/dev/stdout -> a pipe)
            st: os.stat_result | None = Path(path).stat()
        except (FileNotFoundError, NotADirectoryError):
            st = None
        except OSError as exc:
            raise self._fail(f": cannot be checked ({exc.strerror})") from None
        if st is not None and stat.S_ISDIR(st.st_mode):
            example = os.path.join(path, self.example)  # noqa: PTH118 - as the user wrote it
            raise self._fail(f": is a directory; give a file name like {example}")
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise self._fail(
                f" is {kind_of(st.st_mode)}, not a regular file; refusing to write to it",
                hints=["leave out the output option to see the text on the terminal"],
            )
        self._check_parent(real)
        if st is not None and not os.access(real, os.W_OK):
            raise self._fail(": not writable (permission denied)")
        if st is not None:
            for other, other_flag in self.inputs:
                with contextlib.suppress(OSError):
                    if real.samefile(other):
                        raise self._fail(
                            f" is the {other_flag} input; refusing to overwrite it",
                            hints=[f"give the output another name than {other}"],
                        )
            if not self.force and not written_by_us(real, self.mark):
                raise self._fail(
                    " exists and was not written by conda-unsloth; not replacing it",
                    hints=[f"use {self.flag} OTHER_FILE, or --force to replace {path}"],
                )
        return self

    def _missing_parents(self, real: Path) -> list[Path]:
        """Directories between ``make_parents_under`` and ``real`` that do not exist yet,
        outermost first (empty without ``make_parents_under``)."""
        if self.make_parents_under is None:
            return []
        root = Path(self.make_parents_under).resolve()
        missing: list[Path] = []
        d = real.parent
        while root in d.parents and not os.path.lexists(d):
            missing.append(d)
            d = d.parent
        return list(reversed(missing))

    def _check_parent(self, real: Path) -> None:
        missing = self._missing_parents(real)
        parent = missing[0].parent if missing else real.parent
        shown = os.path.dirname(self.path) or os.curdir  # noqa: PTH120 - as the user wrote it
        if not os.path.lexists(parent):
            raise self._fail(f": directory {shown} does not exist", hints=[f"mkdir -p {shown}"])
        if not parent.is_dir():
            kind = kind_of(parent.stat().st_mode).replace("a regular file", "a file")
            raise self._fail(f": {parent} is {kind}, not a directory")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise self._fail(": not writable (permission denied)")

    # -- writing

    def write(self, text: str, *, dry_run: bool = False) -> bool:
        """Check again and write ``text`` atomically; with ``dry_run`` only check. Returns
        whether the file was written."""
        self.check()
        if dry_run:
            return False
        real = self.real()
        made: list[Path] = []
        try:
            for d in self._missing_parents(real):
                d.mkdir()
                made.append(d)
            write_atomic(real, text, mode=self.mode)
        except BaseException:
            for d in reversed(made):
                with contextlib.suppress(OSError):
                    d.rmdir()
            raise
        return True


def write_all(files: Sequence[tuple[OutputFile, str]], *, dry_run: bool = False) -> list[str]:
    """Write several files as one: all are checked before the first is written, and the ones
    already written are removed again (if they were new) when a later one fails. Returns the
    paths written (none with ``dry_run``)."""
    for out, _text in files:
        out.check()
    if dry_run:
        return []
    done: list[tuple[OutputFile, bool]] = []
    try:
        for out, text in files:
            existed = os.path.lexists(out.real())
            out.write(text)
            done.append((out, existed))
    except BaseException:
        for out, existed in reversed(done):
            if not existed:
                with contextlib.suppress(OSError):
                    out.real().unlink()
        raise
    return [out.path for out, _ in done]


def check_directory(path: str | os.PathLike[str], flag: str, hint: str | None = None) -> None:
    """A directory something will be written into later (elsewhere, e.g. a job's report):
    UsageError unless it exists, is a directory and is writable from here."""
    shown = os.fspath(path)
    refuse_control(shown, flag)
    if not Path(shown).exists():
        why = "does not exist"
    elif not Path(shown).is_dir():
        why = "is not a directory"
    elif not os.access(shown, os.W_OK | os.X_OK):
        why = "is not writable"
    else:
        return
    raise UsageError(f"{flag} {shown} {why}", hints=[hint] if hint else [])


def write_atomic(path: str | os.PathLike[str], text: str, *, mode: int | None = None) -> None:
    """Write ``text`` to ``path`` (symbolic links followed) via a temp file in the same
    directory and an atomic rename; the file keeps its permission bits (a new one gets ``mode``,
    default 0644). A path that is a directory, FIFO, socket or device is refused (UsageError)."""
    try:  # links followed by the kernel first: /dev/stdout is a pipe or a terminal
        old_mode: int | None = Path(path).stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        old_mode = None
    real = Path(path).resolve()
    if old_mode is not None and not stat.S_ISREG(old_mode):
        raise UsageError(
            f"{os.fspath(path)} is {kind_of(old_mode)}, not a regular file; refusing to replace it"
        )
    parent, name = real.parent, real.name
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        new_mode = (old_mode & 0o777) if old_mode is not None else (mode or 0o644)
        os.chmod(tmp, new_mode)
        os.replace(tmp, real)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            Path(tmp).unlink()
        raise
    fsync_dir(parent)


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (a rename, a new file) durable; best effort."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

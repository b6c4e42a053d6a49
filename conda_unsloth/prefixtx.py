"""Changing a prefix without losing anything: the lock, the journal, the transaction, and the
recovery of a create that was killed.

The protocol, step by step (signals are held back during each step, the journal and every
rename are fsynced):

1. ``lock``: an exclusive ``flock`` on ``.NAME.conda-unsloth.lock`` beside the prefix. A second
   create of the same prefix is refused at once.
2. ``journal``: ``.NAME.conda-unsloth-journal`` is written *before* anything changes. It names
   the backup path (when an existing env is being replaced) and, once created, the identity
   (st_dev, st_ino) of the new prefix directory.
3. With ``--force`` the old env is renamed to the backup path (same file system: intact).
4. The new prefix is created with an exclusive ``mkdir`` — never over someone else's directory —
   and its identity is recorded in the journal.
5. Build. On failure, Ctrl-C, SIGTERM or SIGHUP: the new prefix is removed *only if it is the
   directory we created*, the backup is renamed back, the journal removed last.
6. Commit: the backup is renamed to a trash name, the journal removed, then the trash deleted.

``recover`` reads a journal left by a create that died (SIGKILL, power cut) and finishes the
job: it removes only the directory the journal identifies, and puts the backup back. Trash is
always garbage. Nothing else is ever deleted.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from .errors import InstallError, PrefixError
from .prefix import is_env

Progress = Callable[[str], None]
CAUGHT_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)


class Interrupted(KeyboardInterrupt):
    """A signal during a create: unwinds through the rollback like KeyboardInterrupt."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


_HOLD = [0]  # >0 while a critical step runs
_PENDING: list[int] = []  # a signal that arrived during a critical step


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """Turn SIGTERM, SIGINT, SIGHUP and SIGQUIT into ``Interrupted`` so cleanup runs; during a
    ``signals_held`` step the signal is remembered and raised right after the step."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if _HOLD[0] > 0:
            _PENDING.append(signum)
            return
        raise Interrupted(signum)

    old = {s: signal.signal(s, handler) for s in CAUGHT_SIGNALS} if _main_thread() else {}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        _PENDING.clear()


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Run a short critical step to its end: a signal that arrives meanwhile is raised after it.
    (Not pthread_sigmask: Python runs handlers in the main thread whichever thread received the
    signal, and rattler's native threads do not share our mask.)"""
    _HOLD[0] += 1
    try:
        yield
    finally:
        _HOLD[0] -= 1
    if _HOLD[0] == 0 and _PENDING:
        raise Interrupted(_PENDING.pop())


def run_child(cmd: list[str], *, input: str | None = None, **popen: Any) -> tuple[int, str, str]:
    """Run a child that writes into the prefix: it inherits our lock, dies with us
    (PDEATHSIG), is started with signals held (a signal during fork would land in an at-fork
    hook, where Python ignores exceptions), and is killed and waited for if we are interrupted.
    ``input`` goes to its stdin (a job passed this way leaves no file behind when we are
    killed). Returns (exit code, stdout, stderr)."""
    import subprocess

    if input is not None:
        popen["stdin"] = subprocess.PIPE
    proc: subprocess.Popen[str] | None = None
    try:
        with signals_held():
            proc = subprocess.Popen(
                cmd, text=True, pass_fds=tuple(HELD_LOCKS), preexec_fn=child_setup, **popen
            )
        out, err = proc.communicate(input)
    except BaseException:
        if proc is not None:
            proc.kill()
            proc.wait()
        raise
    return proc.returncode, out or "", err or ""


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _side(prefix: Path, kind: str) -> Path:
    """A file beside the prefix; long names are shortened so it fits NAME_MAX."""
    name = prefix.name
    if len(name) > 180:
        name = name[:100] + "-" + hashlib.sha256(prefix.name.encode()).hexdigest()[:16]
    return prefix.with_name(f".{name}.conda-unsloth-{kind}")


def lock_path(prefix: Path) -> Path:
    return _side(prefix, "lock")


def journal_path(prefix: Path) -> Path:
    return _side(prefix, "journal")


def backup_path(prefix: Path) -> Path:
    return _side(prefix, f"backup-{os.getpid()}")


def trash_path(prefix: Path) -> Path:
    return _side(prefix, f"trash-{os.getpid()}-{time.monotonic_ns()}")


# ----------------------------------------------------------------------------- lock

HELD_LOCKS: list[int] = []  # lock fds held now: children that build a prefix inherit them
ORPHAN_LOCK_WAIT_S = 10.0  # how long a lock whose taker is dead may stay held by its children


def _alive(pid: str) -> bool:
    """Whether the process ``pid`` (as written in a lock file) exists; unknown counts as alive."""
    if not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, as another user
        return True
    return True


def child_setup() -> None:
    """``preexec_fn`` for processes that write into a prefix: they die with us (Linux
    PR_SET_PDEATHSIG), so a create killed with SIGKILL leaves no orphan still linking files."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


@contextlib.contextmanager
def prefix_lock(prefix: Path) -> Iterator[Path]:
    """An exclusive lock for changing ``prefix`` (a file beside it, removed afterwards)."""
    parent = prefix.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PrefixError(f"cannot create {parent}: {exc.strerror}") from None
    path = lock_path(prefix)
    deadline = time.monotonic() + ORPHAN_LOCK_WAIT_S
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise PrefixError(f"cannot write in {parent}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            if not _alive(other):
                # the create that took the lock is gone; the children that inherited it die
                # with it (child_setup) and release it within moments
                if time.monotonic() < deadline:
                    time.sleep(0.02)
                    continue
                raise PrefixError(
                    f"{prefix} is still locked by processes left by a create that ended "
                    f"(pid {other})",
                    hints=[f"wait for them to exit; `lsof {path}` names them"],
                ) from None
            raise PrefixError(
                f"another conda unsloth create is building {prefix} (pid {other})",
                hints=["wait for it to finish, or build elsewhere with -p"],
            ) from None
        # the holder before us may have unlinked the file after we opened it: then our lock is
        # on a dead inode and another process can lock the new file; start again
        try:
            same = os.fstat(fd).st_ino == path.stat().st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        HELD_LOCKS.append(fd)
        yield path
    finally:
        HELD_LOCKS.remove(fd)
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)


# ----------------------------------------------------------------------------- journal


def _write_journal(prefix: Path, doc: dict[str, Any]) -> None:
    path = journal_path(prefix)
    tmp = _journal_tmp(prefix)
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _read_journal(prefix: Path) -> dict[str, Any] | None:
    path = journal_path(prefix)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _identity(path: Path) -> list[int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return [st.st_dev, st.st_ino]


def _remove_ours(prefix: Path, ident: list[int] | None) -> bool:
    """Remove ``prefix`` if it is the directory we created (same identity); True when gone."""
    if not os.path.lexists(prefix):
        return True
    if ident is None or _identity(prefix) != ident:
        return False
    shutil.rmtree(prefix, ignore_errors=True)
    return not os.path.lexists(prefix)


def _journal_tmp(prefix: Path) -> Path:
    path = journal_path(prefix)
    return path.with_name(path.name + ".tmp")


def pending(prefix: Path) -> bool:
    """Did a create of ``prefix`` die and leave work for ``recover``?"""
    return journal_path(prefix).exists() or _journal_tmp(prefix).exists() or bool(_trash(prefix))


def _trash(prefix: Path) -> list[Path]:
    stem = _side(prefix, "trash-").name
    return [p for p in prefix.parent.glob(stem + "*")]


def recover(prefix: Path, say: Progress) -> None:
    """Finish what a create killed without cleanup left (see the module docstring)."""
    if not pending(prefix):
        return
    try:
        with prefix_lock(prefix), signals_held():
            for t in _trash(prefix):
                shutil.rmtree(t, ignore_errors=True)
            _journal_tmp(prefix).unlink(missing_ok=True)  # a journal write cut short
            info = _read_journal(prefix)
            if info is None:
                return
            backup = Path(info["backup"]) if info.get("backup") else None
            ident = info.get("prefix_id")
            if backup is not None and ident is not None and not os.path.lexists(backup):
                # the old env already went to the trash: the commit had begun, the new env is
                # complete — keep it
                journal_path(prefix).unlink(missing_ok=True)
                fsync_dir(prefix.parent)
                return
            if ident is None and prefix.is_dir() and not prefix.is_symlink():
                with contextlib.suppress(OSError):
                    prefix.rmdir()  # created but never recorded: it can only be empty
            elif ident is not None and os.path.lexists(prefix):
                if _remove_ours(prefix, ident):
                    say(f"removed {prefix}: an earlier create was killed before it finished")
                else:
                    say(
                        f"{prefix} is not the directory an earlier, killed create made; left as is"
                    )
            if backup is not None and os.path.lexists(backup):
                if not os.path.lexists(prefix):
                    os.replace(backup, prefix)
                    fsync_dir(prefix.parent)
                    say(f"restored {prefix}: an earlier --force create was killed")
                else:
                    say(
                        f"an earlier create left the old env at {backup}; {prefix} exists, so it "
                        "was not moved back — move it yourself"
                    )
                    return  # keep the journal: it documents where the old env is
            journal_path(prefix).unlink(missing_ok=True)
            fsync_dir(prefix.parent)
    except PrefixError:
        return  # another create holds the prefix right now; it owns these files


# ----------------------------------------------------------------------------- safety


def _roots(extra: Sequence[Path] = ()) -> list[Path]:
    roots = [Path(sys.prefix), Path(sys.base_prefix), *extra]
    for var in ("CONDA_ROOT", "MAMBA_ROOT_PREFIX", "CONDA_PREFIX"):
        if os.environ.get(var):
            roots.append(Path(os.environ[var]))
    exe = os.environ.get("CONDA_EXE")
    if exe:
        roots.append(Path(exe).resolve().parent.parent)
    return roots


def check_safe(prefix: Path, roots: Sequence[Path] = ()) -> None:
    """Refuse prefixes whose replacement or creation would hurt: a conda root (``roots``: the
    runtime's, e.g. conda's root prefix) or the running interpreter's env, the active env, a
    prefix holding other envs, one nested in an env, a symlink."""
    real = prefix.resolve()
    for root in _roots(roots):
        with contextlib.suppress(OSError):
            if real == root.resolve():
                raise PrefixError(
                    f"{prefix} is a conda root, the active environment or the environment "
                    "running this command; refusing to build there",
                    hints=["choose a new -n NAME or -p PATH"],
                )
    if prefix.is_symlink():
        raise PrefixError(f"{prefix} is a symbolic link; give the real path ({real})")
    for parent in real.parents:
        if is_env(parent):
            raise PrefixError(
                f"{prefix} is inside the environment {parent}; environments cannot be nested",
                hints=["choose a path outside it, e.g. -n NAME"],
            )
    if real.is_dir() and (
        (real / "condabin").is_dir()
        or (real / "pkgs").is_dir()
        or any(real.glob("*/conda-meta"))
        or any(real.glob("*/*/conda-meta"))
    ):
        raise PrefixError(
            f"{prefix} looks like a conda installation or holds other environments; "
            "refusing to build there",
            hints=["choose a new -n NAME or -p PATH"],
        )


def check_target(prefix: Path, force: bool, roots: Sequence[Path] = ()) -> bool:
    """Refuse to touch an existing prefix without ``force``; return True if it will be replaced."""
    check_safe(prefix, roots)
    if not os.path.lexists(prefix):
        return False
    replaceable = prefix.is_dir() and (is_env(prefix) or not any(prefix.iterdir()))
    if not replaceable:
        what = "directory" if prefix.is_dir() else "file"
        raise PrefixError(
            f"{prefix} already exists and is a {what}, not a conda environment; nothing was "
            "changed "
            "(--force replaces only an environment or an empty directory)",
            hints=["choose another -n NAME or -p PATH"],
        )
    if not force:
        what = "environment" if is_env(prefix) else ("directory" if prefix.is_dir() else "file")
        raise PrefixError(
            f"{prefix} already exists ({what}); nothing was changed",
            hints=[
                "add --force to replace it once the new env is built and verified",
                "or choose another -n/-p",
            ],
        )
    return True


# ----------------------------------------------------------------------------- transaction


@contextlib.contextmanager
def transaction(
    prefix: Path,
    replacing: bool,
    keep_failed: bool,
    on_fail: Callable[[BaseException], None],
    say: Progress,
) -> Iterator[None]:
    """Build ``prefix`` inside the protocol of the module docstring. Call with the lock held."""
    backup = backup_path(prefix) if replacing else None
    ident: list[int] | None = None
    try:
        with signals_held():
            _write_journal(
                prefix,
                {"pid": os.getpid(), "backup": str(backup) if backup else None, "prefix_id": None},
            )
            if backup is not None:
                os.replace(prefix, backup)
                fsync_dir(prefix.parent)
            try:
                prefix.mkdir()
            except FileExistsError:
                raise PrefixError(
                    f"{prefix} appeared while this create was planning; nothing was changed"
                ) from None
            ident = _identity(prefix)
            _write_journal(
                prefix,
                {
                    "pid": os.getpid(),
                    "backup": str(backup) if backup else None,
                    "prefix_id": ident,
                },
            )
    except BaseException:
        _rollback(prefix, backup, ident, keep=False, say=say)
        raise
    try:
        yield
    except BaseException as exc:
        keep = keep_failed and os.path.lexists(prefix)
        if keep:
            with contextlib.suppress(Exception):
                on_fail(exc)
        with signals_held():
            _rollback(prefix, backup, ident, keep=keep, say=say)
        raise
    with signals_held():
        if backup is not None:
            trash = trash_path(prefix)
            os.replace(backup, trash)
            fsync_dir(prefix.parent)
        journal_path(prefix).unlink(missing_ok=True)
        fsync_dir(prefix.parent)
    if backup is not None:
        shutil.rmtree(trash, ignore_errors=True)


def _rollback(
    prefix: Path, backup: Path | None, ident: list[int] | None, keep: bool, say: Progress
) -> None:
    """Undo: remove the prefix we created (never another directory), put the old env back."""
    if ident is None:  # we never created the prefix: whatever is there is not ours
        if backup is not None and os.path.lexists(backup):
            if os.path.lexists(prefix):
                raise PrefixError(
                    f"{prefix} appeared while the old env was moved aside to {backup}; "
                    "move it back yourself"
                )
            os.replace(backup, prefix)
            fsync_dir(prefix.parent)
        journal_path(prefix).unlink(missing_ok=True)
        return
    if keep and backup is not None:
        failed = prefix.with_name(f"{prefix.name}.failed-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(prefix, failed)
        say(f"kept the failed env at {failed}")
    elif not keep and not _remove_ours(prefix, ident):
        raise InstallError(
            f"could not remove the half-built {prefix}; the journal "
            f"{journal_path(prefix).name} lets the next create finish the clean-up"
        )
    if backup is not None and os.path.lexists(backup):
        os.replace(backup, prefix)
    fsync_dir(prefix.parent)
    journal_path(prefix).unlink(missing_ok=True)

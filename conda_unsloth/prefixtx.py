"""Changing a prefix without losing anything: the lock, the journal, the transaction, and the
recovery of a create that was killed.

The protocol, step by step (signals are held back during each step, the journal and every
rename are fsynced):

1. ``lock``: an exclusive ``flock`` on ``.NAME.conda-unsloth.lock`` beside the prefix. A second
   create of the same prefix is refused at once. Parent directories the lock step has to make
   are removed again (when still empty) as the lock is released, so a failed create leaves no
   trace.
2. ``journal``: ``.NAME.conda-unsloth-journal`` is written *before* anything changes. It names
   the backup path (when an existing env is being replaced), a random token, and, once
   created, the identity (st_dev, st_ino) of the new prefix directory.
3. With ``--force`` the old env is renamed to the backup path (same file system: intact).
4. The new prefix is created with an exclusive ``mkdir`` — never over someone else's directory —
   the token is written into it (``.conda-unsloth-create-token``, fsynced), and its identity is
   recorded in the journal.
5. Build. On failure, Ctrl-C, SIGTERM or SIGHUP: the new prefix is removed *only if it is the
   directory we created*, the backup is renamed back, the journal removed last.
6. Commit: the backup is renamed to a trash name, the journal removed, the token file removed,
   then the trash deleted.

``recover`` reads a journal left by a create that died (SIGKILL, power cut) and finishes the
job. It removes a directory only when it *proves* that the directory is the one that create
made: the identity matches *and* the token file inside it holds the journal's token (an inode
number alone is not proof: a file system reuses the number of a directory the user removed).
The only paths a journal may name are the prefix and its own siblings
(``.NAME.conda-unsloth-backup-PID``); a journal naming anything else, or one that cannot be
read, is refused with one error line and nothing is touched. Trash
(``.NAME.conda-unsloth-trash-*``) is always garbage. Nothing else is ever deleted.

A directory created in the instant between ``mkdir`` and the end of the token write (empty,
or holding only a token file cut short) cannot be proven ours. When the old env was moved
aside it gives way (``rmdir``: it holds nothing to lose) and the old env is put back;
otherwise recovery leaves it and says so.

Temp directories of a create (``tempdir_prefix``: ``conda-unsloth-KIND-PID-HOST-``) carry the
pid and host of their owner, so :func:`sweep_stale_tempdirs` can remove those a killed create
left in ``$TMPDIR`` — only ours (same uid, same host) and only when that pid is gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import InstallError, PrefixError
from .outputs import fsync_dir
from .prefix import (  # the names beside a prefix and whether a create left work (prefix.py)
    _journal_tmp,
    _side,
    _trash,
    backup_path,
    journal_path,
    lock_path,
    pending,
    trash_path,
)
from .signals import signals_held
from .tempdirs import pid_alive

Progress = Callable[[str], None]


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


TOKEN_NAME = ".conda-unsloth-create-token"  # inside the new prefix while the journal exists


def token_path(prefix: Path) -> Path:
    return prefix / TOKEN_NAME


def _is_backup_name(prefix: Path, backup: Path) -> bool:
    """Whether ``backup`` is a name :func:`backup_path` gives for ``prefix`` (any pid)."""
    stem = _side(prefix, "backup-")
    tail = backup.name[len(stem.name) :]
    return (
        backup.parent == prefix.parent
        and backup.name.startswith(stem.name)
        and tail.isascii()
        and tail.isdigit()
    )


# ----------------------------------------------------------------------------- lock

HELD_LOCKS: list[int] = []  # lock fds held now: children that build a prefix inherit them
ORPHAN_LOCK_WAIT_S = 10.0  # how long a lock whose taker is dead may stay held by its children


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
    path = lock_path(prefix)
    parent = prefix.parent
    made = _make_parents(parent)
    try:
        with _locked(prefix, path):
            yield path
    finally:
        _remove_made(made)


def _make_parents(parent: Path) -> list[Path]:
    """Create ``parent`` and its missing ancestors; return those made, outermost first."""
    missing: list[Path] = []
    d = parent
    while not os.path.lexists(d) and d != d.parent:
        missing.append(d)
        d = d.parent
    made: list[Path] = []
    try:
        for d in reversed(missing):
            d.mkdir()
            made.append(d)
    except FileExistsError:
        if not parent.is_dir():
            _remove_made(made)
            raise PrefixError(f"cannot create {parent}: a file is in the way") from None
    except OSError as exc:
        _remove_made(made)
        raise PrefixError(f"cannot create {parent}: {exc.strerror}") from None
    return made


def _remove_made(made: list[Path]) -> None:
    """Remove the directories :func:`_make_parents` made, innermost first, while empty."""
    for d in reversed(made):
        try:
            d.rmdir()
        except OSError:
            return  # not empty (the env is there, or someone else's file): keep it and above
    if made:
        fsync_dir(made[0].parent)


@contextlib.contextmanager
def _locked(prefix: Path, path: Path) -> Iterator[None]:
    parent = prefix.parent
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
            if not pid_alive(other):
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
        yield
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


JOURNAL_VERSION = 2
MAX_JOURNAL_BYTES = 65_536


def _read_journal(prefix: Path) -> dict[str, Any] | None:
    """The journal's content (None when there is none); PrefixError when it cannot be read or
    is not a journal this version wrote, or names a backup that is not the prefix's own (see
    the module docstring): such a journal is refused, nothing is touched."""
    from .userfiles import read_text

    path = journal_path(prefix)
    if not os.path.lexists(path):
        return None

    def refuse(why: str) -> PrefixError:
        return PrefixError(
            f"the journal {path} {why}; refusing it (nothing was changed)",
            hints=[f"look at {prefix} and its siblings, then remove {path} yourself"],
        )

    def unreadable(message: str) -> PrefixError:
        return PrefixError(
            f"{message}; refusing it (nothing was changed)",
            hints=[f"look at {prefix} and its siblings, then remove {path} yourself"],
        )

    try:
        doc = json.loads(read_text(path, "the journal", limit=MAX_JOURNAL_BYTES, error=unreadable))
    except (ValueError, RecursionError):
        raise refuse("is not JSON") from None
    if not isinstance(doc, dict):
        raise refuse("is not a conda-unsloth journal")
    backup, ident, token = doc.get("backup"), doc.get("prefix_id"), doc.get("token")
    if backup is not None and not (
        isinstance(backup, str) and _is_backup_name(prefix, Path(backup))
    ):
        raise refuse(
            f"names {str(backup)[:200]!r} as the old env's backup, which is not {prefix}'s"
        )
    if ident is not None and not (
        isinstance(ident, list)
        and len(ident) == 2
        and all(isinstance(i, int) and not isinstance(i, bool) for i in ident)
    ):
        raise refuse("has a malformed prefix_id")
    if token is not None and not (
        isinstance(token, str) and len(token) == 32 and all(c in "0123456789abcdef" for c in token)
    ):
        raise refuse("has a malformed token")
    return {"backup": backup, "prefix_id": ident, "token": token}


def _identity(path: Path) -> list[int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return [st.st_dev, st.st_ino]


def _read_token(prefix: Path) -> str | None:
    """The token in ``prefix``'s token file (a regular file, not a link), or None."""
    path = token_path(prefix)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, 64).decode("ascii", errors="replace").strip()
    except OSError:
        return None
    finally:
        os.close(fd)


def _write_token(prefix: Path, token: str) -> None:
    fd = os.open(token_path(prefix), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        os.write(fd, token.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(prefix)


def _drop_token(prefix: Path) -> None:
    with contextlib.suppress(OSError):
        token_path(prefix).unlink()


def is_ours(prefix: Path, ident: list[int] | None, token: str | None) -> bool:
    """Whether ``prefix`` is provably the directory the create of this journal made: a real
    directory holding the journal's token, with the recorded identity (without one, the create
    died before building anything: the token file must be all there is)."""
    if token is None or not prefix.is_dir() or prefix.is_symlink():
        return False
    if ident is not None and _identity(prefix) != ident:
        return False
    if ident is None:  # killed before the identity was recorded: nothing was built yet
        try:
            if [p.name for p in prefix.iterdir()] != [TOKEN_NAME]:
                return False
        except OSError:
            return False
    return _read_token(prefix) == token


def _remove_ours(prefix: Path, ident: list[int] | None, token: str | None) -> bool:
    """Remove ``prefix`` if it is provably the directory we created; True when it is gone."""
    if not os.path.lexists(prefix):
        return True
    if not is_ours(prefix, ident, token):
        return False
    shutil.rmtree(prefix, ignore_errors=True)
    return not os.path.lexists(prefix)


def recover(prefix: Path, say: Progress) -> None:
    """Finish what a create killed without cleanup left (see the module docstring). A journal
    that cannot be trusted is a PrefixError; a lock held by a running create returns quietly
    (that create owns these files)."""
    if not pending(prefix):
        return
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(prefix_lock(prefix))
        except PrefixError:
            return  # another create holds the prefix right now; it owns these files
        with signals_held():
            _recover_locked(prefix, say)


def _recover_locked(prefix: Path, say: Progress) -> None:
    for t in _trash(prefix):
        if t.is_dir() and not t.is_symlink():
            shutil.rmtree(t, ignore_errors=True)
    _journal_tmp(prefix).unlink(missing_ok=True)  # a journal write cut short
    info = _read_journal(prefix)
    if info is None:
        return
    backup = Path(info["backup"]) if info["backup"] else None
    ident, token = info["prefix_id"], info["token"]
    if backup is not None and ident is not None and not os.path.lexists(backup):
        # the old env already went to the trash: the commit had begun, the new env is
        # complete — keep it
        if is_ours(prefix, ident, token):
            _drop_token(prefix)
        _unlink_journal(prefix)
        return
    if os.path.lexists(prefix):
        if _remove_ours(prefix, ident, token):
            say(f"removed {prefix}: an earlier create was killed before it finished")
        elif prefix.is_dir() and token is not None and ident is None and _unbuilt(prefix, token):
            # killed between making the new prefix and recording it: the start of our token
            # is all it may hold; without it the directory is empty
            with contextlib.suppress(OSError):
                token_path(prefix).unlink(missing_ok=True)
            if backup is not None and os.path.lexists(backup):
                # the old env moved aside needs its place back; an empty directory has
                # nothing to lose (rmdir fails, and we stop, if anything appeared meanwhile)
                with contextlib.suppress(OSError):
                    prefix.rmdir()
            else:
                say(
                    f"{prefix} is an empty directory an earlier, killed create may have made; "
                    "left as is (remove it if it is not yours)"
                )
        else:
            say(
                f"{prefix} is not provably the directory an earlier, killed create made; "
                "left as is"
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
    _unlink_journal(prefix)


def _unbuilt(prefix: Path, token: str) -> bool:
    """Whether ``prefix`` is empty, or holds only a token file cut short while it was written
    (created, not yet filled: its content is a strict start of the journal's token)."""
    try:
        names = [p.name for p in prefix.iterdir()]
    except OSError:
        return False
    if not names:
        return True
    if names != [TOKEN_NAME]:  # _read_token opens no link and nothing but a regular file
        return False
    written = _read_token(prefix)
    return written is not None and written != token and token.startswith(written)


def _unlink_journal(prefix: Path) -> None:
    journal_path(prefix).unlink(missing_ok=True)
    fsync_dir(prefix.parent)


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
    import secrets

    backup = backup_path(prefix) if replacing else None
    token = secrets.token_hex(16)
    ident: list[int] | None = None

    def journal(ident: list[int] | None) -> None:
        _write_journal(
            prefix,
            {
                "version": JOURNAL_VERSION,
                "pid": os.getpid(),
                "backup": str(backup) if backup else None,
                "token": token,
                "prefix_id": ident,
            },
        )

    try:
        with signals_held():
            journal(None)
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
            _write_token(prefix, token)
            journal(ident)
    except BaseException:
        _rollback(prefix, backup, ident, token, keep=False, say=say)
        raise
    try:
        yield
    except BaseException as exc:
        keep = keep_failed and os.path.lexists(prefix)
        if keep:
            with contextlib.suppress(Exception):
                on_fail(exc)
        with signals_held():
            _rollback(prefix, backup, ident, token, keep=keep, say=say)
        raise
    with signals_held():
        if backup is not None:
            trash = trash_path(prefix)
            os.replace(backup, trash)
            fsync_dir(prefix.parent)
        _unlink_journal(prefix)
        _drop_token(prefix)
    if backup is not None:
        shutil.rmtree(trash, ignore_errors=True)


def _rollback(
    prefix: Path,
    backup: Path | None,
    ident: list[int] | None,
    token: str,
    keep: bool,
    say: Progress,
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
        _unlink_journal(prefix)
        return
    if keep and backup is not None:
        failed = prefix.with_name(f"{prefix.name}.failed-{time.strftime('%Y%m%d-%H%M%S')}")
        _drop_token(prefix)
        os.replace(prefix, failed)
        say(f"kept the failed env at {failed}")
    elif keep:
        _drop_token(prefix)
    elif not _remove_ours(prefix, ident, token):
        raise InstallError(
            f"could not remove the half-built {prefix}; the journal "
            f"{journal_path(prefix).name} lets the next create finish the clean-up"
        )
    if backup is not None and os.path.lexists(backup):
        os.replace(backup, prefix)
    fsync_dir(prefix.parent)
    _unlink_journal(prefix)

"""Temporary folders of a create (the pip stage's, the verification's) carry the creating
process's id and a tag of its host, so a later create can sweep what a killed one left in
``$TMPDIR`` (ours, its owner dead, on this host) and nothing else."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from pathlib import Path


def pid_alive(pid: str) -> bool:
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


def _host_tag() -> str:
    import socket

    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


TEMPDIR_KINDS = ("pip", "verify", "bundle")


def tempdir_prefix(kind: str) -> str:
    """The ``prefix=`` for ``tempfile.mkdtemp`` / ``TemporaryDirectory`` of a create's temp
    dir: ``conda-unsloth-KIND-PID-HOST-`` (HOST: 8 hex digits of the host name's sha256), so
    :func:`sweep_stale_tempdirs` can tell a dead create's leftovers from a live one's."""
    if kind not in TEMPDIR_KINDS:
        raise ValueError(kind)
    return f"conda-unsloth-{kind}-{os.getpid()}-{_host_tag()}-"


def sweep_stale_tempdirs(tmpdir: Path | None = None) -> list[Path]:
    """Remove the temp dirs (:func:`tempdir_prefix`) that creates killed with SIGKILL left in
    ``tmpdir`` (default ``tempfile.gettempdir()``): only real directories owned by this uid,
    made on this host, whose pid is no longer running. Returns what was removed."""
    import re
    import tempfile

    root = Path(tmpdir) if tmpdir is not None else Path(tempfile.gettempdir())
    pattern = re.compile(
        rf"conda-unsloth-(?:{'|'.join(TEMPDIR_KINDS)})-([0-9]+)-{_host_tag()}-[A-Za-z0-9_]+",
        re.ASCII,
    )
    removed: list[Path] = []
    try:
        entries = list(root.iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m is None or pid_alive(m.group(1)):
            continue
        try:
            st = os.lstat(entry)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            continue
        shutil.rmtree(entry, ignore_errors=True)
        if not os.path.lexists(entry):
            removed.append(entry)
    return removed

"""Helpers for the bundle tests: a source env made from a private copy of the offline demo (so
its channel and wheelhouse can be taken away), the demo served over HTTP, tar surgery, and a
network namespace to run a command with no network at all."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest


def copy_demo(demo: Path, where: Path) -> Path:
    shutil.copytree(demo, where)
    return where


Change = Callable[[tarfile.TarInfo, bytes], "tuple[tarfile.TarInfo, bytes] | None"]


def rewrite(
    src: Path, dest: Path, change: Change, extra: tuple[tuple[str, bytes], ...] = ()
) -> Path:
    """A copy of the tar ``src`` with each member passed through ``change`` (None drops it),
    then ``extra`` members appended."""
    with tarfile.open(src) as tin, tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tout:
        for info in tin:
            fh = tin.extractfile(info)
            data = fh.read() if fh is not None else b""
            out = change(info, data)
            if out is None:
                continue
            new, body = out
            new.size = len(body)
            tout.addfile(new, io.BytesIO(body))
        for name, body in extra:
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tout.addfile(info, io.BytesIO(body))
    return dest


def netns_problem() -> str | None:
    """Why ``unshare -n`` cannot run a command here, or None."""
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    if os.geteuid() != 0:
        return "unshare -n needs root (CAP_SYS_ADMIN)"
    proc = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return f"unshare -n fails here: {proc.stderr.strip()[:200]}"
    return None


# run inside the namespace first: no interface but a down loopback, no route anywhere
NO_NETWORK = (
    "import socket, sys\n"
    "s = socket.socket(); s.settimeout(3)\n"
    "err = s.connect_ex(('1.1.1.1', 443))\n"
    "sys.exit(0 if err != 0 else 'the network is reachable')\n"
)


def offline(
    argv: list[str], env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """``argv`` in a new network namespace (no network at all), after proving it has none."""
    problem = netns_problem()
    if problem:
        pytest.skip(f"needs a network namespace: {problem}")
    script = f'{sys.executable} -c "$1" && shift && exec "$@"'
    return subprocess.run(
        ["unshare", "-n", "sh", "-c", script, "sh", NO_NETWORK, *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )

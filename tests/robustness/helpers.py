"""Helpers for the robustness tests: run the real CLI in a child process (so a hang or a memory
blow-up is bounded and seen, not suffered), snapshot a file tree including directories, links
and special files, and check the shape of a refusal."""

from __future__ import annotations

import os
import resource
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

TIME_LIMIT_S = 30.0  # a refusal must come well within this (it takes well under a second)
MEMORY_LIMIT = 2 << 30  # address space of the child: reading /dev/zero must not eat the host


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str
    seconds: float
    timed_out: bool


def environ(tmp: Path, **extra: str) -> dict[str, str]:
    for d in ("home", "tmpdir", "envs", "cache"):
        (tmp / d).mkdir(parents=True, exist_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CONDA_", "MAMBA_", "PIP_")) and k != "PYTHONIOENCODING"
    }
    env.update(
        HOME=str(tmp / "home"),
        TMPDIR=str(tmp / "tmpdir"),
        CONDA_ENVS_PATH=str(tmp / "envs"),
        CONDA_UNSLOTH_CACHE=str(tmp / "cache"),
        CONDA_UNSLOTH_NVML="0",
        CONDA_UNSLOTH_NVIDIA_SMI="",
    )
    env.update(extra)
    return env


def _limits() -> None:  # in the child, before exec
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_cli(args: list[str], tmp: Path, *, cwd: Path | None = None, **env: str) -> Run:
    """``python -m conda_unsloth ARGS`` with a clean environment rooted in ``tmp``, at most
    TIME_LIMIT_S seconds and 2 GiB of address space."""
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "conda_unsloth", *args],
            capture_output=True,
            text=True,
            env=environ(tmp, **env),
            cwd=cwd or tmp,
            timeout=TIME_LIMIT_S,
            preexec_fn=_limits,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        return Run(
            -1,
            _text(exc.stdout),
            _text(exc.stderr),
            time.monotonic() - t0,
            timed_out=True,
        )
    return Run(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0, False)


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode(errors="replace")


Snapshot = dict[str, tuple[str, bytes | str | int]]


def snapshot(root: Path) -> Snapshot:
    """Every entry under ``root`` (not following links): directories, files with their
    content, links with their target, special files with their type; ``tests.conftest.tree``
    sees files only, so it misses an empty directory left behind or a FIFO turned into a file."""
    out: Snapshot = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("file", p.read_bytes())
            else:
                out[rel] = ("special", stat.S_IFMT(st.st_mode))
    return out


def assert_refused(r: Run, says: str, *, code: int | None = 2) -> str:
    """One error line containing ``says`` (hint lines may follow), a non-zero exit (``code``
    when given), no traceback, and well inside the time limit. Returns the error line."""
    assert not r.timed_out, f"still running after {TIME_LIMIT_S:.0f}s: {r.err[-500:]}"
    assert r.code != 0, f"exited 0: {r.out[-300:]} {r.err[-300:]}"
    if code is not None:
        assert r.code == code, f"exit {r.code}: {r.err[-800:]}"
    assert "Traceback" not in r.err + r.out, r.err[-2000:]
    lines = [ln for ln in r.err.strip().splitlines() if not ln.startswith(("==> ", "notice: "))]
    assert lines, "no error message"
    assert lines[0].startswith("conda-unsloth: error: "), lines
    assert says in lines[0], f"{says!r} not in {lines[0]!r}"
    assert all(ln.startswith("hint: ") for ln in lines[1:]), lines
    assert r.seconds < TIME_LIMIT_S / 3, f"took {r.seconds:.1f}s"
    return lines[0]

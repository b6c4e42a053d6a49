"""micromamba (or mamba 2) as the standalone command's solver and installer:
``conda-unsloth create --installer micromamba`` (see docs/tools.md).

- Solve: ``micromamba create --dry-run --json`` with the spec's channels only
  (``--override-channels``, ``--no-rc``), strict priority, the target's platform and virtual
  packages (``CONDA_OVERRIDE_*``); its ``LINK`` list becomes our records, and
  :func:`conda_unsloth.pipeline.solve` validates them exactly as a rattler or conda solve.
- Install: exactly those records as an ``@EXPLICIT`` file with every sha256 (micromamba checks
  each download against it and solves nothing), ``micromamba install`` into the prefix that
  ``prefixtx.transaction`` created (never ``micromamba create``: given an existing env it
  deletes it without asking).

micromamba runs in a process group of its own under a supervisor
(:mod:`conda_unsloth.micromamba.supervise`) that kills the group when we are interrupted or
killed, with ``HOME`` and its root prefix in our cache folder (it registers every env it touches
in ``$HOME/.conda/environments.txt``; the user's is never written), and with an environment of
our making: no ``.condarc``/``.mambarc``, no ``CONDA_*``/``MAMBA_*`` setting of the user's.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import InstallError, UsageError

NAME = "micromamba"
EXE_ENV = "MAMBA_EXE"
# the user's settings a child must not see: rc files (with --no-rc they abort micromamba) and
# every CONDA_*/MAMBA_* variable (channel priority, pinned packages, pkgs dirs, ...)
_DROP_PREFIXES = ("CONDA_", "MAMBA_", "_CONDA", "_MAMBA")
_DROP = ("MAMBARC", "CONDARC", "CONDA_PREFIX")


def find() -> Path | None:
    """micromamba: ``$MAMBA_EXE`` (set by micromamba's shell hook), else ``micromamba`` on PATH."""
    exe = os.environ.get(EXE_ENV)
    if exe and Path(exe).is_file() and os.access(exe, os.X_OK):
        return Path(exe)
    found = shutil.which("micromamba")
    return Path(found) if found else None


def require() -> Micromamba:
    """The micromamba to use, or a UsageError saying how to provide one."""
    exe = find()
    if exe is None:
        raise UsageError(
            "--installer micromamba: no micromamba found (neither $MAMBA_EXE nor micromamba on "
            "PATH)",
            hints=[
                "put micromamba on PATH or set MAMBA_EXE=/path/to/micromamba",
                "or leave --installer out (py-rattler installs)",
            ],
        )
    return Micromamba(exe)


def conda_present() -> bool:
    """Whether this user has conda (then the standalone command keeps rattler by default)."""
    return bool(os.environ.get("CONDA_EXE")) or shutil.which("conda") is not None


@dataclass(frozen=True)
class Micromamba:
    exe: Path
    root_dir: Path | None = None  # None: cache_dir("micromamba")

    @property
    def root(self) -> Path:
        """Its root prefix (package cache ``pkgs/``, repodata cache) and ``HOME``: ours."""
        from ..cache import cache_dir

        return self.root_dir or cache_dir(NAME)

    def environ(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The child's environment: ours (see the module docstring) plus ``extra``."""
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in _DROP and not k.startswith(_DROP_PREFIXES)
        }
        home = self.root / "home"
        home.mkdir(parents=True, exist_ok=True)
        env.update(
            {
                "MAMBA_ROOT_PREFIX": str(self.root),
                "CONDA_PKGS_DIRS": str(self.root / "pkgs"),  # (not ~/.mamba/pkgs as well)
                "HOME": str(home),
                # the same records a rattler solve gives (libmamba adds pip to python's
                # depends unless told not to)
                "MAMBA_ADD_PIP_AS_PYTHON_DEPENDENCY": "false",
                "MAMBA_NO_BANNER": "1",
            }
        )
        env.update(extra or {})
        return env

    def version(self) -> str:
        return _version(str(self.exe))

    def run(
        self,
        args: Sequence[str],
        *,
        input: str | None = None,
        extra_env: Mapping[str, str] | None = None,
        show_stderr: bool = False,
    ) -> tuple[int, str, str]:
        """``micromamba ARGS`` under the supervisor (module docstring): (exit code, stdout,
        stderr). On any interrupt the whole process group is killed and waited for before the
        exception goes on, so nothing of it writes after a rollback."""
        from ..prefixtx import HELD_LOCKS
        from ..signals import signals_held

        fds = tuple(HELD_LOCKS)
        cmd = [
            sys.executable,
            "-m",
            "conda_unsloth.micromamba.supervise",
            str(os.getpid()),
            ",".join(map(str, fds)),
            str(self.exe),
            *args,
        ]
        proc: subprocess.Popen[str] | None = None
        try:
            with signals_held():
                proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=None if show_stderr else subprocess.PIPE,
                    text=True,
                    env=self.environ(extra_env),
                    start_new_session=True,
                    pass_fds=fds,
                )
            out, err = proc.communicate(input)
        except BaseException:
            if proc is not None:
                _kill_group(proc)
            raise
        return proc.returncode, out or "", err or ""


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@functools.lru_cache(maxsize=8)
def _version(exe: str) -> str:
    try:
        out = subprocess.run(
            [exe, "--version"], capture_output=True, text=True, timeout=60, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "?"
    return out.strip().splitlines()[-1] if out.strip() else "?"


def problem_lines(stderr: str) -> list[str]:
    """micromamba's own explanation of a failure: its ``error``/``critical`` lines and the
    indented lines that follow them (the tree of an unsatisfiable solve), credentials redacted."""
    from ..redact import redact_text

    out: list[str] = []
    keep = False
    for line in stderr.splitlines():
        head = line.split(None, 2)
        if len(head) >= 2 and head[0] in ("error", "critical") and head[1] == "libmamba":
            text = head[2].strip() if len(head) > 2 else ""
            keep = True
            if text and text not in out:
                out.append(text)
        elif keep and line.startswith((" ", "\t")) and line.strip():
            out.append(line.strip())
        else:
            keep = False
    return [redact_text(x) for x in out]


def reason(lines: list[str], fallback: str) -> str:
    """One line from :func:`problem_lines`: a heading that only announces what follows
    ("Multiple errors occurred:") gives way to the lines under it (at most three)."""
    said = [ln for ln in lines if not ln.endswith(":")][:3]
    return "; ".join(said) or (lines[0] if lines else fallback)


def install(records: Sequence[object], prefix: Path, show_progress: bool = False) -> None:
    """Install exactly ``records`` into ``prefix`` (made by ``prefixtx.transaction``) with
    micromamba: an ``@EXPLICIT`` list with every package's sha256 on stdin, ``micromamba
    install`` (the runtime's installer; see :mod:`conda_unsloth.runtime`)."""
    from ..exports.explicit import ordered
    from ..solvers.base import Record

    recs = [r for r in records if isinstance(r, Record)]
    lines = ["@EXPLICIT"]
    for r in ordered(recs):
        digest = r.sha256 or r.md5
        if not digest:  # micromamba would install it unchecked, with a warning only
            raise InstallError(
                f"{r.fn} has neither sha256 nor md5: micromamba could not check it; refusing",
                hints=["install with --installer rattler, or fix the channel's repodata"],
            )
        lines.append(f"{r.url}#{digest}")
    mm = require()
    (prefix / "conda-meta").mkdir(exist_ok=True)  # micromamba installs only into an env
    code, _out, err = mm.run(
        ["install", "-y", "-p", str(prefix), "--file", "/dev/stdin", "--no-rc"],
        input="\n".join(lines) + "\n",
        show_stderr=show_progress,
    )
    if code != 0:
        why = reason(problem_lines(err), f"exit code {code}")
        raise InstallError(f"installing conda packages with micromamba failed: {why}")

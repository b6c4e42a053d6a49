"""Post-install verification: run ``probe.py`` inside an environment's own python and read its
report.

``probe.py`` and ``triton_kernel.py`` never import this package (the env under test need not
contain it); ``report.py`` validates, renders and judges what the probe wrote.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ..errors import VerifyError
from . import probe
from .report import VerifyReport, load

PROBE = Path(__file__).with_name("probe.py")
KERNEL = Path(__file__).with_name("triton_kernel.py")
# How long the whole probe may take when no --timeout is given (each check has its own limit).
OVERALL_TIMEOUT = 1800.0

__all__ = ["KERNEL", "PROBE", "VerifyReport", "python_of", "run_probe", "run_verification"]


def python_of(prefix: Path) -> Path:
    """The interpreter of an environment (linux-64: ``<prefix>/bin/python``)."""
    for name in ("python", "python3"):
        exe = prefix / "bin" / name
        if exe.is_file():
            return exe
    raise VerifyError(
        f"{prefix} has no bin/python: verification runs inside the environment's own python",
        hints=[f"conda install -p {prefix} python", f"conda unsloth doctor -p {prefix}"],
    )


def probe_command(
    python: Path,
    out: Path,
    *,
    expect_cuda: str | None = None,
    checks: Sequence[str] = (),
    timeout: float | None = None,
) -> list[str]:
    cmd = [str(python), "-I", str(PROBE), "--json", str(out), "--kernel", str(KERNEL)]
    if expect_cuda:
        cmd += ["--expect-cuda", expect_cuda]
    if checks:
        cmd += ["--checks", ",".join(checks)]
    if timeout:
        cmd += ["--timeout", f"{timeout:g}"]
    return cmd


def _stop(proc: subprocess.Popen[str], grace: float = 15.0) -> None:
    """SIGTERM the probe's process group (it kills its workers and writes a partial report),
    then SIGKILL what is left."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 30.0)):
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def run_probe(
    python: Path,
    *,
    expect_cuda: str | None = None,
    checks: Sequence[str] = (),
    timeout: float | None = None,
    overall_timeout: float | None = None,
) -> VerifyReport:
    """Run the probe with ``python`` (``-I``: no user site, no PYTHONPATH) and load its report.

    The probe runs in its own session; on a timeout or an exception here (Ctrl-C) its process
    group is terminated, so no probe or worker outlives the call."""
    from ..tempdirs import tempdir_prefix

    with tempfile.TemporaryDirectory(prefix=tempdir_prefix("verify")) as tmp:
        out = Path(tmp) / "report.json"
        cmd = probe_command(python, out, expect_cuda=expect_cuda, checks=checks, timeout=timeout)
        n = len(probe.select(list(checks))) if checks else len(probe.CHECKS)
        limit = overall_timeout or ((timeout * n + 120.0) if timeout else OVERALL_TIMEOUT)
        try:
            proc = subprocess.Popen(
                cmd,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
                start_new_session=True,
            )
        except OSError as exc:
            raise VerifyError(f"cannot run {python}: {exc.strerror}") from None
        try:
            stdout, stderr = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            _stop(proc)
            raise VerifyError(
                f"the verification probe ran longer than {limit:g} s and was stopped",
                hints=["--timeout S sets the limit of each check"],
            ) from None
        except BaseException:  # KeyboardInterrupt: stop the probe and its workers, re-raise
            _stop(proc)
            raise
        if not out.is_file():
            tail = (stderr or stdout or "").strip().splitlines()
            why = tail[-1] if tail else "no output"
            raise VerifyError(
                f"the verification probe wrote no report (exit code {proc.returncode}): {why}",
                hints=[f"run it by hand: {' '.join(cmd[:3])} --json -"],
            )
        return load(out)


def run_verification(
    prefix: Path,
    *,
    expect_cuda: str | None = None,
    checks: Sequence[str] = (),
    timeout: float | None = None,
) -> VerifyReport:
    """Verify the environment at ``prefix`` on this machine's GPU (used by ``create``)."""
    return run_probe(python_of(prefix), expect_cuda=expect_cuda, checks=checks, timeout=timeout)

"""Shared helpers for the benchmarks: machine facts and versions, result files, table printing,
and one measured child process (wall, CPU of the whole tree, peak memory of the whole tree, all
taken from outside the process)."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _version(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout or out.stderr).strip().splitlines()[0] if out.returncode == 0 else None


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """The machine and the versions of everything measured, for the result file."""
    from conda_unsloth import __version__

    uv = shutil.which("uv", path=os.path.dirname(sys.executable)) or shutil.which("uv")
    root = Path(__file__).resolve().parent.parent
    commit = _version(["git", "-C", str(root), "rev-parse", "--short", "HEAD"])
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "conda_unsloth": __version__,
        "commit": commit,
        "versions": {
            "py-rattler": _dist_version("py-rattler"),
            "uv": _version([uv, "--version"]) if uv else None,
            "pip": _dist_version("pip"),
            "packaging": _dist_version("packaging"),
            "psutil": _dist_version("psutil"),
        },
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "n": len(samples),
    }


def save(
    name: str, command: str, rows: list[dict[str, Any]], extra: dict[str, Any] | None = None
) -> Path:
    """``bench/results/NAME.json`` (or ``$BENCH_RESULTS/NAME.json``): the rows, the command,
    the machine and versions, the load average when it ended."""
    out = Path(os.environ.get("BENCH_RESULTS") or RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": name,
        "command": command,
        "machine": machine(),
        "rows": rows,
        **(extra or {}),
    }
    path = out / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    widths = [max(len(c), *(len(fmt(r.get(c))) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in rows:
        print("  ".join(fmt(r.get(c)).ljust(w) for c, w in zip(columns, widths, strict=True)))


def fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


# ----------------------------------------------------------------------------- one child


@dataclass
class Measured:
    wall: float  # seconds, start to reaped
    cpu: float  # user + system of the child and every descendant it waited for
    peak_mb: float | None  # largest sum of RSS over the process tree (sampled), None: not sampled
    returncode: int
    stdout: str
    stderr: str


def run_measured(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    memory: bool = False,
    poll: float = 0.002,
    check: bool = True,
) -> Measured:
    """Run ``cmd`` and measure it from outside: wall time; CPU from the kernel's account of the
    reaped child (``wait4``: the child and all its waited-for descendants); with ``memory``,
    the peak of the summed resident memory of the child's whole process tree, sampled every
    ``poll`` seconds with psutil (the harness's own memory is never counted, unlike a child's
    ``ru_maxrss``, which on Linux starts at its parent's). Sampling costs CPU, so timed runs
    leave ``memory`` off."""
    import tempfile

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            list(cmd), env=dict(env) if env else None, cwd=cwd, stdout=out, stderr=err
        )
        peak: list[float] = []
        done = threading.Event()
        sampler = None
        if memory:
            sampler = threading.Thread(
                target=_sample, args=(proc.pid, poll, done, peak), daemon=True
            )
            sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        done.set()
        if sampler is not None:
            sampler.join()
        out.seek(0)
        err.seek(0)
        result = Measured(
            wall,
            usage.ru_utime + usage.ru_stime,
            round(max(peak) / 2**20, 1) if peak else None,
            proc.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
        )
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {result.returncode}: {result.stderr[-2000:]}")
    return result


def _sample(pid: int, poll: float, done: threading.Event, peak: list[float]) -> None:
    import psutil

    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    best = 0
    while not done.is_set():
        total = 0
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for p in procs:
            with contextlib.suppress(
                psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess
            ):
                total += p.memory_info().rss
        best = max(best, total)
        time.sleep(poll)
    peak.append(best)


def med(xs: Sequence[float]) -> float:
    return statistics.median(xs)

"""Create an environment from a SolvedEnv: link the conda packages, run the pip stage, write the
marker — and lose nothing on the way.

The prefix itself is changed only inside ``prefixtx.transaction`` (lock, journal, rollback,
recovery); this module does the building: conda packages, the pip stage and its checks.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cache import cache_dir
from .errors import InstallError, SpecError, UnslothError
from .solvers.base import PipPackage, Record, SolvedEnv

Progress = Callable[[str], None]


@dataclass(frozen=True)
class PipOptions:
    """Where the pip stage finds wheels."""

    find_links: tuple[str, ...] = ()
    index_url: str | None = None
    offline: bool = False


# ----------------------------------------------------------------------------- the build


def install_with_rattler(
    records: Sequence[Record], prefix: Path, show_progress: bool = False
) -> None:
    """Link conda packages into ``prefix`` with py-rattler, in a child process (see
    rattler_install) that is killed and waited for if we are interrupted, so nothing links
    behind a rollback. (Inside conda, conda's own transaction does this: conda/install.py.)"""
    cache = cache_dir("pkgs")
    # the job goes through the child's stdin: a job file would be left in /tmp by a SIGKILL
    job = json.dumps(
        {
            "records": [r.to_json(redact=False) for r in records],
            "prefix": str(prefix),
            "cache": str(cache),
            "progress": show_progress,
        }
    )
    from .prefixtx import run_child

    # in a child that holds our prefix lock, dies with us and is killed if we are stopped
    code, _, err = run_child(
        [sys.executable, "-m", "conda_unsloth.rattler_install", "-"],
        input=job,
        stdout=subprocess.DEVNULL,
        stderr=None if show_progress else subprocess.PIPE,
    )
    if code != 0:
        line = err.strip().splitlines()[-1:] or [f"exit code {code}"]
        raise InstallError(f"installing conda packages failed: {line[0]}")


def verify_local_hashes(records: list[Record]) -> None:
    """For file:// packages, check sha256 before anything is linked (remote ones are checked by
    the installer on download)."""
    for r in records:
        if not r.url.startswith("file://") or not r.sha256:
            continue
        path = Path(r.url[len("file://") :])
        try:
            digest = sha256_file(path)
        except OSError as exc:
            raise InstallError(f"package {r.fn} cannot be read: {exc.strerror}") from None
        if digest != r.sha256:
            raise SpecError(
                f"sha256 mismatch for {r.fn}: lock says {r.sha256[:12]}…, file is {digest[:12]}…; "
                "refusing to install",
                hints=["the lock or the channel was modified; re-solve with conda unsloth solve"],
            )


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def env_python(prefix: Path) -> Path:
    return prefix / "bin" / "python"


def _run(
    cmd: list[str], what: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """pip writes into the prefix: run it like rattler's child (see prefixtx.run_child)."""
    from .prefixtx import run_child

    try:
        code, out, err = run_child(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    except OSError as exc:
        raise InstallError(f"{what}: cannot run {cmd[0]}: {exc.strerror}") from None
    return subprocess.CompletedProcess(cmd, code, out, err)


def _pip_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def python_dists(prefix: Path) -> dict[str, list[tuple[str, str, str]]]:
    """Every distribution in the env's site-packages (dist-info and egg-info): normalized name
    -> [(version, installer, metadata folder name)], where a distribution a conda record lists
    (or whose INSTALLER says so) counts as "conda". Reads metadata only (see inventory.py)."""
    from . import inventory

    out: dict[str, list[tuple[str, str, str]]] = {}
    for d in inventory.read(prefix).dists:
        installer = "conda" if d.from_conda else (d.installer or "?")
        out.setdefault(_norm(d.name), []).append((d.version, installer, d.path.name))
    return out


def conda_dists(prefix: Path) -> dict[str, str]:
    """The Python distributions conda installed: normalized name -> version."""
    return {
        name: entries[0][0]
        for name, entries in python_dists(prefix).items()
        if any(inst == "conda" for _, inst, _ in entries)
    }


def pip_stage(
    prefix: Path,
    requirements: list[str],
    constraints: list[str],
    opts: PipOptions,
    locked: list[PipPackage] | None = None,
    require_hashes: bool = False,
) -> list[PipPackage]:
    """Install the pip companions into the env so that nothing conda installed is replaced.

    Without a lock: pip resolves the closure first (``--dry-run --report``, constrained so every
    conda-provided distribution keeps conda's version), then installs exactly that closure with
    ``--no-deps`` and its hashes. With a lock: the locked wheels with ``--require-hashes``.
    Any resolved item that is one of conda's distributions (say a ``torch 2.5.1+cu121`` wheel,
    which ``torch==2.5.1`` would admit) is refused, and afterwards conda's distributions must be
    exactly as before. Returns what was installed (name, version, url, sha256).
    """
    import tempfile

    python = env_python(prefix)
    if not python.exists():
        raise InstallError(f"{python} is missing: the env has no python for the pip stage")
    owned = conda_dists(prefix)
    pins = [f"{name}=={version}" for name, version in sorted(owned.items())]
    source = []
    if opts.offline or opts.find_links:
        source.append("--no-index")
    for fl in opts.find_links:
        source += ["--find-links", fl]
    if opts.index_url and not opts.offline:
        source += ["--index-url", opts.index_url]
    base = [str(python), "-m", "pip", "install", "--no-input", "--no-cache-dir"]
    with tempfile.TemporaryDirectory(prefix="conda-unsloth-pip-") as tmp:
        work = Path(tmp)
        cfile = work / "constraints.txt"
        cfile.write_text("\n".join(dict.fromkeys([*constraints, *pins])) + "\n")
        if locked is None:
            report = work / "report.json"
            cmd = [*base, "--dry-run", "--quiet", "--report", str(report), "-c", str(cfile)]
            proc = _run([*cmd, *source, *requirements], "pip stage", _pip_env())
            if proc.returncode != 0:
                raise InstallError(
                    "pip could not resolve the companions against conda's packages: "
                    + _last_error_line(proc.stderr),
                    hints=["conda unsloth env --json shows the pinned companions"],
                )
            locked = _from_report(json.loads(report.read_text()))
        clash = [p for p in locked if _norm(p.name) in owned]
        if clash:
            p = clash[0]
            raise InstallError(
                f"pip would replace conda's {p.name} {owned[_norm(p.name)]} with {p.name} "
                f"{p.version}; refusing (F12)",
                hints=[
                    "a pip requirement pins another build of a conda package; "
                    "check `conda unsloth env --json` for the companions"
                ],
            )
        if not locked:
            return []
        lines = []
        for p in locked:
            line = p.requirement()
            if p.sha256:
                line += f" --hash=sha256:{p.sha256}"
            lines.append(line)
        req = work / "requirements.txt"
        req.write_text("\n".join(lines) + "\n")
        cmd = [*base, "--no-deps", "-c", str(cfile), *source, "-r", str(req)]
        if all(p.sha256 for p in locked) or require_hashes:
            cmd.append("--require-hashes")
        proc = _run(cmd, "pip stage", _pip_env())
        if proc.returncode != 0:
            raise InstallError("pip install failed: " + _last_error_line(proc.stderr))
    after = conda_dists(prefix)
    if after != owned:
        changed = sorted(set(owned.items()) ^ set(after.items()))
        raise InstallError(f"the pip stage changed conda's distributions: {changed[:3]} (F12)")
    return locked


def _from_report(report: dict[str, Any]) -> list[PipPackage]:
    out = []
    for item in report.get("install", []):
        meta = item.get("metadata", {})
        info = item.get("download_info", {})
        hashes = (info.get("archive_info") or {}).get("hashes") or {}
        out.append(
            PipPackage(
                name=str(meta.get("name")),
                version=str(meta.get("version")),
                url=info.get("url"),
                sha256=hashes.get("sha256"),
                direct=bool(item.get("is_direct")),
            )
        )
    return out


def _last_error_line(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR")]
    return (errors or lines or ["(no output)"])[-1]


def post_pip_checks(prefix: Path) -> None:
    """`pip check` passes and every distribution is installed once (one torch: F12)."""
    python = env_python(prefix)
    proc = _run([str(python), "-m", "pip", "check"], "pip check", _pip_env())
    if proc.returncode != 0:
        raise InstallError("pip check failed: " + (proc.stdout.strip().splitlines() or ["?"])[0])
    twice = {n: e for n, e in python_dists(prefix).items() if len(e) > 1}
    if twice:
        name, entries = sorted(twice.items())[0]
        shown = ", ".join(f"{v} ({inst})" for v, inst, _ in entries)
        raise InstallError(
            f"{name} is installed more than once after the pip stage: {shown} (F12)"
        )


def torch_dists(prefix: Path) -> list[str]:
    return [f"{d} ({inst})" for _, inst, d in python_dists(prefix).get("torch", [])]


def describe_failure(exc: BaseException) -> str:
    if isinstance(exc, UnslothError):
        return exc.message
    from .prefixtx import Interrupted

    if isinstance(exc, Interrupted):
        return f"interrupted by signal {exc.signum}"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return f"{type(exc).__name__}: {exc}"


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def lock_digest(solved: SolvedEnv) -> str:
    h = hashlib.sha256()
    for r in sorted(solved.records, key=lambda r: r.name):
        h.update(f"{r.url}#{r.sha256}\n".encode())
    for p in solved.pip:
        h.update(f"{p.name}=={p.version}#{p.sha256}\n".encode())
    return h.hexdigest()


def stdin_is_interactive() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()

"""Create an environment from a SolvedEnv: link the conda packages, run the pip stage, write the
marker — and lose nothing on the way.

The prefix itself is changed only inside ``prefixtx.transaction`` (lock, journal, rollback,
recovery); this module does the building: conda packages, the pip stage and its checks.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

# hashlib, json, subprocess and time are imported where they are used: `solve` imports this
# module (for PipOptions) and pays nothing for the create's tools (bench/bench_solve.py)
from .errors import InstallError, SpecError, UnslothError, UsageError
from .solvers.base import PipPackage, Record, SolvedEnv

Progress = Callable[[str], None]


@dataclass(frozen=True)
class PipOptions:
    """Where the pip stage finds wheels, and which installer runs it (``auto``: uv when there
    is one, else the env's pip; see :mod:`conda_unsloth.pipstage`)."""

    find_links: tuple[str, ...] = ()
    index_url: str | None = None
    offline: bool = False
    installer: str = "auto"


# ----------------------------------------------------------------------------- the build


def install_with_rattler(
    records: Sequence[Record], prefix: Path, show_progress: bool = False
) -> None:
    """Link conda packages into ``prefix`` with py-rattler, in a child process (see
    rattler_install) that is killed and waited for if we are interrupted, so nothing links
    behind a rollback. (Inside conda, conda's own transaction does this: conda/install.py.)"""
    import json
    import subprocess

    from .cache import cache_dir

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
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def env_python(prefix: Path) -> Path:
    return prefix / "bin" / "python"


def check_pip_stage(
    opts: PipOptions,
    conda_names: Sequence[str],
    say: Progress | None = None,
    *,
    own_urls: bool = False,
) -> None:
    """Before anything is built: the pip stage will have a wheel source and an installer
    (``conda_names``: the conda packages the env will get, to know whether it gets pip or uv;
    ``own_urls``: every wheel comes from a url a lock records, so no index or folder is
    needed). Raises UsageError/InstallError naming the flag that fixes it."""
    from . import pipstage

    src = pipstage.sources(opts.find_links, opts.index_url, opts.offline)
    if not src.has_source and not own_urls:
        raise UsageError(
            "--offline and no wheel source for the pip stage: give --pip-find-links DIR, a "
            "folder with the companions' wheels (or leave --offline out to use an index)",
            hints=["conda unsloth env --json lists the pinned companions"],
        )
    names = set(conda_names)
    if "uv" in names and opts.installer != "pip":
        return  # the env brings its own uv
    pipstage.choose_installer(None, opts.installer, pip_in_env="pip" in names, say=say or _quiet)


def _quiet(msg: str) -> None:
    return None


def pip_stage(
    prefix: Path,
    requirements: list[str],
    constraints: list[str],
    opts: PipOptions,
    locked: list[PipPackage] | None = None,
    require_hashes: bool = False,
    say: Progress | None = None,
) -> list[PipPackage]:
    """Install the pip companions into the env so that nothing conda installed is replaced,
    with uv or pip (``opts.installer``; see :mod:`conda_unsloth.pipstage`).

    Without a lock: the closure is resolved first (constrained so every conda-provided
    distribution keeps conda's version), then exactly that closure is installed with
    ``--no-deps`` and its hashes. With a lock: the locked wheels with ``--require-hashes``.
    Any resolved item that is one of conda's distributions (say a ``torch 2.5.1+cu121`` wheel,
    which ``torch==2.5.1`` would admit) is refused, and afterwards conda's distributions must be
    exactly as before. What was installed is byte-compiled. Returns what was installed (name,
    version, url, sha256; credentials removed from the url).
    """
    from . import inventory, pipstage

    python = env_python(prefix)
    if not python.exists():
        raise InstallError(f"{python} is missing: the env has no python for the pip stage")
    say = say or _quiet
    src = pipstage.sources(opts.find_links, opts.index_url, opts.offline)
    installer = pipstage.choose_installer(prefix, opts.installer, say=say)
    owned = inventory.conda_dists(prefix)
    result = pipstage.run_stage(
        prefix, requirements, constraints, owned, src, installer, locked, require_hashes, say
    )
    return result.installed


def post_pip_checks(prefix: Path) -> None:
    """Every distribution is installed once (one torch: F12) and every installed distribution's
    requirements are met (what `pip check` says, read from the metadata)."""
    from . import inventory, pipstage
    from .knowledge.packages import normalize

    names: dict[str, list[str]] = {}
    for d in pipstage.read_dists(pipstage.site_packages(prefix)):
        names.setdefault(normalize(d.name), []).append(d.folder)
    if any(len(v) > 1 for v in names.values()):
        twice = {n: e for n, e in inventory.python_dists(prefix).items() if len(e) > 1}
        name, entries = sorted(twice.items())[0]
        shown = ", ".join(f"{v} ({inst})" for v, inst, _ in entries)
        raise InstallError(
            f"{name} is installed more than once after the pip stage: {shown} (F12)"
        )
    problems = pipstage.dependency_problems(prefix)
    if problems:
        raise InstallError(
            "pip check failed: " + problems[0],
            hints=[f"{prefix}/bin/python -m pip check (or uv pip check) lists every problem"],
        )


def describe_failure(exc: BaseException) -> str:
    if isinstance(exc, UnslothError):
        return exc.message
    from .signals import Interrupted

    if isinstance(exc, Interrupted):
        return f"interrupted by signal {exc.signum}"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return f"{type(exc).__name__}: {exc}"


def now() -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def lock_digest(solved: SolvedEnv) -> str:
    import hashlib

    h = hashlib.sha256()
    for r in sorted(solved.records, key=lambda r: r.name):
        h.update(f"{r.url}#{r.sha256}\n".encode())
    for p in solved.pip:
        h.update(f"{p.name}=={p.version}#{p.sha256}\n".encode())
    return h.hexdigest()


def stdin_is_interactive() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()

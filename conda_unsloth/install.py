"""Create an environment from a SolvedEnv: link the conda packages, run the pip stage, write the
marker — and lose nothing on the way.

Guarantees:
- An existing prefix is never touched unless ``force``; then it is moved aside (a rename on the
  same file system, so intact) and restored if anything fails; it is deleted only after the new
  env was built (and verified, when verification ran).
- A failure, Ctrl-C or SIGTERM after we started writing removes the new prefix
  (``keep_failed`` keeps it, marked failed in the marker).
- A lock file next to the prefix stops two creates of the same prefix.
- Files we write are written atomically.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from .errors import InstallError, PrefixError, UnslothError
from .prefix import is_env
from .solvers.base import PipPackage, Record, SolvedEnv

Progress = Callable[[str], None]
TORCH_DISTS = ("torch",)


class Interrupted(KeyboardInterrupt):
    """SIGTERM/SIGINT during a create: unwinds through the rollback like KeyboardInterrupt."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """Turn SIGTERM (and SIGINT) into an exception so cleanup runs, then restore handlers."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signum)

    if threading_main():
        old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    else:  # pragma: no cover - signals can only be set from the main thread
        old = {}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


# ----------------------------------------------------------------------------- prefix lock


@contextlib.contextmanager
def prefix_lock(prefix: Path) -> Iterator[Path]:
    """An exclusive lock for building ``prefix`` (a file beside it, removed afterwards)."""
    parent = prefix.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PrefixError(f"cannot create {parent}: {exc.strerror}") from None
    lock_path = parent / f".{prefix.name}.conda-unsloth.lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise PrefixError(f"cannot write in {parent}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            raise PrefixError(
                f"another conda unsloth create is building {prefix} (pid {other})",
                hints=["wait for it to finish, or build elsewhere with -p"],
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            yield lock_path
        finally:
            with contextlib.suppress(OSError):
                lock_path.unlink()
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- the build


@dataclass
class CreateOptions:
    prefix: Path
    force: bool = False
    keep_failed: bool = False
    cache_dir: Path | None = None
    pip_find_links: tuple[str, ...] = ()
    pip_index_url: str | None = None
    offline: bool = False
    require_hashes: bool = False
    progress: Progress = field(default=lambda msg: None)


@dataclass
class CreateResult:
    prefix: Path
    records: int
    pip: list[PipPackage]
    seconds: dict[str, float]
    replaced: bool
    marker: Path | None = None
    verification: dict[str, Any] | None = None


def check_target(prefix: Path, force: bool) -> bool:
    """Refuse to touch an existing prefix without ``force``; return True if it will be replaced."""
    if not prefix.exists():
        return False
    if not force:
        what = "environment" if is_env(prefix) else "directory"
        raise PrefixError(
            f"{prefix} already exists ({what}); nothing was changed",
            hints=[
                "add --force to replace it once the new env is built and verified",
                "or choose another -n/-p",
            ],
        )
    if prefix.is_dir() and (is_env(prefix) or not any(prefix.iterdir())):
        return True
    raise PrefixError(
        f"{prefix} exists and is not a conda environment; refusing to replace it even with --force",
    )


def install_records(
    records: list[Record],
    prefix: Path,
    cache_dir: Path | None,
    platform: str,
    *,
    show_progress: bool = False,
) -> None:
    """Link conda packages into ``prefix``: inside conda with conda's own fetch-verify-link
    transaction, standalone with py-rattler (downloads verified by sha256 either way)."""
    if (
        "conda" in sys.modules
    ):  # inside conda (tested against a real conda, see test_conda_install)
        from .conda_install import install_explicit

        install_explicit(records, prefix)
        return
    import asyncio

    import rattler

    rd = []
    for r in records:
        pr = rattler.PackageRecord(
            name=r.name,
            version=r.version,
            build=rattler.BuildString(r.build),
            build_number=r.build_number,
            subdir=r.subdir,
            noarch=r.noarch if r.noarch in ("python", "generic") else None,  # type: ignore[arg-type]
            depends=list(r.depends),
            constrains=list(r.constrains),
            sha256=bytes.fromhex(r.sha256) if r.sha256 else None,
            md5=bytes.fromhex(r.md5) if r.md5 else None,
            size=r.size,
        )
        rd.append(rattler.RepoDataRecord(pr, r.fn, r.url, r.channel))
    cache = cache_dir or default_cache_dir() / "pkgs"
    try:
        asyncio.run(
            rattler.install(
                rd, target_prefix=str(prefix), cache_dir=cache, show_progress=show_progress
            )
        )
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InstallError(f"installing conda packages failed: {first}") from None


def default_cache_dir() -> Path:
    env = os.environ.get("CONDA_UNSLOTH_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "conda-unsloth"


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
            raise InstallError(
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
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    except OSError as exc:
        raise InstallError(f"{what}: cannot run {cmd[0]}: {exc.strerror}") from None


def _pip_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PYTHONNOUSERSITE"] = "1"
    return env


def pip_stage(
    prefix: Path,
    requirements: list[str],
    constraints: list[str],
    opts: CreateOptions,
    locked: list[PipPackage] | None = None,
) -> list[PipPackage]:
    """Install the pip companions into the env so nothing conda installed can be replaced.

    Without a lock: pip resolves the closure first (``--dry-run --report``, constrained so every
    conda-provided distribution keeps conda's version), then installs exactly that closure with
    ``--no-deps`` and its hashes. With a lock: the locked wheels with ``--require-hashes``.
    Returns what was installed (name, version, url, sha256).
    """
    python = env_python(prefix)
    if not python.exists():
        raise InstallError(f"{python} is missing: the env has no python for the pip stage")
    work = prefix / "conda-meta" / ".conda-unsloth-pip"
    work.mkdir(parents=True, exist_ok=True)
    cfile = work / "constraints.txt"
    cfile.write_text("\n".join(constraints) + "\n")
    source = []
    if opts.offline or opts.pip_find_links:
        source.append("--no-index")
    for fl in opts.pip_find_links:
        source += ["--find-links", fl]
    if opts.pip_index_url and not opts.offline:
        source += ["--index-url", opts.pip_index_url]
    base = [str(python), "-m", "pip", "install", "--no-input", "--no-cache-dir"]
    if locked is None:
        report = work / "report.json"
        proc = _run(
            [
                *base,
                "--dry-run",
                "--quiet",
                "--report",
                str(report),
                "-c",
                str(cfile),
                *source,
                *requirements,
            ],
            "pip stage",
            _pip_env(),
        )
        if proc.returncode != 0:
            raise InstallError(
                "pip could not resolve the companions against conda's packages: "
                + _last_error_line(proc.stderr),
                hints=["conda unsloth env --json shows the pinned companions"],
            )
        locked = _from_report(json.loads(report.read_text()))
    if not locked:
        return []
    req = work / "requirements.txt"
    lines = []
    for p in locked:
        line = f"{p.name}=={p.version}"
        if p.sha256:
            line += f" --hash=sha256:{p.sha256}"
        lines.append(line)
    req.write_text("\n".join(lines) + "\n")
    hashes = all(p.sha256 for p in locked)
    cmd = [*base, "--no-deps", "-c", str(cfile), *source, "-r", str(req)]
    if hashes or opts.require_hashes:
        cmd.append("--require-hashes")
    proc = _run(cmd, "pip stage", _pip_env())
    if proc.returncode != 0:
        raise InstallError("pip install failed: " + _last_error_line(proc.stderr))
    shutil.rmtree(work, ignore_errors=True)
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
            )
        )
    return out


def _last_error_line(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR")]
    return (errors or lines or ["(no output)"])[-1]


def post_pip_checks(prefix: Path) -> None:
    """`pip check` passes and exactly one torch distribution is installed (conda's, if any)."""
    python = env_python(prefix)
    proc = _run([str(python), "-m", "pip", "check"], "pip check", _pip_env())
    if proc.returncode != 0:
        raise InstallError("pip check failed: " + (proc.stdout.strip().splitlines() or ["?"])[0])
    torch = torch_dists(prefix)
    if len(torch) > 1:
        raise InstallError(
            "more than one torch distribution after the pip stage: " + ", ".join(torch) + " (F12)"
        )


def torch_dists(prefix: Path) -> list[str]:
    found = []
    for sp in prefix.glob("lib/python3*/site-packages"):
        for d in sp.glob("*.dist-info"):
            name = d.name.removesuffix(".dist-info").rsplit("-", 1)[0].lower().replace("_", "-")
            if name in TORCH_DISTS:
                installer = (
                    (d / "INSTALLER").read_text().strip() if (d / "INSTALLER").exists() else "?"
                )
                found.append(f"{d.name} ({installer})")
    return found


def remove_prefix(prefix: Path) -> None:
    shutil.rmtree(prefix, ignore_errors=True)
    if prefix.exists():  # pragma: no cover - e.g. a file we cannot delete
        raise InstallError(f"could not remove {prefix} completely; remove it by hand")


def backup_path(prefix: Path) -> Path:
    return prefix.with_name(f".{prefix.name}.conda-unsloth-backup-{os.getpid()}")


def journal_path(prefix: Path) -> Path:
    """A file beside the prefix that exists exactly while a create is changing it."""
    return prefix.with_name(f".{prefix.name}.conda-unsloth-journal")


def recover(prefix: Path, say: Progress) -> None:
    """Finish what a create killed with SIGKILL (or a power cut) left, from its journal: remove
    the half-built prefix and put a moved-aside env back. Runs only when no other create holds
    the prefix's lock, and touches only what the journal names."""
    journal = journal_path(prefix)
    if not journal.exists():
        return
    try:
        with prefix_lock(prefix):
            try:
                info = json.loads(journal.read_text())
            except (OSError, ValueError):
                info = {}
            backup = Path(info["backup"]) if info.get("backup") else None
            if backup is not None and not backup.exists():
                # killed before the old env was moved aside: the prefix is the old env, intact
                journal.unlink()
                return
            if prefix.exists():
                say(f"removing {prefix}: an earlier create was killed before it finished")
                remove_prefix(prefix)
            if backup is not None:
                say(f"restoring {prefix}: an earlier --force create was killed")
                os.replace(backup, prefix)
            journal.unlink()
    except PrefixError:
        return  # another create is running right now; it owns these files


@contextlib.contextmanager
def transaction(
    prefix: Path, replacing: bool, keep_failed: bool, on_fail: Callable[[BaseException], None]
) -> Iterator[None]:
    """Move an existing prefix aside, build, and either commit (drop the backup) or roll back
    (remove the new prefix, put the old one back). A journal beside the prefix is written
    before anything changes and removed last, so a create killed with SIGKILL can be finished
    by the next one (see recover)."""
    from .spec import write_atomic

    backup = backup_path(prefix) if replacing else None
    journal = journal_path(prefix)
    write_atomic(
        journal, json.dumps({"pid": os.getpid(), "backup": str(backup) if backup else None})
    )
    if backup is not None:
        os.replace(prefix, backup)
    try:
        yield
    except BaseException as exc:
        kept = False
        if keep_failed and prefix.exists():
            with contextlib.suppress(Exception):
                on_fail(exc)
            kept = True
        if not kept:
            shutil.rmtree(prefix, ignore_errors=True)
        if backup is not None:
            if kept:
                failed = prefix.with_name(prefix.name + ".failed")
                shutil.rmtree(failed, ignore_errors=True)
                os.replace(prefix, failed)
            os.replace(backup, prefix)
        journal.unlink(missing_ok=True)
        raise
    else:
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
        journal.unlink(missing_ok=True)


def describe_failure(exc: BaseException) -> str:
    if isinstance(exc, UnslothError):
        return exc.message
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


def python_of(solved: SolvedEnv) -> str | None:
    py = solved.record("python")
    return py.version if py else None


def stdin_is_interactive() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()

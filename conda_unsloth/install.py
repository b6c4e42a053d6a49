"""Create an environment from a SolvedEnv: link the conda packages, run the pip stage, write the
marker — and lose nothing on the way.

The prefix itself is changed only inside ``prefixtx.transaction`` (lock, journal, rollback,
recovery); this module does the building: conda packages, the pip stage and its checks.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

# hashlib, json, subprocess and time are imported where they are used: `solve` imports this
# module (for PipOptions) and pays nothing for the create's tools (bench/bench_solve.py)
from .errors import InstallError, SpecError, UnslothError, UsageError
from .solvers.base import PipPackage, Record, SolvedEnv
from .units import human_size

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


def package_cache_for(prefix: Path | None) -> tuple[Path, str | None]:
    """rattler's package cache for a create of ``prefix``: the configured one, or a node-local
    one when the prefix is on a network file system (sharedfs.py); and why, when it moved."""
    from .cache import cache_dir

    if prefix is None:
        return cache_dir("pkgs"), None
    from .sharedfs import package_cache

    return package_cache(prefix, cache_dir("pkgs"))


def install_with_rattler(
    records: Sequence[Record], prefix: Path, show_progress: bool = False
) -> None:
    """Link conda packages into ``prefix`` with py-rattler, in a child process (see
    rattler_install) that is killed and waited for if we are interrupted, so nothing links
    behind a rollback. (Inside conda, conda's own transaction does this: conda/install.py.)
    Within :func:`offline_scope` the child opens no connection: a package that would be
    downloaded is refused."""
    import json
    import subprocess

    cache, _moved = package_cache_for(prefix)  # the build said where, when it moved
    # the job goes through the child's stdin: a job file would be left in /tmp by a SIGKILL
    job = json.dumps(
        {
            "records": [r.to_json(redact=False) for r in records],
            "prefix": str(prefix),
            "cache": str(cache),
            "progress": show_progress,
            "offline": _OFFLINE.get(),
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
        line = (err.strip().splitlines()[-1:] or [f"exit code {code}"])[0]
        raise child_failure(line, prefix, cache)


_HASH_MISMATCH = re.compile(
    r"hash mismatch when extracting (?P<url>\S+) to \S+: expected (?P<want>[0-9a-f]+), got "
    r"(?P<got>[0-9a-f]+)"
)


def child_failure(line: str, prefix: Path, cache: Path) -> UnslothError:
    """The rattler child's one line as our error: a full disk says so and where, a hash
    mismatch names the file and both digests."""
    from .redact import redact_url

    full = disk_full(line, [prefix, cache])
    if full is not None:
        return full
    m = _HASH_MISMATCH.search(line)
    if m:
        kind = "sha256" if len(m["want"]) == 64 else "md5"
        url = redact_url(m["url"])
        return SpecError(
            f"{kind} mismatch for {url.rsplit('/', 1)[-1]} ({url}): the record says "
            f"{m['want']}, the downloaded file is {m['got']}; refusing to install it",
            hints=[
                "the channel served other bytes than its repodata describes; nothing was installed"
            ],
        )
    return InstallError(f"installing conda packages failed: {line}")


# ----------------------------------------------------------------------------- full disk

_NO_SPACE = re.compile(r"no space left on device|os error 28|errno 28|\bENOSPC\b", re.I)
_DISK_QUOTA = re.compile(r"disk quota exceeded|os error 122|errno 122|\bEDQUOT\b", re.I)
_TOO_LARGE = re.compile(r"file too large|os error 27|errno 27|\bEFBIG\b", re.I)


def disk_full(text: str, paths: Sequence[Path]) -> InstallError | None:
    """When ``text`` (an installer's error) says the disk is full (or a quota or a file size
    limit was hit): that, and where — each file system ``paths`` are on, its mount point and
    what is free there now. None: it says something else."""
    if _NO_SPACE.search(text):
        what = "the disk is full (no space left on device)"
    elif _DISK_QUOTA.search(text):
        what = "the disk quota is exceeded"
    elif _TOO_LARGE.search(text):
        what = "a file grew past the file size limit (ulimit -f) or the file system's maximum"
    else:
        return None
    where = "; ".join(_where(paths))
    return InstallError(
        f"{what} while installing into {paths[0]}: {where}; nothing was installed",
        hints=["free space there (or choose another -p PREFIX) and run the same command again"],
    )


def _where(paths: Sequence[Path]) -> list[str]:
    """``PATH is on the file system mounted at MOUNT (N free)``, once per file system."""
    import os

    seen: dict[tuple[int, str], list[str]] = {}
    for p in paths:
        probe = p
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        mount = probe.resolve()
        while not os.path.ismount(mount) and mount != mount.parent:
            mount = mount.parent
        try:
            st = os.statvfs(probe)
            free = human_size(st.f_bavail * st.f_frsize)
            inodes = st.f_favail
            dev = probe.stat().st_dev
        except OSError:
            free, inodes, dev = "?", -1, -1
        low = 0 <= inodes < 1000  # a file system can be out of inodes with bytes to spare
        label = f"{free} free" + (f", {inodes} free inodes" if low else "")
        seen.setdefault((dev, f"{mount} ({label})"), []).append(str(p))
    return [
        f"{' and '.join(names)} {'are' if len(names) > 1 else 'is'} on the file system "
        f"mounted at {where}"
        for (_dev, where), names in seen.items()
    ]


# ----------------------------------------------------------------------------- package files


_CHECKED: dict[tuple[str, int, int, int, int, int], tuple[str, str]] = {}


def check_package_files(records: Sequence[Record]) -> None:
    """Before anything is linked: every record has a digest to be checked against, and every
    ``file://`` package file matches it (sha256, or md5 where the record has only md5).
    Neither py-rattler 0.28 nor conda's transaction checks a ``file://`` package: both link
    whatever bytes the file holds. Downloads are checked by the installer (rattler: sha256 or
    md5; conda: the same). Raises SpecError naming the file and both digests."""
    for r in records:
        if not (r.sha256 or r.md5):
            raise SpecError(
                f"package {r.fn} has neither a sha256 nor an md5 in its record: it cannot be "
                "checked; refusing to install it",
                hints=["index the channel with conda-index or rattler-index, which record both"],
            )
        if r.url[:7].lower() != "file://":
            continue
        path = local_path(r.url)
        kind, want = ("sha256", r.sha256) if r.sha256 else ("md5", r.md5 or "")
        got = _digest(path, kind, r.fn)
        if got != want.lower():
            raise SpecError(
                f"{kind} mismatch for {r.fn} ({path}): the record says {want}, the file is "
                f"{got}; refusing to install it",
                hints=[
                    "the package file was changed after its channel was indexed or its lock "
                    "written; nothing was installed",
                ],
            )


def local_path(url: str) -> Path:
    """The path a ``file://`` URL names."""
    from urllib.parse import unquote, urlparse

    return Path(unquote(urlparse(url).path))


def _digest(path: Path, kind: str, fn: str) -> str:
    """``kind`` digest of ``path`` (a regular file), remembered for this process by the
    file's identity (device, inode, size, mtime, ctime): a lock's check and the build's check
    of the same file read it once."""
    import hashlib
    import os
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block the open
    except OSError as exc:
        raise InstallError(f"package {fn} cannot be read: {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise SpecError(f"package {fn}: {path} is not a regular file")
        key = (kind, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        cached = _CHECKED.get(key)
        if cached is not None:
            return cached[1]
        h = hashlib.new(kind)
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    _CHECKED[key] = (str(path), digest)
    return digest


def verify_local_hashes(records: list[Record]) -> None:
    """A lock's packages, checked as :func:`check_package_files` does."""
    check_package_files(records)


# ----------------------------------------------------------------------------- offline

_OFFLINE: ContextVar[bool] = ContextVar("conda_unsloth_offline", default=False)


@contextlib.contextmanager
def offline_scope(offline: bool) -> Iterator[None]:
    """Within: the rattler child refuses any download (see rattler_install)."""
    token = _OFFLINE.set(offline)
    try:
        yield
    finally:
        _OFFLINE.reset(token)


def check_offline(records: Sequence[Record], prefix: Path | None = None) -> None:
    """``--offline``, standalone: every package is a ``file://`` one or is in the package
    cache under its record's sha256 (what rattler then links without a download); anything
    else is refused before anything is built, and no connection is opened. Inside conda,
    ``--offline`` is conda's own offline mode (conda's session has no network adapter) and
    conda serves its package cache. ``prefix``: the env to be built (its package cache may be
    node-local: :func:`package_cache_for`)."""
    from .redact import redact_url

    remote = [r for r in records if r.url[:7].lower() != "file://"]
    if not remote:
        return
    from .rattler_install import _records, not_cached
    from .solvers.rattler import run_coro

    items = [r.to_json(redact=False) for r in remote]
    cache, _why = package_cache_for(prefix)
    missing = set(run_coro(not_cached(items, _records(items), str(cache))))
    if missing:
        first = next(r for r in remote if r.fn in missing)
        raise UsageError(
            f"--offline, but {len(missing)} package(s) would be downloaded: {first.fn} from "
            f"{redact_url(first.url)} is not in the package cache",
            hints=[
                "run the same command once without --offline to fill the package cache, or "
                "use a file:// channel (a local mirror)",
            ],
        )


def env_python(prefix: Path) -> Path:
    return prefix / "bin" / "python"


def check_pip_stage(
    opts: PipOptions,
    conda_names: Sequence[str],
    say: Progress | None = None,
    requirements: Sequence[str] = (),
    locked: Sequence[PipPackage] = (),
    own_urls: bool = False,
) -> None:
    """Before anything is built: the pip stage will have a wheel source and an installer
    (``conda_names``: the conda packages the env will get, to know whether it gets pip or uv),
    and offline, no requirement is a direct URL to anything but a local file (pip downloads
    ``name @ https://...`` even with ``--no-index``). Raises UsageError/InstallError naming
    the flag that fixes it. ``own_urls``: every wheel comes from a url a lock records, so no
    index or folder is needed."""
    from .pipstage.installers import choose_installer
    from .pipstage.requirements import refuse_remote_urls
    from .pipstage.wheelsources import sources

    if opts.offline:
        refuse_remote_urls(requirements)
    src = sources(opts.find_links, opts.index_url, opts.offline)
    check_locked_wheels(locked, src.find_links)
    if not src.has_source and not own_urls:
        raise UsageError(
            "--offline and no wheel source for the pip stage: give --pip-find-links DIR, a "
            "folder with the companions' wheels (or leave --offline out to use an index)",
            hints=["conda unsloth env --json lists the pinned companions"],
        )
    names = set(conda_names)
    if "uv" in names and opts.installer != "pip":
        return  # the env brings its own uv
    choose_installer(None, opts.installer, pip_in_env="pip" in names, say=say or _quiet)


def _quiet(msg: str) -> None:
    return None


def check_locked_wheels(locked: Sequence[PipPackage], find_links: Sequence[str]) -> None:
    """A lock's wheels, before anything is built: when the ``--pip-find-links`` folders hold
    files of a locked name and version and none of them has the lock's sha256, refuse, naming
    the file and both digests (the installer would refuse too, later and in its own words;
    pip's names neither). Files the folders do not have are left to the installer."""
    if not locked or not find_links:
        return
    from packaging.utils import (
        InvalidSdistFilename,
        InvalidWheelFilename,
        canonicalize_name,
        parse_sdist_filename,
        parse_wheel_filename,
    )
    from packaging.version import InvalidVersion, Version

    want: dict[tuple[str, Version], PipPackage] = {}
    for p in locked:
        try:
            if p.sha256:
                want[(canonicalize_name(p.name), Version(p.version))] = p
        except InvalidVersion:
            continue
    found: dict[tuple[str, Version], list[Path]] = {}
    for entry in find_links:
        folder = local_path(entry) if entry.startswith("file://") else Path(entry)
        try:
            names = sorted(folder.iterdir())
        except OSError:
            continue
        for f in names:
            try:
                if f.name.endswith(".whl"):
                    name, version, _, _ = parse_wheel_filename(f.name)
                else:
                    name, version = parse_sdist_filename(f.name)
            except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
                continue
            if (name, version) in want:
                found.setdefault((name, version), []).append(f)
    for key, files in found.items():
        p = want[key]
        digests = [(f, _digest(f, "sha256", f.name)) for f in files]
        if all(d != (p.sha256 or "").lower() for _, d in digests):
            f, d = digests[0]
            raise SpecError(
                f"sha256 mismatch for {f.name} ({f}): the lock says {p.sha256}, the file is "
                f"{d}; refusing to install it",
                hints=["the wheel was changed after the lock was written; nothing was installed"],
            )


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
    from . import inventory
    from .pipstage.installers import choose_installer
    from .pipstage.stage import run_stage
    from .pipstage.wheelsources import sources

    python = env_python(prefix)
    if not python.exists():
        raise InstallError(f"{python} is missing: the env has no python for the pip stage")
    say = say or _quiet
    src = sources(opts.find_links, opts.index_url, opts.offline)
    installer = choose_installer(prefix, opts.installer, say=say)
    owned = inventory.conda_dists(prefix)
    try:
        result = run_stage(
            prefix, requirements, constraints, owned, src, installer, locked, require_hashes, say
        )
    except InstallError as exc:  # the installer's own words: a full disk says so, and where
        from .cache import cache_dir

        raise disk_full(exc.message, [prefix, cache_dir("uv")]) or exc from None
    except OSError as exc:  # our own work files in the prefix
        full = disk_full(str(exc), [prefix])
        if full is None:
            raise
        raise full from None
    return result.installed


def post_pip_checks(prefix: Path) -> None:
    """Every distribution is installed once (one torch: F12) and every installed distribution's
    requirements are met (what `pip check` says, read from the metadata)."""
    from . import inventory
    from .knowledge.packages import normalize
    from .pipstage.dists import dependency_problems, read_dists, site_packages

    names: dict[str, list[str]] = {}
    for d in read_dists(site_packages(prefix)):
        names.setdefault(normalize(d.name), []).append(d.folder)
    if any(len(v) > 1 for v in names.values()):
        twice = {n: e for n, e in inventory.python_dists(prefix).items() if len(e) > 1}
        name, entries = sorted(twice.items())[0]
        shown = ", ".join(f"{v} ({inst})" for v, inst, _ in entries)
        raise InstallError(
            f"{name} is installed more than once after the pip stage: {shown} (F12)"
        )
    problems = dependency_problems(prefix)
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

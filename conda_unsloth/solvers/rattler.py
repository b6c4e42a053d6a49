"""The py-rattler backend: solve an EnvSpec for a Target without conda.

Channels are the spec's, in strict priority order. Names map to
``https://conda.anaconda.org/<name>``; ``file://`` URLs and plain paths are local channels
(checked before solving so a typo is a one-line error, not a solver trace); ``nodefaults`` is
dropped. The solver sees the *target's* virtual packages (``Target.virtual_packages()``), never
this host's. Repodata is cached by one gateway per process under :func:`cache_dir`; with
``offline=True`` the gateway only reads that cache (``use-cache-only``) and never opens a
network connection. Channel-qualified specs (``pytorch::pytorch=...``) follow their channel
when ``-c`` replaces the spec's channels: a local channel whose directory is named ``pytorch``
stands in for ``pytorch``.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import re
import stat
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from ..errors import SolveError, SpecError, UnsolvableError, UsageError
from ..redact import redact_text, redact_url
from ..spec import pip_pin
from .base import PipPackage, Record, SolvedEnv

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from ..spec import EnvSpec
    from ..target import Target

NAME = "rattler"
CHANNEL_ALIAS = "https://conda.anaconda.org"
DEFAULTS = ("https://repo.anaconda.com/pkgs/main", "https://repo.anaconda.com/pkgs/r")
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/label/[A-Za-z0-9_.-]+)?$")
_GATEWAYS: dict[tuple[str, bool], Any] = {}


_LOOPS = threading.local()


def run_coro(coro: Any) -> Any:
    """Run a py-rattler coroutine on this thread's event loop, made once. ``asyncio.run``
    makes and tears down a loop per call (selector, self-pipe, signal handler, executor
    shutdown): 0.1-0.3 ms, a third of a small solve. After an interrupt (Ctrl-C, SIGTERM
    turned into an exception) the loop is dropped and the next call makes a new one."""
    import asyncio  # here: a libmamba solve inside conda never needs the event loop (~20 ms)

    loop: asyncio.AbstractEventLoop | None = getattr(_LOOPS, "loop", None)
    if loop is None or loop.is_closed():
        loop = asyncio.new_event_loop()
        _LOOPS.loop = loop
        atexit.register(loop.close)
    try:
        return loop.run_until_complete(coro)
    except BaseException as exc:
        if not isinstance(exc, Exception):  # an interrupt: the loop may hold half-run tasks
            _LOOPS.loop = None
        raise


def cache_dir() -> Path:
    """Where repodata is cached (``cache.cache_dir("rattler")``)."""
    from ..cache import cache_dir as base

    return base("rattler")


# ----------------------------------------------------------------------------- channels


def local_path(url: str) -> Path | None:
    """The directory of a ``file://`` channel URL, else None."""
    if not url.startswith("file://"):
        return None
    return _file_url_path(url)


@functools.lru_cache(maxsize=256)
def _file_url_path(url: str) -> Path:
    return Path(unquote(urlparse(url).path))


def channel_url(value: str) -> str:
    """One channel as a URL: a name, a ``file://``/``http(s)://`` URL, or a local path."""
    v = value.strip()
    if v.startswith(("http://", "https://", "file://")):
        return v.rstrip("/")
    if v.startswith(("/", "./", "../", "~")) or v in (".", ".."):
        return Path(v).expanduser().resolve().as_uri()  # not cached: cwd and links change
    return _name_url(v, value)


@functools.lru_cache(maxsize=256)
def _name_url(v: str, value: str) -> str:
    if _NAME_RE.match(v):
        return f"{CHANNEL_ALIAS}/{v}"
    raise SpecError(
        f"channel '{value}' is neither a channel name, a URL nor a path",
        hints=["use a name like conda-forge, a URL, or file:///path/to/channel"],
    )


def channel_urls(
    channels: Iterable[str], subdirs: Sequence[str], *, check: bool = True
) -> list[str]:
    """Resolve and de-duplicate ``channels`` (priority order kept); with ``check``, also check
    that local ones exist and are readable. This runs before solving: after a failed channel
    read py-rattler 0.28 sometimes crashes the interpreter at exit (SIGSEGV/SIGABRT in
    PyGILState_Release), so bad local input must never reach it."""
    out: list[str] = []
    for c in channels:
        if c == "nodefaults":
            continue
        urls = list(DEFAULTS) if c == "defaults" else [channel_url(c)]
        for url in urls:
            path = local_path(url)
            if check and path is not None:
                check_local_channel(path, c, subdirs)
            if url not in out:
                out.append(url)
    if not out:
        raise SpecError(
            "no channels to solve with", hints=["give channels in the file or with -c CHANNEL"]
        )
    return out


def check_local_channel(path: Path, given: str, subdirs: Sequence[str]) -> None:
    """A local channel must be a directory with a readable ``<subdir>/repodata.json`` for
    every solved subdir (conda-index writes ``noarch`` even when it is empty). One ``stat`` per
    file and a look at both ends; the full parse runs once per file version (see
    :func:`_repodata_problem`)."""
    base = str(path)
    for subdir in subdirs:
        repodata = os.path.join(base, subdir, "repodata.json")  # noqa: PTH118 - hot path
        try:
            st = os.stat(repodata)  # noqa: PTH116 - one stat, no Path objects: hot path
        except OSError:
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            if not path.is_dir():
                raise SpecError(
                    f"channel {given}: {path} does not exist or is not a directory",
                    hints=[
                        "check the path, or build the channel with conda-index / rattler-index"
                    ],
                )
            raise SpecError(
                f"channel {given}: {repodata} is missing (a channel needs "
                f"{' and '.join(f'{s}/repodata.json' for s in subdirs)})",
                hints=[f"index it: python -m conda_index {path}"],
            )
        key = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        problem = _repodata_problem(repodata, key)
        if problem:
            if not os.access(repodata, os.R_OK):
                raise SpecError(f"channel {given}: {repodata} is not readable (permission denied)")
            raise SpecError(f"cannot read local channel repodata {repodata}: {problem}")


FULL_CHECK_BYTES = 256 * 1024 * 1024
VERDICTS = "checked-repodata.json"  # in cache_dir(): files fully parsed once, by version
_VERDICT_KEEP = 256


@functools.lru_cache(maxsize=64)
def _repodata_problem(path: str, key: tuple[int, int, int, int]) -> str | None:
    """Why a local repodata.json is unusable (None if it is fine). Both ends are looked at
    every time (a truncated or non-JSON file); the whole file is JSON-parsed only the first
    time this version of it (size, mtime, ctime, inode: any write changes the ctime) is seen,
    and the verdict kept in the cache folder, so a solve in a new process pays a stat, not the
    parse (8 ms a MiB). py-rattler must never be handed a broken file: after a failed channel
    read 0.28 sometimes crashes the interpreter at exit."""
    size = key[0]
    try:
        with open(path, "rb") as fh:
            head = fh.read(64).lstrip()
            fh.seek(max(0, size - 64))
            tail = fh.read().rstrip()
    except OSError as exc:
        return _first_lines(exc, 1)
    whole = size <= FULL_CHECK_BYTES
    if not head.startswith(b"{") or not tail.endswith(b"}"):
        # broken: the parser says where, when the file is small enough to ask it
        return _parse_problem(path) if whole else "not a JSON object (truncated or not repodata)"
    folder = str(cache_dir())
    if not whole or _verdicts(folder).get(path) == list(key):
        return None
    problem = _parse_problem(path)
    if problem is None:
        _remember(folder, path, key)
    return problem


def _parse_problem(path: str) -> str | None:
    import json

    try:
        with open(path, "rb") as fh:
            doc = json.loads(fh.read())
    except (OSError, ValueError) as exc:
        return _first_lines(exc, 1)
    return None if isinstance(doc, dict) else "not a JSON object"


@functools.lru_cache(maxsize=8)
def _verdicts(folder: str) -> dict[str, list[int]]:
    import json

    try:
        with open(os.path.join(folder, VERDICTS), "rb") as fh:  # noqa: PTH118 - hot path
            doc = json.loads(fh.read())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _remember(folder: str, path: str, key: tuple[int, int, int, int]) -> None:
    """Add a verdict (best effort: a lost one only costs a parse next time)."""
    import json
    import tempfile

    verdicts = _verdicts(folder)
    verdicts.pop(path, None)
    verdicts[path] = list(key)
    while len(verdicts) > _VERDICT_KEEP:
        verdicts.pop(next(iter(verdicts)))
    tmp: Path | None = None
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".verdicts-", dir=folder)
        tmp = Path(name)
        with os.fdopen(fd, "w") as fh:
            json.dump(verdicts, fh)
        tmp.replace(Path(folder) / VERDICTS)
    except OSError:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def _channel_name(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def rewrite_spec(spec: str, urls: Sequence[str], notes: list[str]) -> str:
    """Point a ``channel::spec`` at the solve's channel of that name (or drop the qualifier
    when no solve channel has that name, with a note)."""
    if "::" not in spec:
        return spec
    chan, rest = spec.split("::", 1)
    try:
        url = channel_url(chan)
    except SpecError:
        url = chan
    if url in urls:
        return f"{url}::{rest}"
    name = _channel_name(chan)
    same = [u for u in urls if _channel_name(u) == name]
    if same:
        return f"{same[0]}::{rest}"
    notes.append(f"'{spec}': no channel named {name} in this solve; solving '{rest}' from any")
    return rest


# ----------------------------------------------------------------------------- records


def _hex(value: Any) -> str | None:
    if value is None:
        return None
    return value.hex() if isinstance(value, bytes) else str(value)


def to_record(r: Any) -> Record:
    """A rattler ``RepoDataRecord`` as our Record (fast path through the plain fields of its
    native record; the public properties build wrapper objects and cost ~10 µs a record)."""
    try:
        return _to_record_fast(r._record)
    except (AttributeError, TypeError, ValueError, IndexError):  # another py-rattler layout
        return to_record_public(r)


@functools.lru_cache(maxsize=256)
def _channel_label(channel: str) -> str:
    return redact_url(channel.rstrip("/"))


def _to_record_fast(n: Any) -> Record:
    fn = n.file_name
    name, version, build = fn.rsplit(".conda", 1)[0].removesuffix(".tar.bz2").rsplit("-", 2)
    if n.version[1] != version:
        raise ValueError("file name does not carry the version")
    noarch = n.noarch
    ts = n.timestamp
    md5, sha = n.md5, n.sha256
    return Record(
        **{
            "name": name,
            "version": version,
            "build": build,
            "build_number": int(n.build_number),
            "channel": _channel_label(n.channel or ""),
            "subdir": n.subdir,
            "url": n.url,
            "fn": fn,
            "md5": md5.hex() if md5 is not None else None,
            "sha256": sha.hex() if sha is not None else None,
            "depends": tuple(n.depends),
            "constrains": tuple(n.constrains),
            "size": n.size,
            "timestamp": int(ts) if ts is not None else None,
            "noarch": "python" if noarch.is_python else ("generic" if noarch.is_generic else None),
            "license": n.license,
        }
    )


def to_record_public(r: Any) -> Record:
    ts = r.timestamp
    noarch = r.noarch
    noarch_s = None
    if noarch is not None and (noarch.generic or noarch.python):
        noarch_s = "python" if noarch.python else "generic"
    return Record(
        name=r.name.normalized,
        version=str(r.version),
        build=str(r.build),
        build_number=int(r.build_number),
        channel=redact_url(str(r.channel or "").rstrip("/")),
        subdir=str(r.subdir),
        url=str(r.url),
        fn=str(r.file_name),
        md5=_hex(r.md5),
        sha256=_hex(r.sha256),
        depends=tuple(r.depends),
        constrains=tuple(r.constrains),
        size=r.size,
        timestamp=int(ts.timestamp() * 1000) if ts is not None else None,
        noarch=noarch_s,
        license=r.license,
    )


def pip_packages(spec: EnvSpec) -> tuple[PipPackage, ...]:
    """The pinned pip part of the env: every ``name==version`` requirement of the spec."""
    out = []
    for req in spec.pip_requirements():
        pin = pip_pin(req)
        if pin is not None:
            out.append(PipPackage(*pin))
    return tuple(out)


def pip_unpinned(spec: EnvSpec) -> tuple[str, ...]:
    """Every pip requirement of the spec that is not a plain ``name==version`` pin
    (``unsloth``, ``transformers>=4.46``, ``unsloth_zoo @ git+https://...``), verbatim. The
    solvers do not resolve PyPI, so locks carry these as given (``SolvedEnv.extra``
    ``["pip_unpinned"]``) rather than dropping them."""
    return tuple(r.strip() for r in spec.pip_requirements() if pip_pin(r) is None)


def solved_extra(spec: EnvSpec, notes: list[str]) -> dict[str, Any]:
    """``SolvedEnv.extra`` shared by both backends: solver notes and unpinned pip requirements."""
    extra: dict[str, Any] = {}
    if notes:
        extra["notes"] = notes
    unpinned = pip_unpinned(spec)
    if unpinned:
        extra["pip_unpinned"] = unpinned
    return extra


def virtual_packages(target: Target) -> list[Any]:
    import rattler

    return [
        rattler.GenericVirtualPackage(
            rattler.PackageName(vp.name),
            rattler.Version(vp.version),
            rattler.BuildString(vp.build),
        )
        for vp in target.virtual_packages()
    ]


@functools.cache
def _solver_label() -> str:
    """``rattler X.Y.Z`` from py-rattler's ``__version__`` (importlib.metadata costs 12-20 ms
    of a solve); the installed distribution's metadata only if a py-rattler lacks it."""
    import rattler

    version = getattr(rattler, "__version__", None)
    if not isinstance(version, str):
        from importlib.metadata import version as dist_version

        version = dist_version("py-rattler")
    return f"rattler {version}"


def _first_lines(text: object, n: int = 2) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return " / ".join(lines[:n])


def _settle(
    gateway: Any, urls: Sequence[str], subdirs: Sequence[Any], specs: Sequence[Any]
) -> None:
    """After a failed solve, wait for the gateway's other in-flight channel reads: py-rattler
    0.28 leaves them running, and when one completes during interpreter shutdown the process
    dies with SIGSEGV/SIGABRT (PyGILState_Release). Querying each channel's subdirs again joins them."""
    from rattler.exceptions import GatewayError

    for url in urls:
        for subdir in subdirs:
            with contextlib.suppress(GatewayError):
                run_coro(gateway.query([url], [subdir], specs, recursive=False))


def _broken_local_repodata(urls: Sequence[str], subdirs: Sequence[str]) -> str | None:
    """After a gateway error: the first local repodata.json that is not valid JSON, with the
    parser's reason (checked only on the error path, so solving costs nothing extra)."""
    import json

    for url in urls:
        path = local_path(url)
        if path is None:
            continue
        for subdir in subdirs:
            repodata = path / subdir / "repodata.json"
            try:
                with open(repodata, "rb") as fh:
                    json.load(fh)
            except (OSError, ValueError) as exc:
                return f"{repodata}: {_first_lines(exc, 1)}"
    return None


# ----------------------------------------------------------------------------- solver


class RattlerSolver:
    name = NAME

    def __init__(self, cache: Path | None = None) -> None:
        self.cache = cache

    def _gateway(self, offline: bool) -> Any:
        import rattler

        cache = self.cache or cache_dir()
        key = (str(cache), offline)
        gw = _GATEWAYS.get(key)
        if gw is None:
            # Sharded repodata is off in both modes: py-rattler 0.28's sharded path still
            # connects under "use-cache-only", and a cache filled online must serve offline.
            config = rattler.SourceConfig(
                cache_action="force-cache-only" if offline else "cache-or-fetch",
                sharded_enabled=False,
            )
            gw = rattler.Gateway(cache_dir=cache, default_config=config)
            _GATEWAYS[key] = gw
        return gw

    def solve(self, spec: EnvSpec, target: Target, *, offline: bool = False) -> SolvedEnv:
        try:
            import rattler
            from rattler.exceptions import (
                GatewayError,
                InvalidMatchSpecError,
                SolverError,
            )
        except ImportError:
            raise UsageError(
                "the rattler solver needs py-rattler, which is not installed",
                hints=["pip install 'conda-unsloth[rattler]'"],
            ) from None
        subdirs: list[Any] = [target.platform, "noarch"]
        urls = channel_urls(spec.channels, subdirs)
        notes: list[str] = []
        specs = []
        for s in spec.conda_specs():
            text = rewrite_spec(s, urls, notes)
            try:
                specs.append(rattler.MatchSpec(text))
            except InvalidMatchSpecError as exc:
                raise SpecError(
                    f"'{s}' is not a valid package spec: {_first_lines(exc, 1)}"
                ) from None
        gateway = self._gateway(offline)
        start = time.perf_counter()
        try:
            records = run_coro(
                rattler.solve(
                    sources=urls,
                    specs=specs,
                    gateway=gateway,
                    platforms=subdirs,
                    virtual_packages=virtual_packages(target),
                    channel_priority=rattler.ChannelPriority.Strict,
                )
            )
        except SolverError as exc:
            raise UnsolvableError(
                redact_text(str(exc).strip()),
                channels=[redact_url(u) for u in urls],
                virtual_packages=[str(vp) for vp in target.virtual_packages()],
            ) from None
        except GatewayError as exc:
            detail = _first_lines(exc, 3)
            _settle(gateway, urls, subdirs, specs)
            bad = _broken_local_repodata(urls, subdirs)
            if bad is not None:
                raise SpecError(f"cannot read local channel repodata {bad}") from None
            if "file://" in str(exc):
                raise SpecError(f"cannot read a local channel: {detail}") from None
            if offline:
                raise SolveError(
                    f"offline: no cached repodata for a channel ({redact_text(detail)})",
                    hints=["run the same command once without --offline to fill the cache"],
                ) from None
            raise SolveError(
                f"cannot fetch repodata: {redact_text(detail)}",
                hints=[
                    "check the channel URL and your network, or use --offline with a filled cache"
                ],
            ) from None
        seconds = time.perf_counter() - start
        return SolvedEnv(
            platform=target.platform,
            channels=tuple(_channel_label(u) for u in urls),
            records=tuple(sorted((to_record(r) for r in records), key=lambda r: r.name)),
            virtual_packages=tuple(str(vp) for vp in target.virtual_packages()),
            solver=_solver_label(),
            pip=pip_packages(spec),
            pip_constraints=tuple(d.spec for d in spec.pip_constraints),
            spec=spec,
            seconds=seconds,
            extra=solved_extra(spec, notes),
        )

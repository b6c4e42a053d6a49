"""The libmamba backend, through conda (the default inside ``conda unsloth``).

conda's plugin manager hands us the libmamba ``Solver`` class
(``context.plugin_manager.get_solver_backend("libmamba")``), so channels, mirrors, auth and the
repodata cache behave exactly as in ``conda create``. The solve is made *for the target*: for
its duration the subdir (``context._override("_subdir", ...)``), strict channel priority,
offline mode (``--offline`` or conda's own ``offline`` setting) and the virtual packages
(``CONDA_OVERRIDE_CUDA`` / ``_GLIBC`` / ``_LINUX`` from the target, ``CONDA_OVERRIDE_ARCHSPEC``
set to the platform's baseline microarchitecture, with conda's cached CUDA detection cleared)
are overridden, and everything is restored afterwards, also on error. The solved env reports
the virtual packages conda actually presented to the solver. Channels come only from the spec
(or -c): none is an error, never a silent fall-back to the user's condarc channels. conda is
imported only inside :meth:`CondaLibmambaSolver.solve`.

Local channels (paths, ``file://``) are checked before conda sees them, as the standalone
backend checks them: a missing or broken one is one line, not conda's page of text. Offline,
conda-libmamba-solver reads only conda's repodata cache, ``file://`` channels included, so an
empty cache made ``--offline -c file://...`` "unsatisfiable". A ``file://`` channel needs no
network: offline we fill conda's cache for each ``file://`` subdir with conda's own fetcher
(which reads ``file://`` also offline, while conda's session refuses every network adapter),
and a network channel whose cache is empty is said to be empty, with the command that fills it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import SolveError, SpecError, UnslothError, UnsolvableError, UsageError
from ..redact import redact_text, redact_url
from ..solvers.base import Record, SolvedEnv
from ..solvers.rattler import (
    channel_url,
    check_local_channel,
    local_path,
    pip_packages,
    rewrite_spec,
    solved_extra,
)

if TYPE_CHECKING:
    from ..spec import EnvSpec
    from ..target import Target

NAME = "libmamba"
# The baseline microarchitecture per platform, as conda's __archspec build string: the solve
# is for the target, not for this host's CPU.
ARCHSPEC_BASELINE = {
    "linux-64": "x86_64",
    "linux-aarch64": "aarch64",
    "linux-ppc64le": "ppc64le",
    "linux-s390x": "s390x",
    "osx-64": "x86_64",
    "osx-arm64": "arm64",
    "win-64": "x86_64",
}


def conda_available() -> bool:
    return importlib.util.find_spec("conda") is not None


def target_overrides(target: Target) -> dict[str, str | None]:
    """The ``CONDA_OVERRIDE_*`` variables that make conda see ``target``'s virtual packages
    (None: unset it, so nothing of this host leaks into the solve)."""
    out: dict[str, str | None] = {
        "CONDA_OVERRIDE_CUDA": None,
        "CONDA_OVERRIDE_GLIBC": None,
        "CONDA_OVERRIDE_LINUX": None,
        "CONDA_OVERRIDE_ARCHSPEC": ARCHSPEC_BASELINE.get(target.platform),
    }
    names = {"__cuda": "CUDA", "__glibc": "GLIBC", "__linux": "LINUX"}
    for vp in target.virtual_packages():
        if vp.name in names:
            out[f"CONDA_OVERRIDE_{names[vp.name]}"] = vp.version
    return out


@contextmanager
def scoped_env(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set (or, for None, unset) environment variables; restore the previous values after."""
    saved = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, old in saved.items():
            if old is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = old


def _clear_cuda_cache() -> None:
    try:
        from conda.plugins.virtual_packages import cuda
    except ImportError:  # pragma: no cover - very old conda
        return
    clear = getattr(getattr(cuda, "cached_cuda_version", None), "cache_clear", None)
    if clear is not None:
        clear()


def _timestamp_ms(ts: Any) -> int | None:
    if not ts:
        return None
    value = float(ts)
    return int(value * 1000) if value < 1e11 else int(value)  # conda keeps seconds


def to_record(prec: Any) -> Record:
    noarch = getattr(prec, "noarch", None)
    channel = getattr(prec.channel, "base_url", None) or str(prec.channel)
    return Record(
        name=prec.name,
        version=str(prec.version),
        build=prec.build,
        build_number=int(prec.build_number or 0),
        channel=redact_url(str(channel).rstrip("/")),
        subdir=prec.subdir,
        url=str(prec.url),
        fn=prec.fn,
        md5=prec.get("md5", None),
        sha256=prec.get("sha256", None),
        depends=tuple(prec.depends),
        constrains=tuple(prec.constrains),
        size=prec.get("size", None),
        timestamp=_timestamp_ms(prec.get("timestamp", None)),
        noarch=str(getattr(noarch, "value", noarch)) if noarch else None,
        license=prec.get("license", None),
    )


def _qualified_specs(specs: list[str], channels: list[str]) -> list[str]:
    """``chan::spec`` whose channel is not one of ``channels`` (``-c`` replaced them) follows
    the solve's channel of the same name, like the rattler backend."""
    out = []
    for s in specs:
        chan = s.split("::", 1)[0] if "::" in s else None
        if chan is None or chan in channels:
            out.append(s)
            continue
        urls = []
        for c in channels:
            try:
                urls.append(channel_url(c))
            except UnslothError:
                urls.append(c)
        out.append(rewrite_spec(s, urls, []))
    return out


def solve_channels(spec: EnvSpec) -> list[str]:
    """The spec's channels without ``nodefaults``; none left is a SpecError (conda would
    otherwise fall back to the user's condarc channels), as in the rattler backend."""
    channels = [c for c in spec.channels if c != "nodefaults"]
    if not channels:
        raise SpecError(
            "no channels to solve with", hints=["give channels in the file or with -c CHANNEL"]
        )
    return channels


LOCAL_PREFIXES = ("file://", "/", "./", "../", "~")


def is_local(channel: str) -> bool:
    """A path or ``file://`` URL (what ``solvers.rattler.channel_url`` turns into a file URL)."""
    c = channel.strip()
    return c.startswith(LOCAL_PREFIXES) or c in (".", "..")


def checked_local_channels(channels: list[str], subdirs: tuple[str, ...]) -> list[str]:
    """``channels`` with each local one as its ``file://`` URL, after the same check the
    standalone backend makes (a directory with a readable ``<subdir>/repodata.json`` for every
    subdir): a missing or broken local channel is one SpecError line. Names and network URLs
    are left to conda (its channel_alias, custom_channels and mirrors apply)."""
    out = []
    for c in channels:
        if not is_local(c):
            out.append(c)
            continue
        url = channel_url(c)
        path = local_path(url)
        if path is not None:
            check_local_channel(path, c, subdirs)
        out.append(url)
    return out


def _cached(subdir_data: Any) -> bool:
    """Does conda's cache hold repodata for this subdir (monolithic JSON, or the sharded index
    conda >= 25.x fetches where a channel offers one)?"""
    if Path(subdir_data.cache_path_json).exists():
        return True
    shards = getattr(getattr(subdir_data, "repo_cache", None), "cache_path_shards", None)
    return shards is not None and Path(shards).exists()


def offline_repodata(channels: list[str], subdirs: tuple[str, ...]) -> dict[str, list[str]]:
    """Offline (conda's ``context.offline``): fill conda's repodata cache for every ``file://``
    subdir through conda's own ``RepodataFetch`` (``fetch_latest`` re-reads ``file://`` channels
    even offline; conda-libmamba-solver would only look in the cache). Returns, per channel as
    given, the network subdirs whose cache is empty: an offline solve cannot see them."""
    from conda.core.subdir_data import SubdirData
    from conda.models.channel import Channel

    missing: dict[str, list[str]] = {}
    for c in channels:
        for url in Channel(c).urls(with_credentials=True, subdirs=subdirs):
            sd = SubdirData(Channel(url))
            if url.startswith("file://"):
                sd.repo_fetch.fetch_latest_path()
            elif not _cached(sd):
                missing.setdefault(c, []).append(redact_url(url))
    return missing


def online_command(argv: list[str] | None = None) -> str:
    """The command that fills the cache: this one without ``--offline`` when conda's argv shows
    it (``conda unsloth ...``; offline from .condarc or CONDA_OFFLINE: with CONDA_OFFLINE=false
    in front), else a description of it."""
    import shlex

    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] != ["unsloth"]:
        return "the same conda unsloth command without --offline"
    command = "conda " + shlex.join(a for a in args if a != "--offline")
    return command if "--offline" in args else f"CONDA_OFFLINE=false {command}"


def empty_cache_error(missing: dict[str, list[str]]) -> SolveError:
    """Offline with network channels whose repodata cache is empty: say so, name them and the
    command that fills the cache."""
    names = ", ".join(f"{c} ({', '.join(urls)})" for c, urls in missing.items())
    return SolveError(
        f"offline, and conda's repodata cache is empty for channel {names}: "
        "nothing can be solved from it",
        hints=[f"fill the cache once online: {online_command()}"],
        channels=list(missing),
    )


def vp_label(rec: Any) -> str:
    """A conda virtual package record as ``name=version=build``."""
    return f"{rec.name}={rec.version}={rec.build}"


@contextmanager
def target_scope(context: Any, target: Target, *, offline: bool) -> Iterator[tuple[str, ...]]:
    """conda's context and environment set up for solving ``target`` (subdir, strict priority,
    offline, virtual packages); yields the virtual packages conda now presents to a solver.
    Everything is restored on exit, also on error."""
    from conda.base.constants import ChannelPriority

    with ExitStack() as stack:
        stack.enter_context(scoped_env(target_overrides(target)))
        stack.callback(_clear_cuda_cache)  # runs last: drop the target's cached __cuda
        _clear_cuda_cache()
        stack.enter_context(context._override("_subdir", target.platform))
        stack.enter_context(context._override("channel_priority", ChannelPriority.STRICT))
        stack.enter_context(context._override("offline", bool(offline or context.offline)))
        records = getattr(context.plugin_manager, "get_virtual_package_records", None)
        if records is None:  # pragma: no cover - conda < 24.x
            yield tuple(str(vp) for vp in target.virtual_packages())
        else:
            yield tuple(vp_label(r) for r in records())


class CondaLibmambaSolver:
    name = NAME

    def __init__(self, backend: Any = None) -> None:
        # The solver class; None: conda's libmamba plugin. Any conda ``Solver`` subclass with
        # the same constructor works (the tests pass conda's classic solver where
        # conda-libmamba-solver is not installed).
        self.backend = backend

    def solve(self, spec: EnvSpec, target: Target, *, offline: bool = False) -> SolvedEnv:
        channels = solve_channels(spec)
        from conda import __version__ as conda_version
        from conda.base.context import context
        from conda.exceptions import (
            CondaError,
            CondaValueError,
            PackagesNotFoundError,
            UnsatisfiableError,
        )
        from conda.models.match_spec import MatchSpec

        backend = self.backend
        if backend is None:
            try:
                backend = context.plugin_manager.get_solver_backend("libmamba")
            except CondaValueError:
                raise UsageError(
                    "conda's libmamba solver plugin (conda-libmamba-solver) is not installed",
                    hints=[
                        "conda install -n base conda-libmamba-solver",
                        "or use --solver rattler",
                    ],
                ) from None
        label = "libmamba" if self.backend is None else getattr(backend, "__name__", "solver")
        subdirs = (target.platform, "noarch")
        channels = checked_local_channels(channels, subdirs)
        specs = _qualified_specs(spec.conda_specs(), channels)
        start = time.perf_counter()
        with (
            tempfile.TemporaryDirectory(prefix="cu-solve-") as tmp,
            target_scope(context, target, offline=offline) as seen,
        ):
            try:
                if context.offline:
                    missing = offline_repodata(channels, subdirs)
                    if missing:
                        raise empty_cache_error(missing)
                solver = backend(
                    str(Path(tmp) / "env"),
                    channels,
                    subdirs,
                    specs_to_add=[MatchSpec(s) for s in specs],
                    command="create",
                )
                precs = solver.solve_final_state()
            except (UnsatisfiableError, PackagesNotFoundError) as exc:
                raise UnsolvableError(
                    redact_text(str(exc).strip()), virtual_packages=list(seen)
                ) from None
            except CondaError as exc:
                raise SolveError(
                    f"conda could not solve: {redact_text(str(exc).strip())}"
                ) from None
        records = [to_record(p) for p in precs if not p.name.startswith("__")]
        return SolvedEnv(
            platform=target.platform,
            channels=tuple(redact_url(c) for c in channels),
            records=tuple(sorted(records, key=lambda r: r.name)),
            virtual_packages=seen,
            solver=f"{label} (conda {conda_version})",
            pip=pip_packages(spec),
            pip_constraints=tuple(d.spec for d in spec.pip_constraints),
            spec=spec,
            seconds=time.perf_counter() - start,
            extra=solved_extra(spec, []),
        )

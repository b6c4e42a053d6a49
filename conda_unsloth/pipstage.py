"""The pip stage: Unsloth's pip companions into a freshly built env, with uv (or pip), so that
nothing conda installed is ever replaced.

Three steps, the same guarantees with either installer:

1. **resolve** the companions against the env as conda built it: every Python distribution conda
   installed is a constraint (``torch==2.5.1``), and the installer sees it installed (uv:
   ``uv pip install --dry-run --output-format json``; pip: ``pip install --dry-run --report``).
   A resolution that would install or remove one of conda's distributions (say a ``torch
   2.5.1+cu121`` wheel, which ``torch==2.5.1`` admits) is refused (F12).
2. **install** exactly that closure, ``--no-deps``, with each wheel's sha256 (``--require-hashes``;
   uv finds the wheel and its hash with ``uv pip compile --no-deps --format pylock.toml``, pip's
   report carries them). With a lock: the lock's wheels, the same way.
3. **check**: conda's distributions are exactly as before, no distribution is installed twice,
   and every installed distribution's requirements are met (what ``pip check`` says, read from
   the metadata: :func:`dependency_problems`). What was installed is byte-compiled with the env's
   python (uv's own ``--compile-bytecode`` would recompile every file of site-packages).

The installer: ``--pip-installer auto`` (the default) takes uv >= 0.13 from the env
(``PREFIX/bin/uv``), from ``PATH`` or from the ``uv`` Python package (``pip install
'conda-unsloth[uv]'``), else the env's pip. ``uv``/``pip`` insist on one.

What applies, deterministically (the host's pip.conf, uv.toml and other settings never do):

* ``--pip-find-links DIR`` (wheels there only: no index) and ``--pip-index-url URL``. When
  neither is given, the environment's wheel sources: ``PIP_INDEX_URL`` / ``UV_DEFAULT_INDEX`` /
  ``UV_INDEX_URL`` (the index), ``PIP_EXTRA_INDEX_URL`` / ``UV_EXTRA_INDEX_URL`` / ``UV_INDEX``
  (more indexes), ``PIP_FIND_LINKS`` / ``UV_FIND_LINKS``, ``PIP_NO_INDEX`` / ``UV_NO_INDEX``.
* network settings from the environment: ``PIP_CERT`` (uv: ``SSL_CERT_FILE``),
  ``PIP_CLIENT_CERT`` (uv: ``SSL_CLIENT_CERT``), ``PIP_TRUSTED_HOST`` / ``UV_INSECURE_HOST``,
  ``PIP_PROXY`` (uv: ``HTTP(S)_PROXY``), ``PIP_DEFAULT_TIMEOUT`` / ``PIP_TIMEOUT`` /
  ``UV_HTTP_TIMEOUT``; the usual ``SSL_CERT_FILE``, ``HTTP(S)_PROXY``, ``NO_PROXY`` and
  ``.netrc`` as for any program.
* ``--offline``: no index, no network (uv ``--offline``); only local find-links folders.

Every other ``PIP_*``/``UV_*`` variable is dropped (a create never depends on them; the ones that
would have changed the result are named in a notice), pip runs with ``PIP_CONFIG_FILE=os.devnull``
and uv with ``--no-config``, and ``PYTHONDONTWRITEBYTECODE``/``PYTHONPATH``/``PYTHONHOME`` are
not passed to the env's python. Credentials in URLs are removed from everything printed or
recorded (:mod:`conda_unsloth.redact`).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InstallError, UsageError
from .redact import redact_text, redact_url
from .solvers.base import PipPackage

Say = Callable[[str], None]

INSTALLERS = ("auto", "uv", "pip")
MIN_UV = (0, 13, 0)  # `uv pip install --dry-run --output-format json`


def _quiet(msg: str) -> None:
    return None


def norm(name: str) -> str:
    """PEP 503 normalized name."""
    return re.sub(r"[-_.]+", "-", name).lower()


# ----------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class Sources:
    """Where the pip stage gets wheels and how it reaches them, from the flags and the
    environment (see the module docstring). ``origin`` says where each setting came from."""

    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()  # as given (uv's UV_INDEX entries may be name=url)
    find_links: tuple[str, ...] = ()
    no_index: bool = False
    offline: bool = False
    cert: str | None = None
    client_cert: str | None = None
    trusted_hosts: tuple[str, ...] = ()
    proxy: str | None = None
    timeout: str | None = None
    retries: str | None = None
    origin: tuple[tuple[str, str], ...] = ()  # (setting, where from)
    ignored: tuple[str, ...] = ()  # PIP_*/UV_* variables that would have changed the result

    @property
    def has_source(self) -> bool:
        return bool(self.find_links) or not (self.no_index or self.offline)

    def pip_args(self) -> list[str]:
        out: list[str] = []
        if self.no_index or self.offline:
            out.append("--no-index")
        else:
            if self.index_url:
                out += ["--index-url", self.index_url]
            for url in self.extra_index_urls:
                out += ["--extra-index-url", _index_url_only(url)]
        for fl in self.find_links:
            out += ["--find-links", fl]
        if self.cert:
            out += ["--cert", self.cert]
        if self.client_cert:
            out += ["--client-cert", self.client_cert]
        for host in self.trusted_hosts:
            out += ["--trusted-host", host]
        if self.proxy:
            out += ["--proxy", self.proxy]
        if self.timeout:
            out += ["--timeout", self.timeout]
        if self.retries:
            out += ["--retries", self.retries]
        return out

    def uv_args(self) -> list[str]:
        out: list[str] = []
        if self.no_index or self.offline:
            out.append("--no-index")
        else:
            if self.index_url:
                out += ["--default-index", self.index_url]
            for url in self.extra_index_urls:
                out += ["--index", url]
        for fl in self.find_links:
            out += ["--find-links", fl]
        for host in self.trusted_hosts:
            out += ["--allow-insecure-host", host]
        if self.offline:
            out.append("--offline")
        return out

    def uv_env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        if self.cert:
            env["SSL_CERT_FILE"] = self.cert
        if self.client_cert:
            env["SSL_CLIENT_CERT"] = self.client_cert
        if self.proxy:
            env["HTTP_PROXY"] = env["HTTPS_PROXY"] = self.proxy
        if self.timeout:
            env["UV_HTTP_TIMEOUT"] = self.timeout
        if self.retries:
            env["UV_HTTP_RETRIES"] = self.retries
        return env

    def describe(self) -> str:
        """One line for the terminal and the marker, credentials removed."""
        if self.offline or self.no_index:
            where = "wheels from " + (", ".join(self.find_links) or "nowhere")
            where += " (offline)" if self.offline else " (no index)"
        else:
            where = "index " + (self.index_url or "https://pypi.org/simple")
            if self.extra_index_urls:
                where += " + " + ", ".join(_index_url_only(u) for u in self.extra_index_urls)
            if self.find_links:
                where += "; wheels from " + ", ".join(self.find_links)
        kinds = ("index", "extra-index", "find-links", "no-index")
        env = sorted({src for what, src in self.origin if src.isupper() and what in kinds})
        if env:
            where += f" (from {', '.join(env)})"
        net = sorted({src for what, src in self.origin if src.isupper() and what not in kinds})
        if net:
            where += f"; network settings from {', '.join(net)}"
        return redact_text(where)


def _index_url_only(entry: str) -> str:
    """``name=https://...`` (a UV_INDEX entry) -> ``https://...``."""
    m = re.match(r"^[A-Za-z0-9_.-]+=(?=[A-Za-z][A-Za-z0-9+.-]*://)", entry)
    return entry[m.end() :] if m else entry


_TRUE = frozenset({"1", "true", "yes", "on", "y", "t"})
# settings that cannot change which files are installed: dropped without a notice
_HARMLESS_NAMES = """
    PIP_DISABLE_PIP_VERSION_CHECK PIP_NO_INPUT PIP_NO_COLOR PIP_PROGRESS_BAR PIP_QUIET
    PIP_VERBOSE PIP_CACHE_DIR PIP_NO_CACHE_DIR PIP_ROOT_USER_ACTION
    PIP_BREAK_SYSTEM_PACKAGES PIP_NO_PYTHON_VERSION_WARNING PIP_NO_WARN_SCRIPT_LOCATION
    PIP_USE_DEPRECATED PIP_USE_FEATURE PIP_LOG PIP_IS_CI UV_CACHE_DIR UV_NO_CACHE
    UV_NO_PROGRESS  UV_HTTP_CONNECT_TIMEOUT UV_REQUEST_TIMEOUT
    UV_CONCURRENT_DOWNLOADS UV_CONCURRENT_BUILDS UV_CONCURRENT_INSTALLS UV_LINK_MODE
    UV_NO_WRAP UV_PYTHON_DOWNLOADS UV_PYTHON_PREFERENCE UV_NATIVE_TLS UV_SYSTEM_CERTS
    UV_KEYRING_PROVIDER UV_CREDENTIALS_DIR UV_TOOL_DIR UV_TOOL_BIN_DIR UV_PYTHON_INSTALL_DIR
    UV_PYTHON_BIN_DIR UV_PYTHON_CACHE_DIR UV_UNMANAGED_INSTALL UV_INSTALL_DIR
    UV_COMPILE_BYTECODE
"""  # UV_COMPILE_BYTECODE: we compile what we install anyway
_HARMLESS = frozenset(_HARMLESS_NAMES.split())
_SOURCE_VARS = (
    "PIP_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "UV_EXTRA_INDEX_URL",
    "UV_INDEX",
    "PIP_FIND_LINKS",
    "UV_FIND_LINKS",
    "PIP_NO_INDEX",
    "UV_NO_INDEX",
)
_NETWORK_VARS = (
    "PIP_CERT",
    "PIP_CLIENT_CERT",
    "PIP_TRUSTED_HOST",
    "UV_INSECURE_HOST",
    "PIP_PROXY",
    "PIP_DEFAULT_TIMEOUT",
    "PIP_TIMEOUT",
    "UV_HTTP_TIMEOUT",
    "PIP_RETRIES",
    "UV_HTTP_RETRIES",
)
_CONFIG_VARS = ("PIP_CONFIG_FILE", "UV_CONFIG_FILE", "UV_NO_CONFIG")


def _is_url(entry: str) -> bool:
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", entry) is not None


def sources(
    find_links: Sequence[str],
    index_url: str | None,
    offline: bool,
    environ: Mapping[str, str] | None = None,
) -> Sources:
    """The wheel sources and network settings of the pip stage (module docstring). Raises
    UsageError for a setting that cannot be honoured, naming it."""
    env = os.environ if environ is None else environ
    origin: list[tuple[str, str]] = []
    get = {k: v.strip() for k, v in env.items() if k.startswith(("PIP_", "UV_")) and v.strip()}

    links: list[str] = []
    index: str | None = None
    extra: list[str] = []
    no_index = False
    flags = bool(find_links or index_url)
    if flags:
        for fl in find_links:
            links.append(_local_or_url(fl, "--pip-find-links", offline))
            origin.append(("find-links", "--pip-find-links"))
        if index_url:
            index = index_url
            origin.append(("index", "--pip-index-url"))
        no_index = bool(find_links) and not index_url
    else:
        index_vars: tuple[str, ...] = ("PIP_INDEX_URL", "UV_DEFAULT_INDEX", "UV_INDEX_URL")
        given = {k: get[k] for k in index_vars if k in get}
        if len(set(given.values())) > 1:
            names = " and ".join(sorted(given))
            raise UsageError(
                f"{names} name different indexes ({redact_text(', '.join(given.values()))}); "
                "the pip stage takes one",
                hints=["unset one of them, or give --pip-index-url URL"],
            )
        for k, v in given.items():
            index = v
            origin.append(("index", k))
        for var in ("PIP_EXTRA_INDEX_URL", "UV_EXTRA_INDEX_URL", "UV_INDEX"):
            for url in get.get(var, "").split():
                if url not in extra:
                    extra.append(url)
                    origin.append(("extra-index", var))
        for var, sep in (("PIP_FIND_LINKS", None), ("UV_FIND_LINKS", ",")):
            for fl in get.get(var, "").split(sep):
                if fl.strip():
                    links.append(_local_or_url(fl.strip(), var, offline))
                    origin.append(("find-links", var))
        for var in ("PIP_NO_INDEX", "UV_NO_INDEX"):
            if get.get(var, "").lower() in _TRUE:
                no_index = True
                origin.append(("no-index", var))
    if offline and (index or extra):
        index, extra = None, []  # offline: never an index (the flags say so in their help)

    def one(*names: str) -> str | None:
        for n in names:
            if n in get:
                origin.append((n.lower(), n))
                return get[n]
        return None

    if offline:  # no network: the network settings do not apply (nor can they be wrong)
        get = {k: v for k, v in get.items() if k not in _NETWORK_VARS}
    cert = one("PIP_CERT")
    client_cert = one("PIP_CLIENT_CERT")
    trusted = [h for k in ("PIP_TRUSTED_HOST", "UV_INSECURE_HOST") for h in get.get(k, "").split()]
    proxy = one("PIP_PROXY")
    for path, name in ((cert, "PIP_CERT"), (client_cert, "PIP_CLIENT_CERT")):
        if path is not None and not Path(path).is_file():
            raise UsageError(f"{name}={path}: no such file (the pip stage would fail to connect)")
    timeout = one("PIP_DEFAULT_TIMEOUT", "PIP_TIMEOUT", "UV_HTTP_TIMEOUT")
    if timeout is not None:
        try:
            float(timeout)
        except ValueError:
            raise UsageError(f"{origin[-1][1]} '{timeout}' is not a number of seconds") from None
    retries = one("PIP_RETRIES", "UV_HTTP_RETRIES")
    if retries is not None and not retries.isdigit():
        raise UsageError(f"{origin[-1][1]} '{retries}' is not a number of retries")
    used = set(_SOURCE_VARS) | set(_NETWORK_VARS)
    ignored = tuple(
        sorted(
            k
            for k in get
            if k not in used
            and k not in _HARMLESS
            and not re.match(r"^UV_INDEX_.+_(USERNAME|PASSWORD)$", k)  # credentials for UV_INDEX
        )
    )
    return Sources(
        index_url=index,
        extra_index_urls=tuple(extra),
        find_links=tuple(dict.fromkeys(links)),
        no_index=no_index,
        offline=offline,
        cert=cert,
        client_cert=client_cert,
        trusted_hosts=tuple(dict.fromkeys(trusted)),
        proxy=proxy,
        timeout=timeout,
        retries=retries,
        origin=tuple(origin),
        ignored=ignored,
    )


def _local_or_url(entry: str, given_by: str, offline: bool) -> str:
    """A find-links entry: a URL (not offline), a file:// URL or a local folder that exists."""
    if entry.startswith("file://"):
        path = entry[len("file://") :]
    elif _is_url(entry):
        if offline:
            raise UsageError(
                f"--offline, but {given_by} names a URL ({redact_url(entry)}): offline the pip "
                "stage reads local wheel folders only",
                hints=["give --pip-find-links DIR with the wheels, or leave --offline out"],
            )
        return entry
    else:
        path = entry
    if not Path(path).expanduser().exists():
        raise UsageError(
            f"{given_by} {entry}: no such folder of wheels",
            hints=["python -m pip download --only-binary :all: -d DIR ... fills one"],
        )
    return entry if entry.startswith("file://") else str(Path(path).expanduser().resolve())


# ----------------------------------------------------------------------------- installers


@dataclass(frozen=True)
class Installer:
    kind: str  # "uv" | "pip"
    exe: str  # the uv binary, or the env's python (pip)
    version: str
    where: str  # "the env", "PATH", "the uv Python package", "the env's pip"

    def label(self) -> str:
        return f"{self.kind} {self.version}" if self.version else self.kind


def uv_candidates(prefix: Path | None) -> Iterator[tuple[str, str]]:
    """Where a uv may be, in order: the env's own, PATH, the ``uv`` Python package (looked at
    only when the ones before it do not serve: importing it costs a few ms)."""
    seen: set[str] = set()

    def new(exe: str) -> bool:
        real = os.path.realpath(exe)
        if real in seen:
            return False
        seen.add(real)
        return True

    if prefix is not None and os.access(prefix / "bin" / "uv", os.X_OK):
        own = str(prefix / "bin" / "uv")
        if new(own):
            yield own, "the env"
    on_path = shutil.which("uv")
    if on_path and new(on_path):
        yield on_path, "PATH"
    try:
        from uv import find_uv_bin  # type: ignore[import-not-found,unused-ignore]

        packaged = str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        return
    if new(packaged):
        yield packaged, "the uv Python package"


def uv_version(exe: str) -> tuple[int, ...] | None:
    """``uv --version`` as numbers (None: not a working uv); asked once per binary."""
    try:
        st = Path(exe).stat()
    except OSError:
        return None
    return _uv_version(exe, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=8)
def _uv_version(exe: str, mtime_ns: int, size: int) -> tuple[int, ...] | None:
    try:
        proc = subprocess.run(
            [exe, "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            env=child_env("uv", Sources()),
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.match(r"^uv (\d+)\.(\d+)\.(\d+)", proc.stdout.strip())
    return tuple(int(x) for x in m.groups()) if m else None


def env_has_pip(prefix: Path) -> bool:
    return any((prefix / "lib").glob("python3*/site-packages/pip/__main__.py"))


def _toml_available() -> bool:
    if sys.version_info >= (3, 11):
        return True
    import importlib.util

    return importlib.util.find_spec("tomli") is not None


def choose_installer(
    prefix: Path | None, wanted: str, *, pip_in_env: bool | None = None, say: Say = _quiet
) -> Installer:
    """The installer for the pip stage (module docstring). ``prefix`` None: before the env is
    built, with ``pip_in_env`` saying whether it will have pip."""
    if wanted not in INSTALLERS:
        raise UsageError(f"--pip-installer '{wanted}': choose one of {', '.join(INSTALLERS)}")
    has_pip = pip_in_env if pip_in_env is not None else prefix is not None and env_has_pip(prefix)
    skipped: list[str] = []
    if wanted in ("auto", "uv"):
        for exe, where in uv_candidates(prefix):
            version = uv_version(exe)
            shown = ".".join(map(str, version)) if version else "?"
            if version is None:
                skipped.append(f"{exe} ({where}) does not run")
            elif version < MIN_UV:
                skipped.append(f"uv {shown} from {where} is older than {_v(MIN_UV)}")
            elif not _toml_available():
                skipped.append(
                    f"uv {shown} from {where}: reading its lock needs tomli on Python 3.10"
                )
            else:
                return Installer("uv", exe, shown, where)
        if wanted == "uv":
            why = "; ".join(skipped) or "no uv in the env, on PATH or as the uv Python package"
            raise UsageError(
                f"--pip-installer uv: {why}",
                hints=[
                    f"pip install 'uv>={_v(MIN_UV)}' (or 'conda-unsloth[uv]')",
                    "or --pip-installer pip to use the env's pip",
                ],
            )
        if skipped:
            say("not using uv: " + "; ".join(skipped))
    if has_pip:
        python = str(prefix / "bin" / "python") if prefix is not None else "python"
        return Installer("pip", python, "", "the env's pip")
    if wanted == "pip":
        raise InstallError(
            "--pip-installer pip, but the env has no pip (no pip among its conda packages)",
            hints=[
                "add pip to the env's conda packages, or leave --pip-installer out to use uv",
            ],
        )
    raise InstallError(
        "no installer for the pip stage: the env has no pip, and "
        + (
            "; ".join(skipped)
            if skipped
            else "no uv was found (in the env, on PATH, or as the uv Python package)"
        ),
        hints=[
            f"pip install 'conda-unsloth[uv]' (uv >= {_v(MIN_UV)})",
            "or add pip to the env's conda packages",
        ],
    )


def _v(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


# ----------------------------------------------------------------------------- children


_DROP_PREFIXES = ("PIP_", "UV_")
_DROP = frozenset(
    {
        "PYTHONDONTWRITEBYTECODE",  # we compile what we install; pip would recompile itself
        "PYTHONPATH",  # another site-packages would count as installed
        "PYTHONHOME",
        "PYTHONSTARTUP",
        "PYTHONUSERBASE",
        "PYTHONNOUSERSITE",
        "PYTHONSAFEPATH",
        "PYTHONPYCACHEPREFIX",  # pycs belong in the env
        "VIRTUAL_ENV",
        "PYC_INVALIDATION_MODE",
    }
)


def child_env(kind: str, src: Sources) -> dict[str, str]:
    """The environment of an installer child: no PIP_*/UV_* (their settings come in as
    options), no config files, nothing that changes what the env's python sees."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _DROP
        and (not k.startswith(_DROP_PREFIXES) or re.match(r"^UV_INDEX_.+_(USERNAME|PASSWORD)$", k))
    }
    env["PYTHONNOUSERSITE"] = "1"
    if kind == "pip":
        env["PIP_CONFIG_FILE"] = os.devnull
        env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        env["PIP_NO_INPUT"] = "1"
    else:
        env["UV_NO_CONFIG"] = "1"
        env["UV_PYTHON_DOWNLOADS"] = "never"
        env.update(src.uv_env())
    return env


def run(
    cmd: list[str], what: str, env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    """An installer writes into the prefix: run it like rattler's child (prefixtx.run_child)."""
    from .prefixtx import run_child

    try:
        code, out, err = run_child(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=str(cwd)
        )
    except OSError as exc:
        raise InstallError(f"{what}: cannot run {cmd[0]}: {exc.strerror}") from None
    return subprocess.CompletedProcess(cmd, code, out, err)


# ----------------------------------------------------------------------------- the stage


@dataclass
class StageResult:
    installed: list[PipPackage]
    installer: Installer
    sources: Sources
    seconds: dict[str, float] = field(default_factory=dict)


def check_requirements(requirements: Sequence[str]) -> None:
    """Everything that reaches an installer from a file is a requirement, never an option."""
    for req in requirements:
        text = req.strip()
        if not text or text.startswith("-") or any(c in text for c in "\r\n\0"):
            raise InstallError(
                f"pip requirement {redact_text(req)!r} is not a requirement (an option, an "
                "empty line or a line break); refusing to pass it to the installer"
            )


# --- issue 16 #6 (h16b): offline, a direct URL requirement is refused, never downloaded --------
_URL_START = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://", re.ASCII)


def direct_url(requirement: str) -> str | None:
    """The URL a requirement installs from (``name @ URL``, a bare URL), else None."""
    text = requirement.strip()
    if _URL_START.match(text):
        return text.split()[0]
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        return Requirement(text).url
    except InvalidRequirement:
        _, at, rest = text.partition("@")
        m = _URL_START.search(rest) if at else None
        return rest[m.start() :].split()[0] if m else None


def refuse_remote_urls(requirements: Sequence[str]) -> None:
    """``--offline``: pip downloads a ``name @ https://...`` requirement even with
    ``--no-index``; refuse every direct URL that is not a local ``file://`` one."""
    for req in requirements:
        url = direct_url(req)
        if url is not None and url[:7].lower() != "file://":
            raise UsageError(
                f"--offline, but the pip requirement {redact_text(req.strip())!r} is a direct "
                f"URL ({redact_url(url)}): offline nothing is downloaded",
                hints=[
                    "put the wheel into a --pip-find-links folder and require it by "
                    "name==version (or name @ file:///path/to/wheel), or leave --offline out",
                ],
            )


# --- end of issue 16 #6 ------------------------------------------------------------------------


def site_packages(prefix: Path) -> Path:
    found = sorted((prefix / "lib").glob("python3*/site-packages"))
    if not found:
        raise InstallError(f"{prefix} has no lib/python3.X/site-packages: not a Python env")
    return found[-1]


def run_stage(
    prefix: Path,
    requirements: list[str],
    constraints: list[str],
    owned: dict[str, str],
    src: Sources,
    installer: Installer,
    locked: list[PipPackage] | None,
    require_hashes: bool,
    say: Say = _quiet,
) -> StageResult:
    """Resolve (unless ``locked``) and install; conda's distributions ``owned`` are pinned and
    must come out unchanged. The caller checks the env afterwards (:func:`dependency_problems`)."""
    import tempfile
    import time

    check_requirements(requirements)
    if locked is not None:
        check_requirements([p.requirement() for p in locked])
    if src.offline:  # issue 16 #6 (h16b): also checked before anything is built
        refuse_remote_urls([*requirements, *(p.requirement() for p in locked or ())])
    own_urls = locked is not None and all(p.direct and p.url for p in locked)
    if not src.has_source and not own_urls:
        raise InstallError(
            "no wheel source for the pip stage: --offline (or PIP_NO_INDEX) and no "
            "--pip-find-links folder",
            hints=["give --pip-find-links DIR, a folder with the companions' wheels"],
        )
    pins = [f"{name}=={version}" for name, version in sorted(owned.items())]
    seconds: dict[str, float] = {}
    say(f"pip stage with {installer.label()} from {installer.where}: {src.describe()}")
    if src.ignored:
        say(
            "the pip stage ignores "
            + ", ".join(src.ignored)
            + " (only wheel sources and network settings apply)"
        )
    site = site_packages(prefix)
    before = _dist_dirs(site)
    # the work files live inside the prefix: an interrupted create removes them with it
    with tempfile.TemporaryDirectory(prefix=".conda-unsloth-pip-", dir=prefix) as tmp:
        work = Path(tmp)
        cfile = work / "constraints.txt"
        cfile.write_text("\n".join(dict.fromkeys([*constraints, *pins])) + "\n")
        stage = (
            _UvStage(prefix, installer, src, work, cfile)
            if installer.kind == "uv"
            else _PipStage(prefix, installer, src, work, cfile)
        )
        t0 = time.perf_counter()
        if locked is None:
            locked = stage.resolve(requirements, owned)
            seconds["resolve"] = time.perf_counter() - t0
        clash = [p for p in locked if norm(p.name) in owned]
        if clash:
            p = clash[0]
            raise InstallError(
                f"pip would replace conda's {p.name} {owned[norm(p.name)]} with {p.name} "
                f"{p.version}; refusing (F12)",
                hints=[
                    "a pip requirement pins another build of a conda package; "
                    "check `conda unsloth env --json` for the companions"
                ],
            )
        if not locked:
            return StageResult([], installer, src, seconds)
        t0 = time.perf_counter()
        installed = stage.install(locked, require_hashes)
        seconds["install"] = time.perf_counter() - t0
    after = _dist_dirs(site)
    new = sorted(set(after) - set(before))
    gone = sorted(set(before) - set(after))
    if gone or any(norm(_dir_name(d)) in owned for d in new):
        from .inventory import conda_dists

        now = conda_dists(prefix)
        changed = sorted(set(owned.items()) ^ set(now.items())) or gone
        raise InstallError(f"the pip stage changed conda's distributions: {changed[:3]} (F12)")
    t0 = time.perf_counter()
    compile_installed(prefix, site, new, src)
    seconds["compile"] = time.perf_counter() - t0
    return StageResult(installed, installer, src, seconds)


def _dist_dirs(site: Path) -> list[str]:
    try:
        return [p.name for p in site.iterdir() if p.name.endswith((".dist-info", ".egg-info"))]
    except OSError:
        return []


def _dir_name(folder: str) -> str:
    """``torch-2.5.1.dist-info`` -> ``torch`` (names have no '-' in a dist-info folder)."""
    return folder.split("-", 1)[0]


class _PipStage:
    def __init__(self, prefix: Path, inst: Installer, src: Sources, work: Path, cfile: Path):
        self.prefix, self.inst, self.src, self.work, self.cfile = prefix, inst, src, work, cfile
        self.env = child_env("pip", src)
        self.base = [inst.exe, "-m", "pip", "install", "--no-input", "--no-cache-dir"]

    def resolve(self, requirements: list[str], owned: dict[str, str]) -> list[PipPackage]:
        report = self.work / "report.json"
        reqs = self.work / "requirements.in"
        reqs.write_text("\n".join(requirements) + "\n")
        # not --quiet: pip names a conflict's causes only on stdout
        cmd = [*self.base, "--dry-run", "--report", str(report), "-c", str(self.cfile)]
        proc = run([*cmd, *self.src.pip_args(), "-r", str(reqs)], "pip stage", self.env, self.work)
        if proc.returncode != 0:
            raise resolve_error(proc.stderr, self.src, self.inst, self.prefix, proc.stdout)
        return _from_report(json.loads(report.read_text()))

    def install(self, locked: list[PipPackage], require_hashes: bool) -> list[PipPackage]:
        req = self.work / "requirements.txt"
        req.write_text("".join(_hashed_line(p, [p.sha256] if p.sha256 else []) for p in locked))
        cmd = [
            *self.base,
            "--no-deps",
            "-c",
            str(self.cfile),
            *self.src.pip_args(),
            "-r",
            str(req),
        ]
        if all(p.sha256 for p in locked) or require_hashes:
            cmd.append("--require-hashes")
        proc = run(cmd, "pip stage", self.env, self.work)
        if proc.returncode != 0:
            raise install_error(proc.stderr, self.src, self.inst)
        return [_redacted(p) for p in locked]


class _UvStage:
    def __init__(self, prefix: Path, inst: Installer, src: Sources, work: Path, cfile: Path):
        from .cache import cache_dir

        self.prefix, self.inst, self.src, self.work, self.cfile = prefix, inst, src, work, cfile
        self.env = child_env("uv", src)
        self.common = [
            "--no-config",
            "--cache-dir",
            str(cache_dir("uv")),
            "--python",
            str(prefix / "bin" / "python"),
            "--color",
            "never",
            "--no-progress",
            "--quiet",
            "--no-python-downloads",
        ]
        self.wheels: dict[str, list[dict[str, Any]]] = {}

    def _uv(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run([self.inst.exe, "pip", *args], "pip stage (uv)", self.env, self.work)

    def resolve(self, requirements: list[str], owned: dict[str, str]) -> list[PipPackage]:
        reqs = self.work / "requirements.in"
        reqs.write_text("\n".join(requirements) + "\n")
        proc = self._uv(
            "install", *self.common, "--dry-run", "--output-format", "json",
            "-c", str(self.cfile), *self.src.uv_args(), "-r", str(reqs),
        )  # fmt: skip
        if proc.returncode != 0:
            raise resolve_error(proc.stderr, self.src, self.inst, self.prefix)
        try:
            changes = json.loads(proc.stdout)["changes"]
            plan = [(str(c["name"]), str(c["version"]), str(c["action"])) for c in changes]
        except (ValueError, KeyError, TypeError):
            raise InstallError(
                f"uv {self.inst.version} answered the dry run in a form this conda-unsloth does "
                f"not read: {proc.stdout[:200]!r}",
                hints=["--pip-installer pip uses the env's pip instead"],
            ) from None
        for name, version, action in plan:
            if action != "installed" and norm(name) in owned:
                new = [v for n, v, a in plan if norm(n) == norm(name) and a == "installed"]
                raise InstallError(
                    f"pip would replace conda's {name} {owned[norm(name)]} with {name} "
                    f"{new[0] if new else '(nothing)'}; refusing (F12)",
                    hints=[
                        "a pip requirement pins another build of a conda package; "
                        "check `conda unsloth env --json` for the companions"
                    ],
                )
            if action != "installed":
                verb = {"uninstalled": "remove", "reinstalled": "reinstall"}.get(action, action)
                raise InstallError(f"the pip stage would {verb} {name} {version}; refusing")
        wanted = [PipPackage(n, v) for n, v, a in plan if a == "installed"]
        if not wanted or any(norm(p.name) in owned for p in wanted):
            return wanted  # empty, or a clash the caller refuses with the F12 message
        return self._locate_local(wanted) or self._locate(wanted)

    def _locate_local(self, wanted: list[PipPackage]) -> list[PipPackage] | None:
        """Offline (or with no index), when every pinned package has exactly one file in the
        find-links folders, that file is the one uv installs: its url and sha256 come from
        the folder (the install step checks the hash) and a uv call is saved. None: ask uv."""
        if not (self.src.offline or self.src.no_index) or not self.src.find_links:
            return None
        from packaging.utils import (
            InvalidSdistFilename,
            InvalidWheelFilename,
            parse_sdist_filename,
            parse_wheel_filename,
        )
        from packaging.version import Version

        found: dict[tuple[str, Version], list[Path]] = {}
        for entry in self.src.find_links:
            folder = Path(entry[len("file://") :] if entry.startswith("file://") else entry)
            if not folder.is_dir():
                return None
            for f in folder.iterdir():
                try:
                    if f.name.endswith(".whl"):
                        name, version, _, _ = parse_wheel_filename(f.name)
                    else:
                        name, version = parse_sdist_filename(f.name)
                except (InvalidWheelFilename, InvalidSdistFilename):
                    continue
                found.setdefault((str(name), version), []).append(f)
        out = []
        for p in wanted:
            files = found.get((norm(p.name), Version(p.version)), [])
            if len(files) != 1 or not files[0].name.endswith(".whl"):
                return None  # several builds of it (or an sdist): uv decides
            url, sha = files[0].resolve().as_uri(), _sha256(files[0])
            self.wheels[norm(p.name)] = [{"url": url, "hashes": {"sha256": sha}}]
            out.append(PipPackage(p.name, p.version, url, sha))
        return out

    def _locate(self, wanted: list[PipPackage]) -> list[PipPackage]:
        """The wheel (url, sha256) of each pinned package, from the same sources."""
        pinned = self.work / "pinned.in"
        pinned.write_text("".join(f"{p.name}=={p.version}\n" for p in wanted))
        proc = self._uv(
            "compile", *self.common, "--no-deps", "--format", "pylock.toml", "--no-header",
            "-c", str(self.cfile), *self.src.uv_args(), str(pinned),
        )  # fmt: skip
        if proc.returncode != 0:
            raise resolve_error(proc.stderr, self.src, self.inst, self.prefix)
        lock = _toml(proc.stdout)
        out = []
        for item in lock.get("packages", []):
            name, version = str(item["name"]), str(item["version"])
            files = list(item.get("wheels") or [])
            if not files and item.get("sdist"):
                files = [item["sdist"]]
            self.wheels[norm(name)] = files
            hashes = [str((f.get("hashes") or {}).get("sha256") or "") for f in files]
            out.append(
                PipPackage(
                    name,
                    version,
                    str(files[0]["url"]) if len(files) == 1 else None,
                    hashes[0] if len(files) == 1 and hashes[0] else None,
                )
            )
        return out

    def install(self, locked: list[PipPackage], require_hashes: bool) -> list[PipPackage]:
        lines = []
        for p in locked:
            files = self.wheels.get(norm(p.name))
            hashes = [
                str(f["hashes"]["sha256"])
                for f in files or []
                if (f.get("hashes") or {}).get("sha256")
            ]
            if files is None or len(hashes) != len(files):
                hashes = [p.sha256] if p.sha256 else []
            lines.append(_hashed_line(p, hashes))
        req = self.work / "requirements.txt"
        req.write_text("".join(lines))
        hashed = all("--hash=" in line for line in lines)
        args = ["install", *self.common, "--no-deps", "-c", str(self.cfile), *self.src.uv_args()]
        if hashed or require_hashes:
            args.append("--require-hashes")
        proc = self._uv(*args, "-r", str(req))
        if proc.returncode != 0:
            raise install_error(proc.stderr, self.src, self.inst)
        if not self.wheels:  # a lock: its own urls and hashes
            return [_redacted(p) for p in locked]
        return [_redacted(p) for p in self._which_wheels(locked)]

    def _which_wheels(self, locked: list[PipPackage]) -> list[PipPackage]:
        """Which of a version's listed files was installed: the one whose file name carries the
        installed WHEEL's tags (the name as the installed METADATA spells it)."""
        site = site_packages(self.prefix)
        by_norm = {norm(p.name): p for p in locked}
        found: dict[str, PipPackage] = {}
        for d in site.iterdir():
            if not d.name.endswith(".dist-info") or norm(_dir_name(d.name)) not in by_norm:
                continue
            meta = _headers(d / "METADATA")
            key = norm(meta.get("Name", [_dir_name(d.name)])[0])
            p = by_norm.get(key)
            if p is None:
                continue
            files = self.wheels.get(key) or []
            tags = set(_headers(d / "WHEEL").get("Tag", []))
            chosen = (
                [f for f in files if _file_tags(str(f["url"])) == tags]
                if len(files) > 1
                else files
            )
            url = str(chosen[0]["url"]) if len(chosen) == 1 else p.url
            sha = (chosen[0].get("hashes") or {}).get("sha256") if len(chosen) == 1 else p.sha256
            name = meta.get("Name", [p.name])[0]
            found[key] = PipPackage(name, meta.get("Version", [p.version])[0], url, sha)
        return [found.get(norm(p.name), p) for p in locked]


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _toml(text: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # Python 3.10: the [uv] extra brings tomli
        import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]
    try:
        doc: dict[str, Any] = tomllib.loads(text)
    except ValueError as exc:
        raise InstallError(f"uv's pylock output cannot be read: {exc}") from None
    return doc


def _file_tags(url: str) -> set[str]:
    stem = url.rsplit("/", 1)[-1]
    if not stem.endswith(".whl"):
        return set()
    parts = stem[: -len(".whl")].split("-")
    if len(parts) < 5:
        return set()
    py, abi, plat = parts[-3:]
    return {f"{x}-{y}-{z}" for x in py.split(".") for y in abi.split(".") for z in plat.split(".")}


def _hashed_line(p: PipPackage, hashes: list[str]) -> str:
    return p.requirement() + "".join(f" --hash=sha256:{h}" for h in hashes if h) + "\n"


def _redacted(p: PipPackage) -> PipPackage:
    if p.url is None:
        return p
    return PipPackage(p.name, p.version, redact_url(p.url), p.sha256, p.direct)


def _from_report(report: dict[str, Any]) -> list[PipPackage]:
    out = []
    for item in report.get("install", []):
        meta = item.get("metadata", {})
        info = item.get("download_info", {})
        archive = info.get("archive_info") or {}
        hashes = archive.get("hashes") or {}
        sha = hashes.get("sha256")
        legacy = archive.get("hash")  # pip < 23.1 writes only "hash": "sha256=HEX"
        if sha is None and isinstance(legacy, str) and legacy.startswith("sha256="):
            sha = legacy.removeprefix("sha256=")
        out.append(
            PipPackage(
                name=str(meta.get("name")),
                version=str(meta.get("version")),
                url=info.get("url"),
                sha256=sha,
                direct=bool(item.get("is_direct")),
            )
        )
    return out


# ----------------------------------------------------------------------------- errors


_NETWORK = re.compile(
    r"(dns error|failed to lookup address|connection refused|tcp connect error|error sending "
    r"request|failed to fetch|could not fetch url|newconnectionerror|max retries exceeded|"
    r"proxyerror|timed out|network is unreachable|name or service not known|"
    r"temporary failure in name resolution)",
    re.IGNORECASE,
)
_TLS = re.compile(
    r"(certificate verify failed|invalid peer certificate|sslerror|unknownissuer)", re.I
)
_MISSING = re.compile(
    r"(not found in the provided package locations|no matching distribution found|"
    r"was not found in the package registry|was not found in the cache|"
    r"could not find a version that satisfies)",
    re.IGNORECASE,
)


def summary(stderr: str, stdout: str = "") -> str:
    """The installer's reason in one line (pip: its ERROR lines and the conflict it names;
    uv: error + causes), credentials removed."""
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    errors = [
        ln.removeprefix("ERROR: ")
        for ln in lines
        if ln.startswith("ERROR") and "ResolutionImpossible" not in ln
    ]
    if errors or any(ln.startswith("ERROR") for ln in lines):
        text = " ".join(errors[-2:]) or "ResolutionImpossible"
        out = stdout.splitlines()
        if "The conflict is caused by:" in (ln.strip() for ln in out):
            first = [ln.strip() for ln in out].index("The conflict is caused by:") + 1
            causes = []
            for ln in out[first:]:
                if not ln.strip():
                    break
                causes.append(ln.strip())
            text += " The conflict is caused by: " + "; ".join(causes)
        return redact_text(text)[:600]
    at = next((i for i, ln in enumerate(lines) if ln.startswith("error:")), None)
    if at is not None:
        picked = [ln for ln in lines[at:] if not ln.startswith("hint:")]
        text = " ".join(picked).removeprefix("error: ")
        return redact_text(re.sub(r"\s+", " ", text))[:600]
    return redact_text((lines or ["(no output)"])[-1])


def _source_hints(stderr: str, src: Sources, inst: Installer) -> list[str]:
    local = "--pip-find-links DIR (a folder with the wheels, works offline)"
    if _TLS.search(stderr):
        return [
            "the index's TLS certificate is not trusted: set PIP_CERT (or SSL_CERT_FILE) to "
            "your CA bundle, or give --pip-find-links DIR",
        ]
    unreachable = _NETWORK.search(stderr) or (
        _MISSING.search(stderr) and not (src.offline or src.no_index) and not _reachable(src)
    )
    if unreachable and not src.offline:
        where = redact_url(src.index_url or "https://pypi.org/simple")
        return [
            f"no wheel index was reachable ({where}): give --pip-index-url URL of a mirror you "
            f"can reach (or set PIP_INDEX_URL), or {local}",
        ]
    if _MISSING.search(stderr):
        if src.offline or src.no_index:
            folders = ", ".join(src.find_links) or "none given"
            return [
                f"offline, the pip stage installs only from --pip-find-links folders "
                f"({folders}): add the missing wheels there",
                "conda unsloth env --json lists the pinned companions",
            ]
        return [
            "a companion is not on the index: check --pip-index-url / PIP_INDEX_URL, or "
            f"give {local}",
            "conda unsloth env --json lists the pinned companions",
        ]
    return ["conda unsloth env --json lists the pinned companions"]


def _reachable(src: Sources) -> bool:
    """Whether the index answers at all (asked only after a failed resolution: pip with
    ``--retries 0`` says "from versions: none" whether the index lacks a package or is down)."""
    import ssl
    import urllib.error
    import urllib.request

    url = _index_url_only(src.index_url or "https://pypi.org/simple").rstrip("/") + "/"
    handlers: list[urllib.request.BaseHandler] = []
    if src.proxy:
        handlers.append(urllib.request.ProxyHandler({"http": src.proxy, "https": src.proxy}))
    if src.cert:
        handlers.append(
            urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=src.cert))
        )
    try:
        urllib.request.build_opener(*handlers).open(url, timeout=5).close()
    except urllib.error.HTTPError:
        return True  # it answered
    except (OSError, ValueError):
        return False
    return True


def resolve_error(
    stderr: str, src: Sources, inst: Installer, prefix: Path, stdout: str = ""
) -> InstallError:
    if inst.kind == "pip" and "No module named pip" in stderr:
        return InstallError(
            f"the env's python has no pip ({prefix}/bin/python -m pip: No module named pip)",
            hints=[
                f"install uv (pip install 'conda-unsloth[uv]', uv >= {_v(MIN_UV)}) and leave "
                "--pip-installer out, or add pip to the env's packages",
            ],
        )
    return InstallError(
        "pip could not resolve the companions against conda's packages: "
        + summary(stderr, stdout),
        hints=_source_hints(stderr, src, inst),
    )


def install_error(stderr: str, src: Sources, inst: Installer) -> InstallError:
    hints = (
        _source_hints(stderr, src, inst)
        if (_NETWORK.search(stderr) or _TLS.search(stderr))
        else []
    )
    return InstallError(f"pip install failed: {summary(stderr)}", hints=hints)


# ----------------------------------------------------------------------------- compile


_COMPILE = """\
import compileall, sys, warnings
warnings.filterwarnings("ignore")
paths = [p for p in sys.stdin.read().split("\\0") if p]
def one(p):
    return compileall.compile_file(p, force=True, quiet=2)
n = int(sys.argv[1])
if n > 1:
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(n) as ex:
        list(ex.map(one, paths, chunksize=32))
else:
    for p in paths:
        one(p)
"""


def installed_sources(site: Path, folders: Sequence[str]) -> list[str]:
    """The ``.py`` files the new distributions installed (from their RECORD), in site-packages."""
    out: list[str] = []
    base = os.path.realpath(site)
    for folder in folders:
        record = site / folder / "RECORD"
        try:
            text = record.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            rel = line.rsplit(",", 2)[0] if line.count(",") >= 2 else line
            if not rel.endswith(".py"):
                continue
            path = Path(base, rel).resolve()
            if str(path).startswith(base + os.sep) and path.is_file():
                out.append(str(path))
    return out


def compile_installed(prefix: Path, site: Path, folders: Sequence[str], src: Sources) -> int:
    """Byte-compile the new distributions' files (as pip does; uv's ``--compile-bytecode``
    would recompile every file in site-packages, conda's too). Compile errors are ignored, as
    pip and uv ignore them. Returns the number of files.

    When this interpreter is the env's (CPython of the same X.Y: the same magic number and cache
    tag), a few hundred files are compiled here, exactly as the env's python would write them
    (same path recorded, optimization 0, the default invalidation mode); otherwise, or for
    more, the env's python compiles them in worker processes."""
    files = installed_sources(site, folders)
    if not files:
        return 0
    if len(files) <= IN_PROCESS_FILES and same_python(prefix, site):
        for f in files:
            _compile_here(f)
        return len(files)
    workers = max(1, min(os.cpu_count() or 1, len(files) // 200))
    from .prefixtx import run_child

    env = child_env("pip", src)
    env.pop("PIP_CONFIG_FILE", None)
    try:
        run_child(
            [str(prefix / "bin" / "python"), "-c", _COMPILE, str(workers)],
            input="\0".join(files),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
    except OSError:
        return 0  # compiling is an optimisation: an env that cannot run it failed earlier
    return len(files)


IN_PROCESS_FILES = 400


def same_python(prefix: Path, site: Path) -> bool:
    """The env's python is a CPython of this interpreter's X.Y."""
    tag = sys.implementation.cache_tag
    if (
        sys.implementation.name != "cpython"
        or tag != f"cpython-{site.parent.name[6:].replace('.', '')}"
    ):
        return False
    return not any((prefix / "conda-meta").glob("pypy*.json"))


def _compile_here(path: str) -> None:
    import contextlib
    import py_compile

    src = Path(path)
    cfile = src.parent / "__pycache__" / f"{src.stem}.{sys.implementation.cache_tag}.pyc"
    # as pip and uv: a file that does not compile stays uncompiled
    with contextlib.suppress(py_compile.PyCompileError, OSError, ValueError, SyntaxError):
        py_compile.compile(path, cfile=str(cfile), dfile=path, doraise=True, optimize=0)


# ----------------------------------------------------------------------------- the check


def _headers(path: Path, limit: int = 1024 * 1024) -> dict[str, list[str]]:
    """The header block of a METADATA/WHEEL/PKG-INFO file: name -> values (continuation lines
    folded), read up to the first blank line."""
    out: dict[str, list[str]] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read(limit)
    except OSError:
        return out
    key = None
    for line in text.splitlines():
        if not line.strip():
            break
        if line[0] in " \t" and key is not None:
            out[key][-1] += " " + line.strip()
            continue
        k, sep, v = line.partition(":")
        if not sep:
            continue
        key = k.strip()
        out.setdefault(key, []).append(v.strip())
    return out


@dataclass(frozen=True)
class Dist:
    name: str
    version: str
    requires: tuple[str, ...]
    folder: str


def read_dists(site: Path) -> list[Dist]:
    """Every distribution in ``site`` with its requirements (dist-info METADATA Requires-Dist;
    egg-info PKG-INFO and requires.txt), as pip's check reads them."""
    out = []
    for path in sorted(site.iterdir()):
        entry = path.name
        if entry.endswith(".dist-info"):
            h = _headers(path / "METADATA")
            reqs = tuple(h.get("Requires-Dist", []))
        elif entry.endswith(".egg-info"):
            h = _headers(path / "PKG-INFO" if path.is_dir() else path)
            reqs = tuple(_egg_requires(path / "requires.txt")) if path.is_dir() else ()
        else:
            continue
        if h.get("Name") and h.get("Version"):
            out.append(Dist(h["Name"][0], h["Version"][0], reqs, entry))
    return out


def _egg_requires(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    out: list[str] = []
    marker: str | None = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            extra, _, cond = section.partition(":")
            marker = None if extra else cond  # an extra's section is never wanted by a check
            continue
        if marker is None:
            continue
        out.append(f"{line}; {marker}" if marker else line)
    return out


_ONLY_EXTRA = re.compile(r""";\s*extra\s*==\s*['"][^'"]*['"]\s*$""")


def env_markers(prefix: Path, site: Path) -> dict[str, str]:
    """PEP 508 marker values for the env's python (this host, the env's version)."""
    from packaging.markers import default_environment

    env = {k: str(v) for k, v in default_environment().items()}
    short = site.parent.name.removeprefix("python")
    full = short
    for rec in (prefix / "conda-meta").glob("python-3*.json"):
        parts = rec.name[: -len(".json")].rsplit("-", 2)
        if len(parts) == 3 and parts[0] == "python":
            full = parts[1]
    env.update(python_version=short, python_full_version=full, implementation_version=full)
    return env


def dependency_problems(prefix: Path) -> list[str]:
    """What ``pip check`` reports, read from the metadata: every requirement (markers evaluated
    for the env's python, no extras) of every installed distribution is installed, in a version
    its specifier allows (pre-releases allowed), in pip's words."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.version import InvalidVersion, Version

    site = site_packages(prefix)
    dists = read_dists(site)
    have: dict[str, Dist] = {}
    for d in dists:
        have.setdefault(norm(d.name), d)
    markers: dict[str, str] | None = None
    problems = []
    for d in sorted(have.values(), key=lambda d: norm(d.name)):
        for line in d.requires:
            if _ONLY_EXTRA.search(line):
                continue
            try:
                req = Requirement(line)
            except InvalidRequirement:
                continue  # pip check skips what it cannot parse, too
            if req.marker is not None:
                if markers is None:
                    markers = env_markers(prefix, site)
                if not req.marker.evaluate({**markers, "extra": ""}):
                    continue
            dep = have.get(norm(req.name))
            if dep is None:
                problems.append(
                    f"{d.name} {d.version} requires {req.name}, which is not installed."
                )
                continue
            try:
                ok = req.specifier.contains(Version(dep.version), prereleases=True)
            except InvalidVersion:
                ok = True
            if not ok:
                problems.append(
                    f"{d.name} {d.version} has requirement {req}, but you have "
                    f"{dep.name} {dep.version}."
                )
    return problems

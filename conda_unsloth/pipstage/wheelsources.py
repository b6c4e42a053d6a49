"""Where the pip stage gets wheels and how it reaches them: ``--pip-find-links``,
``--pip-index-url``, ``--offline`` and the environment's ``PIP_*``/``UV_*`` wheel sources and
network settings, read once into :class:`Sources` (see :mod:`conda_unsloth.pipstage`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from ..redact import redact_text, redact_url


@dataclass(frozen=True)
class Sources:
    """Where the pip stage gets wheels and how it reaches them, from the flags and the
    environment (see :mod:`conda_unsloth.pipstage`). ``origin`` says where each setting came
    from."""

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
                out += ["--extra-index-url", index_url_only(url)]
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
                where += " + " + ", ".join(index_url_only(u) for u in self.extra_index_urls)
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


def index_url_only(entry: str) -> str:
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
    """The wheel sources and network settings of the pip stage (:mod:`conda_unsloth.pipstage`).
    Raises UsageError for a setting that cannot be honoured, naming it."""
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

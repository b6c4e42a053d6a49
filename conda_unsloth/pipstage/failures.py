"""An installer's failure in one line, with hints that name the next thing to try (an index
that is not reachable, an untrusted certificate, a companion missing from the sources)."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import InstallError
from ..redact import redact_text, redact_url
from .installers import MIN_UV, Installer, dotted
from .wheelsources import Sources, index_url_only

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

    url = index_url_only(src.index_url or "https://pypi.org/simple").rstrip("/") + "/"
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
                f"install uv (pip install 'conda-unsloth[uv]', uv >= {dotted(MIN_UV)}) and leave "
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

"""What reaches an installer as a requirement: checked to be one (never an option),
direct URLs refused offline, and the ``--hash`` lines of the wheels a stage installs."""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..errors import InstallError, UsageError
from ..redact import redact_text, redact_url
from ..solvers.base import PipPackage


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
    if "@" not in text:  # PEP 508 names a URL only after "@" (and packaging costs 15-30 ms)
        return None
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


def hashed_line(p: PipPackage, hashes: list[str]) -> str:
    return p.requirement() + "".join(f" --hash=sha256:{h}" for h in hashes if h) + "\n"


def redacted(p: PipPackage) -> PipPackage:
    if p.url is None:
        return p
    return PipPackage(p.name, p.version, redact_url(p.url), p.sha256, p.direct)

"""Remove credentials from channel and package URLs before they reach a lock file or a screen.

Two forms carry secrets in conda URLs: anaconda.org tokens (``.../t/<token>/channel/...``) and
HTTP basic auth (``https://user:password@host/...``). Like ``conda list --explicit`` (whose
``--remove-auth`` is on by default) both are *removed*, not masked, so the URL stays usable
wherever the credentials are configured another way (``.condarc``, ``conda auth``, netrc).
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"/t/[^/]+(?=/|$)")
_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@")


def redact_url(url: str) -> str:
    """``https://u:p@host/t/tok/chan/linux-64/x.conda`` -> ``https://host/chan/linux-64/x.conda``."""
    out = _USERINFO.sub(r"\g<scheme>", url, count=1)
    if out.startswith(("https://", "http://")):
        out = _TOKEN.sub("", out, count=1)
    return out


def has_credentials(text: str) -> bool:
    """True if ``text`` still contains a token path or a ``user:password@`` part."""
    return any(
        _USERINFO.match(word) or (word.startswith("http") and _TOKEN.search(word))
        for word in text.split()
    )


def redact_text(text: str) -> str:
    """:func:`redact_url` applied to every URL inside a message (solver output, errors)."""
    if "://" not in text:
        return text
    return re.sub(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]+", lambda m: redact_url(m.group(0)), text)

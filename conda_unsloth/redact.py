"""Remove credentials from URLs before they reach a screen, a JSON document, a file or the marker.

One function decides what a credential is (:func:`redact_url`); :func:`redact_text` applies it to
every URL in a message, :func:`redact_obj` to every string of a JSON document, and
:func:`redacted_output` to everything a verb writes on stdout and stderr (``cli.execute`` wraps
every verb in it, in both entry points), so a line that quotes a spec, a URL or a solver's
message cannot carry a token whichever module printed it.

What counts as a credential in a URL (any scheme, any case: ``HTTPS://`` is ``https://``):

* the userinfo, ``user:password@`` or ``token@`` (everything before the authority's last ``@``;
  IPv6 hosts and ports are kept),
* anaconda.org tokens, a ``/t/<token>`` path segment (not in ``file://`` URLs, where ``t`` is a
  directory),
* the whole query (``?token=``, ``?access_token=``, ``?X-Amz-Signature=``...: conda and pip URLs
  need none, and no list of parameter names can be complete),
* a fragment that is not a package digest (``#sha256=HEX``, ``#md5=HEX``, a bare hex digest as in
  ``@EXPLICIT`` files) or pip's ``egg=``/``subdirectory=``.

Like ``conda list --explicit`` (whose ``--remove-auth`` is on by default) credentials are
*removed*, not masked, so the URL stays usable wherever the credentials are configured another
way (``.condarc``, ``conda auth``, netrc). Without a scheme (a channel typed as
``user:tok@host/chan`` or ``host.org/t/tok/chan``) the same parts are removed.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import TextIO

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://", re.ASCII)
_TOKEN = re.compile(r"/t/[^/]+(?=/|$)")
_DIGEST = re.compile(
    r"((sha256|sha384|sha512|md5)[=:])?([0-9a-fA-F]{32}|[0-9a-fA-F]{64}|[0-9a-fA-F]{96}|"
    r"[0-9a-fA-F]{128})",
    re.ASCII,
)
_SAFE_FRAGMENT = re.compile(r"(egg|subdirectory)=[A-Za-z0-9._/+-]*", re.ASCII)
# in text: a URL with a scheme, up to a space, a quote or an angle bracket
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+", re.ASCII)
# in text, without a scheme: user:password@host... and host.tld/t/token/...
_BARE_USERINFO = re.compile(r"(?<![\w/@.:%+-])[^\s/@:'\"<>`]+:[^\s/'\"<>`]*@(?=[\w\[])")
_BARE_TOKEN = re.compile(
    r"(?<![\w/.-])((?:(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}|(?:\d{1,3}\.){3}\d{1,3}|localhost|"
    r"\[[0-9A-Fa-f:.]+\])(?::\d+)?)/t/[^/\s'\"<>`]+(?=/|[\s'\"<>`]|$)"
)


def _fragment(fragment: str) -> str:
    """The parts of a URL fragment that are no credential (package digests, egg=...)."""
    kept = [
        part
        for part in fragment.split("&")
        if _DIGEST.fullmatch(part) or _SAFE_FRAGMENT.fullmatch(part)
    ]
    return "#" + "&".join(kept) if kept else ""


def redact_url(url: str) -> str:
    """``https://u:p@host/t/tok/chan/x.conda?token=k#sha256=H`` ->
    ``https://host/chan/x.conda#sha256=H`` (see the module docstring)."""
    m = _SCHEME.match(url)
    if m is None:
        return _redact_bare(url)
    scheme, rest = m.group(1), url[m.end() :]
    cut = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=-1)
    authority, tail = (rest, "") if cut < 0 else (rest[:cut], rest[cut:])
    authority = authority.rpartition("@")[2]
    path, hash_, fragment = tail.partition("#")
    path = path.partition("?")[0]
    if scheme.lower() != "file":
        path = _TOKEN.sub("", path)
    return f"{scheme}://{authority}{path}{_fragment(fragment) if hash_ else ''}"


def _redact_bare(text: str) -> str:
    """A URL-like value without a scheme: userinfo and anaconda tokens removed."""
    out = _BARE_USERINFO.sub("", text)
    return _BARE_TOKEN.sub(r"\1", out)


def redact_text(text: str) -> str:
    """:func:`redact_url` applied to every URL inside a message (solver output, errors), with
    or without a scheme."""
    if "://" in text:
        text = _URL_IN_TEXT.sub(_redact_match, text)
    if "@" in text or "/t/" in text:
        text = _redact_bare(text)
    return text


def _redact_match(m: re.Match[str]) -> str:
    """A URL found in text, less the punctuation that closes the sentence around it."""
    url = m.group(0)
    body = url.rstrip(").,;:]}!")
    return redact_url(body) + url[len(body) :]


def has_credentials(text: str) -> bool:
    """True if ``text`` still holds something :func:`redact_text` would remove."""
    return redact_text(text) != text


def redact_obj(obj: Any) -> Any:
    """Every string in a JSON-like document (dicts, lists, tuples) through :func:`redact_text`;
    dict keys too."""
    if isinstance(obj, str):
        return redact_text(obj)
    if isinstance(obj, dict):
        return {redact_obj(k): redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_obj(v) for v in obj]
    return obj


# ----------------------------------------------------------------------------- the terminal


class RedactingStream(io.TextIOBase):
    """A text stream that writes whole lines through :func:`redact_text` to ``raw`` (what is
    left of a line goes out at ``flush``: a prompt, a spinner's frame). Everything else (its
    encoding, ``isatty``, ``fileno``) is ``raw``'s, so rich and input() see the real stream."""

    def __init__(self, raw: TextIO) -> None:
        super().__init__()
        self.raw = raw
        self._pending: list[str] = []  # the current line's pieces (many small writes: linear)

    def write(self, s: str) -> int:
        if "\n" not in s:
            self._pending.append(s)
            return len(s)
        lines, _, rest = s.rpartition("\n")
        text = "".join([*self._pending, lines, "\n"])
        self._pending = [rest] if rest else []
        self.raw.write(redact_text(text))
        return len(s)

    def flush(self) -> None:
        if self._pending:
            text, self._pending = "".join(self._pending), []
            self.raw.write(redact_text(text))
        self.raw.flush()

    def isatty(self) -> bool:
        return self.raw.isatty()

    def fileno(self) -> int:
        return self.raw.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(getattr(self.raw, "encoding", None) or "utf-8")

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self.raw, "errors", None)

    def __getattr__(self, name: str) -> Any:  # reconfigure, buffer, ...: the raw stream's
        return getattr(self.raw, name)


@contextlib.contextmanager
def redacted_output() -> Iterator[None]:
    """stdout and stderr through :class:`RedactingStream` for the duration (nested: once)."""
    if isinstance(sys.stdout, RedactingStream) or isinstance(sys.stderr, RedactingStream):
        yield
        return
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = RedactingStream(out), RedactingStream(err)
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        sys.stdout, sys.stderr = out, err

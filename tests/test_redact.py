from __future__ import annotations

import pytest

from conda_unsloth.redact import (
    RedactingStream,
    has_credentials,
    redact_obj,
    redact_text,
    redact_url,
    redacted_output,
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://conda.anaconda.org/t/ab-12345-cd/pytorch/linux-64/x-1-0.tar.bz2",
            "https://conda.anaconda.org/pytorch/linux-64/x-1-0.tar.bz2",
        ),
        (
            "https://user:s3cret@mirror.example.org/conda-forge",
            "https://mirror.example.org/conda-forge",
        ),
        ("https://u:p@h.org/t/tok/chan", "https://h.org/chan"),
        ("https://conda.anaconda.org/t/tok", "https://conda.anaconda.org"),
        ("file:///home/t/x/chan", "file:///home/t/x/chan"),
        ("https://conda.anaconda.org/conda-forge", "https://conda.anaconda.org/conda-forge"),
    ],
    ids=["token", "basic-auth", "both", "token-at-end", "file-path-with-t-dir", "clean"],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected
    assert not has_credentials(redact_url(url))


def test_has_credentials() -> None:
    assert has_credentials("see https://conda.anaconda.org/t/tok/pytorch now")
    assert has_credentials("https://a:b@h/x")
    assert not has_credentials("file:///srv/t/chan https://h/x")


def test_redact_text_in_a_solver_message() -> None:
    msg = (
        "foo * cannot be installed: candidate not in requested channel: "
        "'https://conda.anaconda.org/t/tok-123/pytorch/' nor https://a:b@m.org/c"
    )
    out = redact_text(msg)
    assert out == (
        "foo * cannot be installed: candidate not in requested channel: "
        "'https://conda.anaconda.org/pytorch/' nor https://m.org/c"
    )
    assert not has_credentials(out)


# ----------------------------------------------------------------------------- issue 16 #7

TOKEN = "Zq7Xv-s3cr3t"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # the query is removed whatever its parameters are called
        (f"https://h.org/chan?token={TOKEN}", "https://h.org/chan"),
        (f"https://h.org/x.whl?X-Amz-Signature={TOKEN}&a=1", "https://h.org/x.whl"),
        (f"https://h.org/x.whl?a=1&access_token={TOKEN}#sha256={'a' * 64}",
         f"https://h.org/x.whl#sha256={'a' * 64}"),
        # the scheme in any case, any scheme
        (f"HTTPS://u:{TOKEN}@h.org/t/{TOKEN}/chan", "HTTPS://h.org/chan"),
        (f"Http://{TOKEN}@h.org/chan", "Http://h.org/chan"),
        (f"s3://key:{TOKEN}@bucket/chan/linux-64", "s3://bucket/chan/linux-64"),
        (f"oci://u:{TOKEN}@ghcr.io/channels/conda-forge", "oci://ghcr.io/channels/conda-forge"),
        (f"ftp://u:{TOKEN}@mirror.org/pub", "ftp://mirror.org/pub"),
        (f"git+https://{TOKEN}@github.com/a/b.git@v1#egg=b", "git+https://github.com/a/b.git@v1#egg=b"),
        # IPv6 hosts and ports stay; an unencoded @ in the password goes with it
        (f"https://u:{TOKEN}@[2001:db8::1]:8443/t/{TOKEN}/c", "https://[2001:db8::1]:8443/c"),
        (f"https://u:p@ss{TOKEN}@h.org:8080/c", "https://h.org:8080/c"),
        # percent-encoded and non-ASCII tokens
        (f"https://u:p%40ss%3A{TOKEN}@h.org/t/t%C3%B6k{TOKEN}/c", "https://h.org/c"),
        (f"https://u:tök€n{TOKEN}@h.org/t/tök€n{TOKEN}/c", "https://h.org/c"),
        # a fragment that is not a digest (or pip's egg=) goes
        (f"https://h.org/x.whl#token={TOKEN}", "https://h.org/x.whl"),
        # no scheme: what a channel typed without one looks like
        (f"user:{TOKEN}@mirror.example.org/chan", "mirror.example.org/chan"),
        (f"conda.anaconda.org/t/{TOKEN}/pytorch", "conda.anaconda.org/pytorch"),
        (f"127.0.0.1:8000/t/{TOKEN}/pytorch", "127.0.0.1:8000/pytorch"),
    ],
)  # fmt: skip
def test_every_form_of_credential_is_removed(url: str, expected: str) -> None:
    assert redact_url(url) == expected
    assert redact_text(f"see '{url}', then") == f"see '{expected}', then"
    assert "Zq7Xv" not in redact_text(url)
    assert has_credentials(url) and not has_credentials(expected)


@pytest.mark.parametrize(
    "text",
    [
        "python 3.11: pytorch 2.5.1 (pytorch) from file:///home/t/chan",
        "unsloth @ file:///wheels/unsloth-2024.12.12-py3-none-any.whl",
        "name@version and user@host are not credentials; a:b is not a URL",
        "sha256:" + "d" * 64,
        f"https://h.org/x.conda#{'b' * 64} https://h.org/y.conda#{'c' * 32}",
        "file:///srv/t/chan/linux-64/x.conda",
        "(https://conda.anaconda.org/pytorch), https://h.org/x.",
    ],
)
def test_text_without_credentials_is_unchanged(text: str) -> None:
    assert redact_text(text) == text
    assert not has_credentials(text)


def test_punctuation_after_a_url_is_kept() -> None:
    assert redact_text(f"(http://h:1/chan?token={TOKEN}).") == "(http://h:1/chan)."


def test_redact_obj_reaches_every_string() -> None:
    doc = {
        "channels": [f"https://u:{TOKEN}@h.org/c"],
        "nested": {"url": f"https://h.org/t/{TOKEN}/c", "n": 3, "ok": True, "none": None},
        f"https://h.org/?token={TOKEN}": ("a", f"x https://{TOKEN}@h.org y"),
    }
    out = redact_obj(doc)
    assert "Zq7Xv" not in repr(out)
    assert out["nested"]["n"] == 3 and out["nested"]["ok"] is True


def test_the_stream_redacts_whole_lines_and_what_is_flushed() -> None:
    import io

    raw = io.StringIO()
    stream = RedactingStream(raw)
    stream.write(f"==> solving (https://u:{TOKEN}")  # a URL written in pieces
    stream.write("@h.org/chan)\nnext ")
    assert raw.getvalue() == "==> solving (https://h.org/chan)\n"
    stream.write(f"from https://h.org/c?token={TOKEN} Proceed ([y]/n)? ")
    stream.flush()  # a prompt: what is pending goes out, redacted
    assert raw.getvalue().endswith("next from https://h.org/c Proceed ([y]/n)? ")
    assert "Zq7Xv" not in raw.getvalue()


def test_redacted_output_is_put_back_and_not_nested() -> None:
    import sys

    before = sys.stdout
    with redacted_output():
        inner = sys.stdout
        assert isinstance(inner, RedactingStream)
        with redacted_output():
            assert sys.stdout is inner
    assert sys.stdout is before

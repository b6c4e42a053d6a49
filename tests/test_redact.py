from __future__ import annotations

import pytest

from conda_unsloth.redact import has_credentials, redact_text, redact_url


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

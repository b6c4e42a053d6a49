"""The conda-side installer (conda's explicit install); runs only where conda is installed."""

from __future__ import annotations

from conda_unsloth.conda_install import explicit_lines
from conda_unsloth.solvers.base import Record


def test_explicit_lines_carry_sha256_else_md5() -> None:
    recs = [
        Record(
            "a",
            "1",
            "0",
            0,
            "https://c/ch",
            "linux-64",
            "https://c/ch/linux-64/a-1-0.conda",
            "a-1-0.conda",
            md5="0" * 32,
            sha256="1" * 64,
        ),
        Record(
            "b",
            "1",
            "0",
            0,
            "https://c/ch",
            "noarch",
            "https://c/ch/noarch/b-1-0.tar.bz2",
            "b-1-0.tar.bz2",
            md5="2" * 32,
        ),
    ]
    assert explicit_lines(recs) == [
        "@EXPLICIT",
        "https://c/ch/linux-64/a-1-0.conda#" + "1" * 64,
        "https://c/ch/noarch/b-1-0.tar.bz2#" + "2" * 32,
    ]

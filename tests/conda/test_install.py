"""The conda-side installer (conda's explicit install); runs only where conda is installed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conda_unsloth.conda.install import explicit_lines
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


@pytest.mark.conda
def test_install_explicit_with_real_conda(tmp_path: Path) -> None:
    from conda_unsloth.conda.install import install_explicit
    from conda_unsloth.exports.lockread import read_lock
    from tests.channels import Pkg, write_channel

    chan = write_channel(tmp_path / "chan", [Pkg("mkl", "2023.1.0", "h213fc3f_46344")])
    rd = json.loads((chan / "linux-64" / "repodata.json").read_text())
    fn, rec = next(iter(rd["packages"].items()))
    lock = tmp_path / "lock.txt"
    lock.write_text(f"@EXPLICIT\n{(chan / 'linux-64' / fn).as_uri()}#{rec['sha256']}\n")
    solved = read_lock(lock, "linux-64")
    install_explicit(list(solved.records), tmp_path / "env")
    assert (tmp_path / "env" / "conda-meta" / "mkl-2023.1.0-h213fc3f_46344.json").is_file()

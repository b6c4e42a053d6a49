"""Environment names and prefixes a create must refuse before it does anything: conda's root
env names, control characters (a newline would end a comment line in every file we write), and
paths that name no environment directory. One-line error, exit 2, nothing written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Result, tree


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["-n", "base"], "-n base is reserved"),
        (["-n", "root"], "-n root is reserved"),
        (["-n", "un\nsloth"], "-n 'un\\nsloth' contains"),
        (["-n", "un\tsloth"], "-n 'un\\tsloth' contains"),
        (["-p", "/"], "prefix / names no directory of its own"),
        (["-p", ""], "-p '' is empty"),
        (["-p", "{tmp}/a\nb"], "contains a control character"),
        (["-p", "{tmp}/missing/.."], "names no directory of its own"),
    ],
    ids=["base", "root", "name-newline", "name-tab", "root-dir", "empty", "newline", "dotdot"],
)
def test_create_refuses_before_anything_is_written(
    cli: Callable[..., Result], tmp_path: Path, args: list[str], says: str
) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    before = tree(tmp_path)
    r = cli("create", *argv, "--cuda", "12.1", "--yes")
    assert r.code == 2
    lines = r.err.splitlines()
    assert says in lines[0] and "Traceback" not in r.err
    assert len([ln for ln in lines if not ln.startswith("hint: ")]) == 1
    assert tree(tmp_path) == before

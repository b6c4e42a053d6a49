"""What a user sees in a real terminal: the CLI run under a pseudo-terminal (util-linux
`script`) at 80 columns. No line is wider than the terminal, rattler's progress line is ended
before our next line, and the long steps report progress."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.envbuild import create_args

pytestmark = pytest.mark.skipif(shutil.which("script") is None, reason="needs util-linux script")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_in_a_terminal(cmd: list[str], tmp_path: Path, columns: int = 80) -> list[str]:
    """The lines a terminal of ``columns`` columns shows (escape sequences removed; a line that
    is redrawn with carriage returns counts once per drawing)."""
    import shlex

    log = tmp_path / "typescript"
    shell = f"stty cols {columns} rows 50; {shlex.join(cmd)}"
    proc = subprocess.run(
        ["script", "-qec", shell, str(log)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=300,
        check=False,
    )
    text = ANSI.sub("", log.read_bytes().decode("utf-8", "replace"))
    assert proc.returncode == 0, text
    lines = []
    for line in text.replace("\r\n", "\n").split("\n"):
        lines += [part.rstrip() for part in line.split("\r")]
    return [ln for ln in lines if ln and not ln.startswith("Script ")]


def test_create_fits_80_columns_and_reports_progress(
    demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    exe = str(Path(sys.executable).parent / "conda-unsloth")  # the one installed with this python
    argv = create_args(demo, tmp_path / "env")
    lines = run_in_a_terminal([exe, *argv], tmp_path)
    wide = [ln for ln in lines if len(ln) > 80]
    assert wide == []
    progress = [ln for ln in lines if ln.startswith("==> ")]
    assert any("installing 9 conda packages" in ln for ln in progress)
    pip = [ln for ln in progress if "pip" in ln]
    assert len(pip) >= 2, progress  # the pip stage says what it is doing, step by step
    # rattler's progress line is ended before the next one starts
    assert not any("installing packages" in ln and "==>" in ln for ln in lines)


def test_env_table_fits_80_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    exe = str(Path(sys.executable).parent / "conda-unsloth")
    lines = run_in_a_terminal(
        [exe, "env", "--cuda", "12.1", "-o", str(tmp_path / "e.yml")], tmp_path
    )
    assert [ln for ln in lines if len(ln) > 80] == []
    assert any(ln.startswith("mkl ") for ln in lines), "the plan shows every pin it writes"
    assert any(ln.startswith("pytorch-mutex ") for ln in lines)

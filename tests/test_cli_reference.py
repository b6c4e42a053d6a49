"""docs/cli.md is generated from the parser and must match today's --help of every verb."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_cli_reference_matches_the_parser() -> None:
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "cli_reference.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    for verb in ("create", "env", "solve", "verify", "export", "doctor", "module"):
        assert f"## `{verb}`" in text
        assert f"usage: conda-unsloth {verb}" in text

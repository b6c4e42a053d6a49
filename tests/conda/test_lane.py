"""The conda lane's rules, checked everywhere: a test that needs conda says so with the `conda`
marker (never by skipping itself), so that `pytest -m conda` in the lane collects all of them
and anything that skips there is a failure of the lane (.ci/run checks the report)."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
SELF_SKIP = re.compile(
    r"""importorskip\(\s*["']conda(?:["']|\.)|skip\w*\([^)]*["']needs a real conda"""
)


def test_no_test_skips_itself_for_want_of_conda() -> None:
    offenders = [
        f"{p.relative_to(TESTS)}:{n}"
        for p in sorted(TESTS.rglob("*.py"))
        if p.name != "conftest.py"
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if SELF_SKIP.search(line)
    ]
    assert offenders == [], "mark them @pytest.mark.conda instead"


def test_conda_lane_modules_are_marked() -> None:
    """Every module that runs the real conda (tests/conda/realconda.py) is marked conda."""
    unmarked = [
        p.name
        for p in sorted((TESTS / "conda").glob("test_*.py"))
        if "realconda" in p.read_text()
        and "pytestmark = pytest.mark.conda" not in p.read_text()
        and "@pytest.mark.conda" not in p.read_text()
    ]
    assert unmarked == []

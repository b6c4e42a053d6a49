"""bench/bench_env.py and bench/bench_solve.py run for real, once each (no timing is asserted:
targets live in the benchmarks). They must finish, write their JSON and, for the spec
comparison, show what post-solve validation says of the classic README spec."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.skipif(
    shutil.which("conda-unsloth", path=str(Path(sys.executable).parent)) is None,
    reason="bench_env times the installed console script: pip install -e .",
)
def test_bench_env_times_the_console_script_and_the_floor() -> None:
    r = _run("bench_env.py", "--runs", "1")
    assert r.returncode == 0, r.stderr
    doc = json.loads((ROOT / "bench" / "results" / "env.json").read_text())
    measures = {row["measure"]: row for row in doc["rows"]}
    env = measures["conda-unsloth env --cuda 12.1 (s)"]
    base = measures["python -c pass (s)"]
    assert env["n"] == base["n"] == 1
    ratio = measures["ratio env / python -c pass"]["median"]
    assert ratio == pytest.approx(env["median"] / base["median"])
    assert any(m.startswith("floor: ") for m in measures)


def test_bench_solve_compares_the_classic_spec_on_the_same_data() -> None:
    r = _run("bench_solve.py", "--repeat", "1", "--json-only")
    assert r.returncode in (0, 1), r.stderr  # 1: a ratio above 1.1, which one sample may give
    doc = json.loads(r.stdout)
    assert {row["case"] for row in doc["results"]} >= {"test channels, pytorch profile 12.1"}
    rows = {
        row["spec"]: row
        for row in doc["spec_comparison"]
        if row["case"] == "test channels + cudatoolkit, 12.1"
    }
    pinned, classic = rows["knowledge-pinned"], rows["classic README"]
    assert pinned["verdict"] == "valid"
    assert "_cuda12.1_" in pinned["pytorch"] and pinned["cudatoolkit"] == "-"
    # the test channels' CPU build is the more attractive one: the unpinned spec takes it,
    # and validation names it
    assert "_cpu_" in classic["pytorch"] and classic["cudatoolkit"].startswith("11.7.0")
    assert any("is a CPU build" in p for p in classic["problems"])
    assert any(p.startswith("F10 ") for p in classic["problems"])  # mkl >= 2024.1: not pinned

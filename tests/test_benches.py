"""The benchmarks run for real, once each (no timing is asserted: targets live in the
benchmarks). They must finish, write their JSON with the machine and versions, measure the raw
tool beside us in the same run (the ratios are computed from the rows they sit beside), and
bench/report.py must turn those files into the README table; for the spec comparison, they show
what post-solve validation says of the classic README spec."""

from __future__ import annotations

import json
import os
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
    assert r.returncode in (0, 1), r.stderr  # 1: a target missed, which one sample may give
    doc = json.loads((ROOT / "bench" / "results" / "env.json").read_text())
    measures = {row["measure"]: row for row in doc["rows"]}
    env = measures["conda-unsloth env --cuda 12.1 (s)"]
    base = measures["python -c pass (s)"]
    assert env["n"] == base["n"] == 1 and env["target"] == 0.15
    ratio = measures["ratio env / python -c pass"]["median"]
    assert ratio == pytest.approx(env["median"] / base["median"])
    cpu = measures["ratio env / python -c pass, CPU"]["median"]
    assert cpu == pytest.approx(env["cpu_median"] / base["cpu_median"])
    assert env["cpu_median"] > 0 and any(m.startswith("floor: ") for m in measures)
    assert doc["machine"]["cpu_count"] and "py-rattler" in doc["machine"]["versions"]


def test_bench_solve_compares_the_classic_spec_on_the_same_data() -> None:
    r = _run("bench_solve.py", "--repeat", "1", "--cold-repeat", "1", "--json-only")
    assert r.returncode in (0, 1), r.stderr  # 1: a ratio above 1.1, which one sample may give
    doc = json.loads(r.stdout)
    assert {row["case"] for row in doc["results"]} >= {"test channels, pytorch profile 12.1"}
    # cold whole-process rows at every channel size, ours beside the raw rattler.solve process
    cold = {row["records"]: row for row in doc["cold"]}
    assert set(cold) >= {37, 370, 3_700, 37_000}
    for row in cold.values():
        assert row["packages"] > 10 and row["raw_ms"] > 0 and row["ours_cpu_ms"] > 0
        assert row["ratio"] == pytest.approx(row["ours_ms"] / row["raw_ms"], rel=0.01)
        # the import floor: a process importing what the solve imported, doing nothing else
        assert row["floor_cpu_ms"] > 0 and row["floor_modules"] > 50
        assert row["floor_ratio"] == pytest.approx(row["floor_ms"] / row["raw_ms"], rel=0.01)
        # ... which splits ours - raw into our extra imports and all else
        assert row["raw_floor_cpu_ms"] > 0
        split = row["imports_extra_cpu_ms"] + row["work_extra_cpu_ms"]
        assert split == pytest.approx(row["ours_cpu_ms"] - row["raw_cpu_ms"], abs=0.3)
    assert doc["machine"]["versions"]["py-rattler"]
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


@pytest.mark.slow
def test_bench_create_measures_both_installers_beside_the_raw_tools(tmp_path: Path) -> None:
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "bench_create.py"),
            "--runs",
            "1",
            "--pip-runs",
            "1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env={**os.environ, "BENCH_RESULTS": str(tmp_path)},
    )
    assert r.returncode in (0, 1), r.stderr  # 1: a goal missed
    doc = json.loads((tmp_path / "create.json").read_text())
    rows = {(row["mode"], row["row"]): row for row in doc["rows"]}
    for mode in ("PYTHONDONTWRITEBYTECODE=1", "PYTHONDONTWRITEBYTECODE unset"):
        uv, pip = rows[(mode, "create (uv)")], rows[(mode, "create (pip)")]
        fresh = rows[(mode, "raw uv (fresh venv)")]
        assert uv["pip_vs_raw_uv"] == pytest.approx(uv["pip_s"] / fresh["wall_s"], rel=0.02)
        # peak memory of the process tree, from outside: the create plus its children
        assert uv["peak_tree_mb"] >= uv["reported_peak_mb"] > 10
        assert pip["pip_s"] > 0 and uv["solve_s"] > 0
    assert {g["goal"] for g in doc["goals"]} >= {"pip stage (uv) <= 0.3 s"}
    table = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "report.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "the pip stage on uv" in table and "raw rattler solve + install" in table

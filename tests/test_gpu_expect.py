"""scripts/gpu_expect.py against the reports of a real H100 run (bench/recorded/): the run is
judged as expected, and a report that misses an expectation is caught (exit code 1)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_expect.py"
RECORDED = ROOT / "bench" / "recorded" / "gpu-h100-2026-11-28"


def _outdir(tmp_path: Path, run: str = "run2") -> Path:
    """The --out folder of gpu-check.sh --all, rebuilt from a recorded run."""
    out = tmp_path / "out"
    out.mkdir()
    for name in ("broken", "nogpu", "fixed", "bench"):
        shutil.copy(RECORDED / f"{run}-{name}.json", out / f"{name}.json")
    shutil.copy(RECORDED / "run1-broken-verb-output.txt", out / "broken.txt")
    codes = {
        n: json.loads((out / f"{n}.json").read_text())["exit_code"]
        for n in ("broken", "nogpu", "fixed")
    }
    (out / "exit-codes.txt").write_text("".join(f"{n} {c}\n" for n, c in codes.items()))
    return out


def _run(out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--dir", str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.mark.parametrize("run", ["run1", "run2"])
def test_recorded_h100_runs_are_as_expected(tmp_path: Path, run: str) -> None:
    proc = _run(_outdir(tmp_path, run))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.rstrip().endswith("ALL AS EXPECTED")
    assert "ratio" in proc.stdout


def test_a_wrong_remedy_is_caught(tmp_path: Path) -> None:
    out = _outdir(tmp_path)
    doc = json.loads((out / "broken.json").read_text())
    for c in doc["checks"]:
        if c["id"] == "xformers.extension":
            c["remedy"] = "F2"
    (out / "broken.json").write_text(json.dumps(doc))
    proc = _run(out)
    assert proc.returncode == 1
    assert "FAIL broken: xformers.extension fails with F17: fail F2" in proc.stdout
    assert proc.stdout.rstrip().endswith("1 EXPECTATION(S) NOT MET")


def test_a_zero_exit_without_a_gpu_is_caught(tmp_path: Path) -> None:
    out = _outdir(tmp_path)
    (out / "exit-codes.txt").write_text("broken 1\nnogpu 0\nfixed 0\n")
    proc = _run(out)
    assert proc.returncode == 1
    assert "FAIL nogpu: exit code 1: 0" in proc.stdout


def test_missing_exit_codes_is_one_line_exit_2(tmp_path: Path) -> None:
    proc = _run(tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("gpu_expect: cannot read")
    assert "Traceback" not in proc.stderr

"""bench/bench_verify.py and scripts/gpu-check.sh run for real against the CPU torch venv:
`--no-isolate` honours PYTHONPATH (gpu-check.sh --no-venv), and a probe run that writes no
report stops the benchmark with a one-line error instead of a traceback or a stale report."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.verify.conftest import Env

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "bench_verify.py"
GPU_CHECK = ROOT / "scripts" / "gpu-check.sh"


def _standin_unsloth(where: Path) -> Path:
    (where / "unsloth").mkdir(parents=True)
    (where / "unsloth" / "__init__.py").write_text("__version__ = '0.0.1'\nDEVICE_TYPE = 'cuda'\n")
    return where


def _bench(
    env: Env, tmp_path: Path, *args: str, pythonpath: Path | None = None
) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path / "bench.json"
    environ = dict(os.environ)
    if pythonpath is not None:
        environ["PYTHONPATH"] = str(pythonpath)
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--python",
            str(env.python),
            "--repeat",
            "1",
            "--json-out",
            str(out),
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
        env=environ,
        timeout=300,
    )
    return proc, out


@pytest.mark.parametrize(
    ("isolate_args", "status", "baseline"),
    [(["--no-isolate"], "pass", "import unsloth"), ([], "fail", "import torch")],
    ids=["no-isolate", "isolated"],
)
def test_no_isolate_honours_pythonpath_stand_in_unsloth(
    overlay_env: Env, tmp_path: Path, isolate_args: list[str], status: str, baseline: str
) -> None:
    extra = _standin_unsloth(tmp_path / "pp")
    proc, out = _bench(
        overlay_env, tmp_path, "--checks", "unsloth", *isolate_args, pythonpath=extra
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert doc["checks"]["unsloth.import"]["status"] == status
    assert doc["baseline"]["command"] == baseline
    assert doc["isolated"] is (not isolate_args)


def test_failed_probe_run_stops_the_bench(overlay_env: Env, tmp_path: Path) -> None:
    proc, out = _bench(overlay_env, tmp_path, "--checks", "bogus")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith(
        "bench_verify: the probe failed (exit code 2, no report): "
    )
    assert not out.exists()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_check_no_venv_bench_runs_without_isolation(overlay_env: Env, tmp_path: Path) -> None:
    outdir = tmp_path / "out"
    proc = subprocess.run(
        [
            "bash",
            str(GPU_CHECK),
            "--no-venv",
            "--bench",
            "--python",
            str(overlay_env.python),
            "--checks",
            "torch.import",
            "--out",
            str(outdir),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    bench = json.loads((outdir / "bench.json").read_text())
    assert bench["isolated"] is False
    assert bench["checks"]["torch.import"]["status"] == "pass"
    report = json.loads((outdir / "verify-report.json").read_text())
    assert [c["id"] for c in report["checks"]] == ["torch.import"]

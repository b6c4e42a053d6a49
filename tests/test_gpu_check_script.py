"""scripts/gpu-check.sh refuses bad input with one line and exit code 2, before it installs or
runs anything (the GPU runs themselves are recorded in bench/recorded/)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu-check.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), "--python", sys.executable, "--out", str(tmp_path / "out"), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)},
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus"], "gpu-check: unknown argument: --bogus (see --help)"),
        (["--repeat", "x"], "gpu-check: --repeat x is not a positive integer"),
        (
            ["--wheels", "/nonexistent-dir"],
            "gpu-check: --wheels /nonexistent-dir is not a directory",
        ),
        (
            ["--all", "--no-venv"],
            "gpu-check: --all needs the venv (the verb runs -p VENV); drop --no-venv",
        ),
        (["--all", "--checks", "torch"], "gpu-check: --all runs every check; drop --checks"),
    ],
    ids=["unknown", "repeat", "wheels-dir", "all-no-venv", "all-checks"],
)
def test_bad_arguments(tmp_path: Path, args: list[str], message: str) -> None:
    proc = _run(tmp_path, *args)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [message]


def test_all_without_the_cuda_runtime_wheel_is_refused(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "xformers-0.0.35-py39-none-manylinux_2_28_x86_64.whl").write_bytes(b"")
    proc = _run(tmp_path, "--all", "--wheels", str(wheels))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "gpu-check: --all needs an nvidia_cuda_runtime_cu12 wheel among the wheels "
        "(the fix scenario)"
    )
    assert not list(tmp_path.glob("gpu-check.*")), "its work folder is removed"


def test_help_prints_the_whole_header(tmp_path: Path) -> None:
    proc = _run(tmp_path, "--help")
    assert proc.returncode == 0
    assert proc.stdout.splitlines()[-1].startswith("# nvidia-cuda-runtime-cu12, ruamel.yaml")
    assert "set -uo" not in proc.stdout

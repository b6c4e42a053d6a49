"""The Slurm lane: tests marked ``slurm`` submit the job scripts conda-unsloth writes to a live
scheduler, the one-node cluster of ``scripts/slurm-local.sh`` (partitions v100, a100, h100 and
the default gpu; nodes gpu-v100, gpu-a100, gpu-h100, each with fake GRES GPUs). CI's Slurm lane
(.ci/run) installs and starts it, exports SLURM_CONF, runs ``pytest -m slurm`` and stops it.
Elsewhere these tests skip, naming the lane; in the lane (CONDA_UNSLOTH_LANE=slurm) a cluster
that does not answer stops the run instead."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

SLURM_LANE = "slurm"
LANE_ENV = "CONDA_UNSLOTH_LANE"
PARTITIONS = ("v100", "a100", "h100")
SLURM_SKIP = (
    "needs a live Slurm: runs in the Slurm lane (.ci/run with CI_LANES=slurm: "
    "scripts/slurm-local.sh start, SLURM_CONF exported, `pytest -m slurm`)"
)


def slurm_problem() -> str | None:
    """Why the local cluster cannot take jobs, or None when it can."""
    if shutil.which("sbatch") is None or shutil.which("scontrol") is None:
        return "sbatch/scontrol not installed (scripts/slurm-local.sh install)"
    if not os.environ.get("SLURM_CONF"):
        return 'SLURM_CONF is not set (eval "$(scripts/slurm-local.sh start)")'
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%P %a"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"sinfo failed: {exc}"
    if out.returncode != 0:
        return f"sinfo failed: {out.stderr.strip()[:200]}"
    up = {line.split()[0].rstrip("*") for line in out.stdout.splitlines() if line.endswith(" up")}
    missing = [p for p in PARTITIONS if p not in up]
    if missing:
        return f"partitions {', '.join(missing)} are not up (scripts/slurm-local.sh's layout)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    marked = [item for item in items if item.get_closest_marker("slurm") is not None]
    if not marked:
        return
    problem = slurm_problem()
    if problem is None:
        return
    if os.environ.get(LANE_ENV) == SLURM_LANE:
        raise pytest.UsageError(f"{LANE_ENV}={SLURM_LANE} but the cluster cannot run: {problem}")
    for item in marked:
        item.add_marker(pytest.mark.skip(reason=f"{SLURM_SKIP}; here: {problem}"))


def queued() -> set[str]:
    out = subprocess.run(
        ["squeue", "-h", "-r", "-o", "%A"], capture_output=True, text=True, timeout=30, check=False
    )
    return set(out.stdout.split())


@pytest.fixture
def slurm_jobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A test that submits jobs: run from ``tmp_path`` (the jobs' slurm-*.out land there), with
    a private package cache; every job it left queued or running is cancelled afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CONDA_UNSLOTH_CACHE", str(tmp_path / "cache"))
    before = queued()
    yield tmp_path
    left = sorted(queued() - before)
    if left:
        subprocess.run(["scancel", *left], capture_output=True, timeout=30, check=False)

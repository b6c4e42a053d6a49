"""The job scripts of `verify --sbatch` on a live Slurm (the Slurm lane, see conftest.py): a
single verify job, job arrays with one task per partition / node feature / GRES type (submitted
by the commands their header gives, and by `--submit --wait`), their reports merged into the
marker's fleet, and `module --require-verified` refused, then publishing.

This host has no GPU. The real probe in a job therefore fails gpu.visible (F18: no driver,
although Slurm set CUDA_VISIBLE_DEVICES) and the task fails: that is the verdict a partition
gets when its job finds no GPU. Passing reports come from ``install_fake_gpu`` (the env's
python answers the probe as a working env on that node's GPU would: ``_fake_gpu``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conda_unsloth import marker
from tests import envbuild
from tests.conftest import Result
from tests.exports.moduletools import CLEAN_PATH, lmod_cmd, tcl_cmd
from tests.hpc.fake_gpu_node import DRIVER, GPUS, install_fake_gpu

pytestmark = pytest.mark.slurm
Cli = Callable[..., Result]
WAIT_S = 120


def make_env(cli: Cli, demo: Path, prefix: Path) -> Path:
    r = cli(*envbuild.create_args(demo, prefix), "-q")
    assert r.code == 0, r.err
    return prefix


def cu(*argv: str, timeout: float = WAIT_S) -> subprocess.CompletedProcess[str]:
    """The standalone CLI in a process of its own, as an admin runs it (bounded)."""
    return subprocess.run(
        [sys.executable, "-m", "conda_unsloth", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "CONDA_UNSLOTH_NVML": "0", "CONDA_UNSLOTH_NVIDIA_SMI": ""},
    )


def wait_gone(job: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["squeue", "-h", "-j", job], capture_output=True, text=True, timeout=30, check=False
        )
        if out.returncode == 0 and not out.stdout.strip():
            return
        time.sleep(0.5)
    raise AssertionError(f"job {job} still queued after {timeout} s")


def report_doc(path: Path) -> dict[str, Any]:
    doc = json.loads(path.read_text())
    assert isinstance(doc, dict)
    return doc


def check_of(doc: dict[str, Any], check_id: str) -> dict[str, Any]:
    return next(c for c in doc["checks"] if c["id"] == check_id)


# ----------------------------------------------------------------------------- single job


def test_single_job_without_a_gpu_fails_and_the_marker_says_why(
    cli: Cli, demo: Path, slurm_jobs: Path
) -> None:
    env = make_env(cli, demo, slurm_jobs / "env")
    script = slurm_jobs / "verify.sbatch"
    r = cli("verify", "-p", str(env), "--sbatch", str(script), "--partition", "a100")
    assert r.code == 0, r.err
    # the command the script's header and the CLI name
    assert f"next: sbatch {script}" in r.out
    proc = subprocess.run(
        ["sbatch", "--wait", str(script)], capture_output=True, text=True, timeout=WAIT_S
    )
    assert proc.returncode == 1, proc.stderr  # the probe failed: no GPU
    job = re.fullmatch(r"Submitted batch job (\d+)", proc.stdout.strip())
    assert job, proc.stdout
    out = (slurm_jobs / f"slurm-{job.group(1)}.out").read_text()
    report = env / "conda-meta" / "conda-unsloth-verify"
    assert f"conda-unsloth: report written to {report} (probe exit code 1)" in out
    doc = report_doc(report)
    assert doc["slurm"]["partition"] == "a100"
    assert doc["slurm"]["node"] == "gpu-a100"
    assert doc["slurm"]["job_id"] == job.group(1)
    assert doc["slurm"]["cuda_visible_devices"] == "0"  # Slurm gave a (fake) GPU
    visible = check_of(doc, "gpu.visible")
    assert visible["status"] == "fail" and visible["remedy"] == "F18"
    assert "CUDA_VISIBLE_DEVICES='0'" in visible["detail"]

    r = cli("verify", "-p", str(env), "--from-report", str(report))
    assert r.code == 1
    assert "a100: fail (node gpu-a100" in r.out
    mark = marker.read(env) or {}
    assert mark["verification"]["verdict"] == "fail"
    rec = mark["fleet"]["a100"]
    assert (rec["verdict"], rec["kind"], rec["node"], rec["gpu"]) == (
        "fail",
        "partition",
        "gpu-a100",
        None,
    )
    assert rec["reason"].startswith("no usable GPU (F18): no GPU usable: no NVIDIA driver")
    assert rec["checks"]["gpu.visible"] == "fail"
    assert "gpu.visible" in rec["failed"]


# ----------------------------------------------------------------------------- arrays


def header_commands(script: Path) -> list[str]:
    """The submission commands the script's header gives, as lines of bash."""
    lines = script.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "J=$(sbatch --parsable --hold" in line)
    out = []
    for line in lines[start:]:
        if not line.startswith("#   "):
            break
        out.append(line[4:].replace("THIS_FILE", str(script)))
    return out


def test_two_partition_array_by_the_header_commands_then_from_report_dir(
    cli: Cli, demo: Path, slurm_jobs: Path
) -> None:
    env = make_env(cli, demo, slurm_jobs / "env")
    script = slurm_jobs / "fleet.sbatch"
    r = cli("verify", "-p", str(env), "--sbatch", str(script), "--partitions", "v100,a100")
    assert r.code == 0, r.err
    text = script.read_text()
    assert "#SBATCH --array=0-1\n#SBATCH --partition=v100\n" in text
    commands = header_commands(script)
    assert commands == [
        f"J=$(sbatch --parsable --hold {script}); J=${{J%%;*}}",
        "scontrol update JobId=${J}_1 Partition=a100",
        "scontrol release ${J}",
    ]
    run = subprocess.run(
        ["bash", "-euc", "\n".join([*commands, 'echo "$J"'])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    job = run.stdout.split()[-1]
    wait_gone(job)
    reports = {p: env / "conda-meta" / f"conda-unsloth-verify.{p}" for p in ("v100", "a100")}
    for task, (part, path) in enumerate(reports.items()):
        doc = report_doc(path)
        assert doc["slurm"]["partition"] == part
        assert doc["slurm"]["node"] == f"gpu-{part}"
        assert (doc["slurm"]["array_job_id"], doc["slurm"]["array_task_id"]) == (job, str(task))
        assert (doc["slurm"]["target_kind"], doc["slurm"]["target"]) == ("partition", part)
    # a directory: every conda-unsloth-verify* report in it
    r = cli("verify", "-p", str(env), "--from-report", str(env / "conda-meta"))
    assert r.code == 1
    fleet = (marker.read(env) or {})["fleet"]
    assert sorted(fleet) == ["a100", "v100"]
    assert {k: (v["array_job"], v["node"]) for k, v in fleet.items()} == {
        "v100": (job, "gpu-v100"),
        "a100": (job, "gpu-a100"),
    }


def test_plain_sbatch_of_an_array_runs_every_task_in_the_first_partition_and_refuses(
    cli: Cli, demo: Path, slurm_jobs: Path
) -> None:
    env = make_env(cli, demo, slurm_jobs / "env")
    script = slurm_jobs / "fleet.sbatch"
    assert (
        cli("verify", "-p", str(env), "--sbatch", str(script), "--partitions", "v100,a100").code
        == 0
    )
    proc = subprocess.run(
        ["sbatch", "--wait", str(script)], capture_output=True, text=True, timeout=WAIT_S
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    job = proc.stdout.split()[-1]
    out = (slurm_jobs / f"slurm-{job}_1.out").read_text()
    assert "task 1 is for partition a100 but runs in partition v100" in out
    assert not (env / "conda-meta" / "conda-unsloth-verify.a100").exists()


@pytest.mark.parametrize(
    ("flag", "names", "kind"),
    [("--constraints", "v100,h100", "constraint"), ("--gpu-types", "a100,h100", "gpu-type")],
    ids=["constraints", "gpu-types"],
)
def test_submit_wait_sends_each_task_to_its_gpu_type_fake_gpu(
    cli: Cli, demo: Path, slurm_jobs: Path, flag: str, names: str, kind: str
) -> None:
    env = make_env(cli, demo, slurm_jobs / "env")
    install_fake_gpu(env)
    script = slurm_jobs / "fleet.sbatch"
    r = cu("verify", "-p", str(env), "--sbatch", str(script), flag, names, "--submit", "--wait")
    assert r.returncode == 0, r.stdout + r.stderr
    fleet = (marker.read(env) or {})["fleet"]
    assert sorted(fleet) == sorted(names.split(","))
    for name in names.split(","):
        rec = fleet[name]
        gpu, cap = GPUS[name]
        assert (rec["kind"], rec["verdict"], rec["node"], rec["gpu"]) == (
            kind,
            "pass",
            f"gpu-{name}",
            gpu,
        )
        assert (rec["arch"], rec["driver"]) == (f"sm_{cap.replace('.', '')}", DRIVER)
        assert (
            f"{name}: pass on {gpu} (sm_{cap.replace('.', '')}, driver {DRIVER}, node gpu-{name}"
            in r.stdout
        )
    if kind == "gpu-type":
        assert "#SBATCH --gres" not in script.read_text()  # each task gets its own
        assert "ran: scontrol update JobId=" in r.stderr and "_0 Gres=gpu:a100:1" in r.stderr


# ----------------------------------------------------------------------------- publish


def module_show(tool: str, tree: Path, verb: str, name: str, home: Path) -> str:
    cmd = [lmod_cmd(), "bash"] if tool == "lmod" else ["tclsh", tcl_cmd(), "bash"]
    proc = subprocess.run(
        [*cmd, verb, name],
        env={"PATH": CLEAN_PATH, "HOME": str(home), "MODULEPATH": str(tree)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout + proc.stderr


def test_require_verified_refuses_then_publishes_after_a_passing_fleet_real_tools(
    cli: Cli, demo: Path, slurm_jobs: Path
) -> None:
    env = make_env(cli, demo, slurm_jobs / "env")
    tree = slurm_jobs / "modulefiles"
    tree.mkdir()
    script = slurm_jobs / "fleet.sbatch"
    publish = ("module", "-p", str(env), "unsloth/2024.12", "-o", str(tree))

    def require(fmt: str) -> Result:
        return cli(*publish, "--format", fmt, "--require-verified", "v100,a100")

    # 1. never verified: refused, nothing written, the command to run named
    r = require("lmod")
    assert r.code == 1
    first = r.err.splitlines()[0]
    assert first == (
        "conda-unsloth: error: not publishing unsloth/2024.12: not verified on v100 (no report); "
        f"a100 (no report); run: conda-unsloth verify -p {env} --sbatch verify.sbatch "
        "--partitions v100,a100 --submit --wait"
    )
    assert list(tree.iterdir()) == []

    # 2. the fleet ran on nodes without a GPU: failed, refused with the reason
    r2 = cu("verify", "-p", str(env), "--sbatch", str(script), "--partitions", "v100,a100",
            "--submit", "--wait")  # fmt: skip
    assert r2.returncode == 1, r2.stderr
    r = require("tcl")
    assert r.code == 1
    assert "not verified on v100 (fail: no usable GPU (F18): no GPU usable" in r.err
    assert list(tree.iterdir()) == []

    # 3. the same fleet on (stand-in) GPUs: published, with the GPUs in whatis and help
    install_fake_gpu(env)
    r3 = cu("verify", "-p", str(env), "--sbatch", str(script), "--partitions", "v100,a100",
            "--submit", "--wait")  # fmt: skip
    assert r3.returncode == 0, r3.stdout + r3.stderr
    for fmt, tool in (("lmod", "lmod"), ("tcl", "tcl")):
        sub = tree / fmt
        sub.mkdir()
        r = cli(*publish[:-1], str(sub), "--format", fmt, "--require-verified", "v100,a100")
        assert r.code == 0, r.err
        assert r.out.startswith(f"wrote {sub}/unsloth/2024.12")
        whatis = module_show(tool, sub, "whatis", "unsloth/2024.12", slurm_jobs)
        assert (
            "Verified on: a100 (NVIDIA A100-SXM4-80GB, sm_80), v100 (Tesla V100-SXM2-32GB, sm_70)"
            in whatis
        )
        helptext = module_show(tool, sub, "help", "unsloth/2024.12", slurm_jobs)
        for part, (gpu, cap) in (("v100", GPUS["v100"]), ("a100", GPUS["a100"])):
            line = next(ln for ln in helptext.splitlines() if ln.strip().startswith(f"{part}:"))
            assert (
                f"{part}: {gpu}, sm_{cap.replace('.', '')}, driver {DRIVER}, node gpu-{part}"
                in line
            )

    # 4. a partition it was not verified on is still refused
    r = cli(*publish, "--require-verified", "v100,h100", "--force")
    assert r.code == 1 and "not verified on h100 (no report)" in r.err

    # 5. the env changed after the verification: refused until verified again
    site = next((env / "lib").glob("python3.*/site-packages"))
    (site / "extra_pkg-1.0.dist-info").mkdir()
    (site / "extra_pkg-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: extra-pkg\nVersion: 1.0\n"
    )
    (site / "extra_pkg-1.0.dist-info" / "INSTALLER").write_text("pip\n")
    r = cli(*publish[:-1], str(tree / "lmod"), "--require-verified", "v100")
    assert r.code == 1
    assert "not verified on v100 (verified before the env changed" in r.err

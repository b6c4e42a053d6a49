"""`conda unsloth verify --sbatch`: the Slurm batch script. Its #SBATCH header is parsed the way
sbatch reads it, and the script itself is run for real with bash (no Slurm needed: the probe runs
on this CPU-only machine and writes the report where the job would)."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conda_unsloth import marker
from conda_unsloth.errors import UsageError
from conda_unsloth.exports import slurm
from conda_unsloth.verify import KERNEL, PROBE
from tests.conftest import Result
from tests.verify.conftest import Env, alive

Cli = Callable[..., Result]

# Long options of sbatch(1) this script may use (subset of the man page, written by hand).
SBATCH_MAN = {
    "account",
    "cpus-per-task",
    "gres",
    "job-name",
    "mem",
    "nodes",
    "ntasks",
    "partition",
    "signal",
    "time",
}
LINE = re.compile(r"#SBATCH --([a-z][a-z-]*)=(\S+)")


def sbatch_header(text: str) -> list[tuple[str, str]]:
    """#SBATCH directives as sbatch reads them: up to the first command line."""
    out = []
    for line in text.splitlines()[1:]:
        if line.startswith("#SBATCH"):
            m = LINE.fullmatch(line)
            assert m, f"malformed #SBATCH line: {line!r}"
            out.append((m.group(1), m.group(2)))
        elif line.strip() and not line.startswith("#"):
            break
    return out


def test_script_header_is_well_formed(cli: Cli, overlay_env: Env, tmp_path: Path) -> None:
    out = tmp_path / "verify.sbatch"
    r = cli(
        "verify",
        "-p",
        str(overlay_env.prefix),
        "--sbatch",
        str(out),
        "--partition",
        "gpu",
        "--account",
        "proj-1",
        "--gres",
        "gpu:a100:1",
        "--time",
        "0-00:20:00",
    )
    assert r.code == 0, r.err
    text = out.read_text()
    assert text.startswith("#!/bin/bash\n")
    header = sbatch_header(text)
    assert dict(header) == {
        "job-name": "unsloth-verify",
        "partition": "gpu",
        "account": "proj-1",
        "gres": "gpu:a100:1",
        "time": "0-00:20:00",
        "nodes": "1",
        "ntasks": "1",
        "cpus-per-task": "4",
        "mem": "16G",
        "signal": "B:TERM@60",
    }
    assert {k for k, _ in header} <= SBATCH_MAN
    assert len(header) == len({k for k, _ in header})
    # no #SBATCH line after the first command (sbatch would ignore it)
    body = text.split("set -euo pipefail", 1)[1]
    assert "#SBATCH" not in body
    assert out.stat().st_mode & 0o111
    assert r.out.splitlines()[0] == f"wrote {out}"


def test_defaults(overlay_env: Env, tmp_path: Path) -> None:
    job = slurm.SlurmJob(prefix=overlay_env.prefix, report=tmp_path / "r.json")
    header = dict(sbatch_header(slurm.render(job, "print(1)\n", "x = 1\n")))
    assert header["gres"] == "gpu:1"
    assert header["time"] == "00:23:00"
    assert "partition" not in header
    assert "account" not in header


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("partition", "gpu large"),
        ("partition", "gpu'"),
        ("account", "a;b"),
        ("account", "$(id)"),
        ("gres", "gpu 1"),
        ("gres", "gpu:1\n#SBATCH --x=y"),
        ("time", "10 min"),
        ("time", "1:2:3:4"),
        ("job_name", "my job"),
        ("mem", "16 G"),
    ],
    ids=[
        "partition-space",
        "partition-quote",
        "account-semicolon",
        "account-subst",
        "gres-space",
        "gres-newline",
        "time-space",
        "time-shape",
        "name-space",
        "mem-space",
    ],
)
def test_values_with_spaces_or_shell_characters_are_refused(
    field: str, value: str, tmp_path: Path
) -> None:
    # the field is named at run time: mypy cannot match it to SlurmJob's typed fields
    setting: dict[str, Any] = {field: value}
    job = slurm.SlurmJob(prefix=tmp_path, report=tmp_path / "r.json", **setting)
    with pytest.raises(UsageError, match="is not a valid sbatch value"):
        slurm.render(job, "", "")


def test_script_carries_the_probe_verbatim(overlay_env: Env, tmp_path: Path) -> None:
    job = slurm.SlurmJob(prefix=overlay_env.prefix, report=tmp_path / "r.json")
    text = slurm.render(job, PROBE.read_text(), KERNEL.read_text())
    probe = text.split("<<'CONDA_UNSLOTH_PROBE_EOF'\n", 1)[1].split("\nCONDA_UNSLOTH_PROBE_EOF\n")[
        0
    ]
    kernel = text.split("<<'CONDA_UNSLOTH_KERNEL_EOF'\n", 1)[1].split(
        "\nCONDA_UNSLOTH_KERNEL_EOF\n"
    )[0]
    assert probe + "\n" == PROBE.read_text()
    assert kernel + "\n" == KERNEL.read_text()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_script_runs_and_writes_the_report(cli: Cli, overlay_env: Env, tmp_path: Path) -> None:
    script = tmp_path / "job.sh"
    report = tmp_path / "reports" / "verify.json"
    report.parent.mkdir()
    r = cli(
        "verify",
        "-p",
        str(overlay_env.prefix),
        "--sbatch",
        str(script),
        "--report",
        str(report),
        "--checks",
        "torch,seed",
        "--expect-cuda",
        "12.1",
        "--timeout",
        "120",
    )
    assert r.code == 0, r.err
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    proc = subprocess.run(
        ["bash", str(script)],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path), "SLURM_JOB_ID": "4242"},
    )
    assert proc.returncode == 1, proc.stderr  # CPU torch: the verification fails
    assert f"conda-unsloth: report written to {report} (probe exit code 1)" in proc.stdout
    doc = json.loads(report.read_text())
    assert doc["options"]["expect_cuda"] == "12.1"
    assert {c["id"]: c["status"] for c in doc["checks"]}["torch.cuda_build"] == "fail"
    assert not list(report.parent.glob("*.tmp"))
    assert not list(tmp_path.glob("conda-unsloth-verify.*"))  # job temp dir removed
    # then the verdict is recorded from the report
    r2 = cli("verify", "-p", str(overlay_env.prefix), "--from-report", str(report))
    assert r2.code == 1
    assert (marker.read(overlay_env.prefix) or {})["verification"]["verdict"] == "fail"


def test_refuses_to_replace_a_foreign_file(cli: Cli, overlay_env: Env, tmp_path: Path) -> None:
    out = tmp_path / "mine.sh"
    out.write_text("#!/bin/bash\necho mine\n")
    r = cli("verify", "-p", str(overlay_env.prefix), "--sbatch", str(out))
    assert r.code == 2
    assert "was not written by conda-unsloth" in r.err.splitlines()[0]
    assert out.read_text() == "#!/bin/bash\necho mine\n"
    r = cli("verify", "-p", str(overlay_env.prefix), "--sbatch", str(out), "--force")
    assert r.code == 0
    assert out.read_text().startswith("#!/bin/bash\n#SBATCH --job-name=unsloth-verify\n")
    # our own file is replaced without --force
    r = cli("verify", "-p", str(overlay_env.prefix), "--sbatch", str(out), "--time", "5")
    assert r.code == 0
    assert "#SBATCH --time=5\n" in out.read_text()


def test_missing_directory_is_refused(cli: Cli, overlay_env: Env, tmp_path: Path) -> None:
    out = tmp_path / "no" / "such" / "job.sh"
    r = cli("verify", "-p", str(overlay_env.prefix), "--sbatch", str(out))
    assert r.code == 2
    assert "does not exist" in r.err.splitlines()[0]
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize(
    ("checks", "timeout", "expected"),
    [
        ((), None, "00:23:00"),  # torch group: 9 checks x 120 s, + 5 min
        (("unsloth",), None, "00:10:00"),  # 300 s + 5 min
        ((), 30.0, "00:10:00"),  # 9 x 30 s + 5 min = 9.5 min, rounded up
        (("matmul.fp32",), 3600.0, "01:05:00"),
    ],
    ids=["all", "unsloth", "timeout-30", "long-timeout"],
)
def test_default_time_covers_the_per_check_timeouts(
    checks: tuple[str, ...], timeout: float | None, expected: str
) -> None:
    assert slurm.default_time(checks, timeout) == expected


def test_default_time_is_written(cli: Cli, overlay_env: Env, tmp_path: Path) -> None:
    out = tmp_path / "job.sh"
    r = cli("verify", "-p", str(overlay_env.prefix), "--sbatch", str(out), "--checks", "unsloth")
    assert r.code == 0, r.err
    assert dict(sbatch_header(out.read_text()))["time"] == "00:10:00"


def test_unwritable_report_directory_is_refused(
    cli: Cli, overlay_env: Env, tmp_path: Path
) -> None:
    out = tmp_path / "job.sh"
    report = tmp_path / "no-such-dir" / "r.json"
    r = cli("verify", "-p", str(overlay_env.prefix), "--sbatch", str(out), "--report", str(report))
    assert r.code == 2
    assert "Traceback" not in r.err
    assert r.err.splitlines()[0] == (
        f"conda-unsloth: error: the report directory {report.parent} does not exist; "
        "fix --report FILE"
    )
    assert not out.exists()


@pytest.mark.parametrize(
    ("explicit", "advice"),
    [(False, "give --report FILE in a writable directory"), (True, "fix --report FILE")],
    ids=["default-report", "given-report"],
)
def test_report_directory_that_is_a_file_is_refused(
    tmp_path: Path, explicit: bool, advice: str
) -> None:
    (tmp_path / "conda-meta").write_text("not a directory")
    with pytest.raises(UsageError) as info:
        slurm.check_report_dir(tmp_path / "conda-meta" / "conda-unsloth-verify", explicit=explicit)
    assert info.value.message == (
        f"the report directory {tmp_path / 'conda-meta'} is not a directory; {advice}"
    )


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_sigterm_to_the_job_writes_a_partial_report_stand_in_unsloth(
    cli: Cli, overlay_env: Env, tmp_path: Path
) -> None:
    pidfile = tmp_path / "worker.pid"
    pkg = overlay_env.site / "unsloth"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        f"import os, time\nopen({str(pidfile)!r}, 'w').write(str(os.getpid()))\ntime.sleep(3600)\n"
    )
    script = tmp_path / "job.sh"
    report = tmp_path / "verify.json"
    r = cli(
        "verify",
        "-p",
        str(overlay_env.prefix),
        "--sbatch",
        str(script),
        "--report",
        str(report),
        "--checks",
        "unsloth,torch.single_dist",
    )
    assert r.code == 0, r.err
    job = subprocess.Popen(
        ["bash", str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path), "SLURM_JOB_ID": "77"},
    )
    try:
        deadline = time.monotonic() + 60
        while not (pidfile.is_file() and pidfile.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        worker = int(pidfile.read_text())
        job.send_signal(signal.SIGTERM)  # what Slurm sends the batch shell (--signal=B:TERM)
        stdout, stderr = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 1, stderr
    assert f"conda-unsloth: report written to {report} (probe exit code 1)" in stdout
    doc = json.loads(report.read_text())
    assert doc["interrupted"] == "SIGTERM"
    hung = next(c for c in doc["checks"] if c["id"] == "unsloth.import")
    assert hung["detail"] == "not completed: the probe was stopped by SIGTERM"
    assert not alive(worker)
    assert not list(tmp_path.glob("conda-unsloth-verify.*"))
    assert not list(tmp_path.glob("*.tmp"))


# ----------------------------------------------------------------------------- job arrays
# The array script run by bash with the variables Slurm gives each task (the live runs are in
# tests/hpc/test_slurm_live.py).


def array_job(cli: Cli, env: Env, tmp_path: Path, *flags: str) -> tuple[Path, Path]:
    script = tmp_path / "fleet.sbatch"
    report = tmp_path / "reports" / "verify"
    report.parent.mkdir(exist_ok=True)
    r = cli(
        "verify", "-p", str(env.prefix), "--sbatch", str(script), "--report", str(report),
        "--checks", "torch.import", *flags,
    )  # fmt: skip
    assert r.code == 0, r.err
    return script, report


def run_task(script: Path, tmp_path: Path, **slurm_env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(script)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path), **slurm_env},
    )


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_array_task_in_its_partition_writes_its_report_with_the_slurm_facts(
    cli: Cli, overlay_env: Env, tmp_path: Path
) -> None:
    script, report = array_job(cli, overlay_env, tmp_path, "--partitions", "v100,a100")
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    proc = run_task(
        script,
        tmp_path,
        SLURM_JOB_ID="52",
        SLURM_ARRAY_JOB_ID="50",
        SLURM_ARRAY_TASK_ID="1",
        SLURM_JOB_PARTITION="a100",
        SLURMD_NODENAME="gpu-a100",
        CUDA_VISIBLE_DEVICES="0",
    )
    assert proc.returncode == 0, proc.stderr  # torch.import passes on the CPU torch
    mine = report.with_name("verify.a100")
    assert f"conda-unsloth: report written to {mine} (probe exit code 0)" in proc.stdout
    assert sorted(p.name for p in report.parent.iterdir()) == ["verify.a100"]
    doc = json.loads(mine.read_text())
    assert doc["slurm"] == {
        "job_id": "52",
        "array_job_id": "50",
        "array_task_id": "1",
        "partition": "a100",
        "node": "gpu-a100",
        "cluster": None,
        "gpus": None,
        "cuda_visible_devices": "0",
        "target_kind": "partition",
        "target": "a100",
    }


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize(
    ("task_env", "code", "message"),
    [
        (
            {"SLURM_ARRAY_TASK_ID": "1", "SLURM_JOB_PARTITION": "v100"},
            3,
            "conda-unsloth: task 1 is for partition a100 but runs in partition v100; no report "
            "written",
        ),
        ({}, 2, "this script is a job array of 2 tasks, not task (none)"),
        ({"SLURM_ARRAY_TASK_ID": "2"}, 2, "this script is a job array of 2 tasks, not task 2"),
    ],
    ids=["wrong-partition", "not-an-array", "task-out-of-range"],
)
def test_array_task_in_the_wrong_place_writes_no_report(
    cli: Cli,
    overlay_env: Env,
    tmp_path: Path,
    task_env: dict[str, str],
    code: int,
    message: str,
) -> None:
    script, report = array_job(cli, overlay_env, tmp_path, "--partitions", "v100,a100")
    proc = run_task(script, tmp_path, SLURM_JOB_ID="9", **task_env)
    assert proc.returncode == code
    assert message in proc.stderr
    assert list(report.parent.iterdir()) == []


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_a_feature_task_checks_its_job_record_stand_in_scontrol(
    cli: Cli, overlay_env: Env, tmp_path: Path
) -> None:
    """``scontrol show job`` answered by a stand-in (no scheduler here): the task for h100 whose
    job record asks for v100 stops; the live lane runs the real one."""
    script, report = array_job(cli, overlay_env, tmp_path, "--constraints", "v100,h100")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text("#!/bin/sh\necho 'JobId=9 ArrayTaskId=1 Partition=gpu Features=v100'\n")
    scontrol.chmod(0o755)
    proc = subprocess.run(
        ["bash", str(script)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "TMPDIR": str(tmp_path),
            "SLURM_JOB_ID": "9",
            "SLURM_ARRAY_TASK_ID": "1",
        },
    )
    assert proc.returncode == 3
    assert "task 1 was sent to Features=h100 but the job record does not ask for it" in proc.stderr
    assert list(report.parent.iterdir()) == []

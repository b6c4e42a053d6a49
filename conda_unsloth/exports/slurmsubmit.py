"""Submitting a verification job (:mod:`conda_unsloth.exports.slurm` writes it): a single
job with plain ``sbatch``; a fleet's job array submitted held, each task moved to its target with
``scontrol update``, then released (a failed update cancels the job)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .slurm import SlurmJob


def update_field(kind: str, name: str, job: SlurmJob) -> str:
    """The ``scontrol update`` assignment that sends a held task to ``name``."""
    if kind == "partition":
        return f"Partition={name}"
    if kind == "constraint":
        return f"Features={name}"
    return f"Gres=gpu:{name}:{job.gpus_per_task}"


def submission(job: SlurmJob, script: str) -> list[list[str]]:
    """The commands that submit ``script`` (argv lists; ``{J}`` stands for the job id sbatch
    prints): plain ``sbatch`` for a single job; for a fleet, the array submitted held, each task
    moved to its target, then released."""
    if not job.fleet:
        return [["sbatch", script]]
    kind = job.fleet_kind or "partition"
    cmds = [["sbatch", "--parsable", "--hold", script]]
    first = 0 if kind == "gpu-type" else 1  # task 0 is already where the #SBATCH lines put it
    for i, name in enumerate(job.fleet):
        if i >= first:
            cmds.append(["scontrol", "update", f"JobId={{J}}_{i}", update_field(kind, name, job)])
    cmds.append(["scontrol", "release", "{J}"])
    return cmds


@dataclass(frozen=True)
class Submitted:
    job_id: str
    commands: tuple[tuple[str, ...], ...]  # what ran, the job id filled in
    exit_code: int | None = None  # with wait: sbatch --wait's (the highest task exit code)


def _run(cmd: list[str]) -> tuple[int, str]:
    import subprocess

    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return 1, str(exc)
    return proc.returncode, (proc.stderr or proc.stdout).strip()


def submit(job: SlurmJob, script: Path, *, wait: bool = False) -> Submitted:
    """Run :func:`submission` for ``script``: sbatch (held, for a fleet), one ``scontrol
    update`` per task, ``scontrol release``. A failed update cancels the job. With ``wait``
    sbatch runs with ``--wait`` and this returns when every task has ended (Ctrl-C stops the
    waiting, not the job). VerifyError when Slurm's commands are missing or refuse."""
    import shutil
    import subprocess

    from ..errors import VerifyError

    missing = [c for c in ("sbatch", "scontrol") if shutil.which(c) is None]
    if missing:
        raise VerifyError(
            f"{' and '.join(missing)} not found: --submit runs Slurm's commands (run it where "
            "sbatch works, e.g. a login node)",
            hints=[f"or submit by hand with the commands at the top of {script}"],
        )
    cmds = submission(job, str(script))
    first = ["sbatch", "--parsable"]
    if job.fleet:
        first.append("--hold")
    if wait:
        first.append("--wait")
    first.append(str(script))
    try:
        proc = subprocess.Popen(
            first,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
    except OSError as exc:
        raise VerifyError(f"cannot run sbatch: {exc.strerror}") from None
    assert proc.stdout is not None and proc.stderr is not None
    line = proc.stdout.readline().strip()
    job_id = line.split(";")[0]
    if not job_id.isdigit():
        _, err = proc.communicate()
        why = " ".join((err or line or f"exit code {proc.returncode}").split())
        raise VerifyError(
            f"sbatch refused {script}: {why}", hints=[f"sbatch --test-only {script}"]
        )
    ran = [tuple(first)]
    for cmd in cmds[1:]:
        argv = [a.replace("{J}", job_id) for a in cmd]
        code, out = _run(argv)
        ran.append(tuple(argv))
        if code != 0:
            _run(["scancel", job_id])
            proc.kill()
            proc.communicate()
            raise VerifyError(
                f"{' '.join(argv)} failed: {' '.join(out.split()) or f'exit code {code}'}; job "
                f"{job_id} was cancelled",
                hints=[f"scontrol show job {job_id}"],
            )
    if not wait:
        proc.communicate()
        return Submitted(job_id, tuple(ran))
    try:
        proc.communicate()
    except BaseException:  # Ctrl-C: stop waiting; the job goes on
        proc.kill()
        proc.communicate()
        raise
    return Submitted(job_id, tuple(ran), proc.returncode)

"""Issue 16 #5: the generated Slurm script, run by the real bash with paths full of shell
syntax, uses each path exactly as given and runs nothing hidden in it; its comment lines stay
comment lines. (The modulefile side is loaded by the real Lmod and Modules in
tests/exports/test_modulefile.py.)"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conda_unsloth.errors import UsageError
from conda_unsloth.exports import slurm

# the fake python the job runs (a test edge: there is no GPU env here): it records its
# arguments and writes a report where --json says
FAKE_PYTHON = """#!/bin/sh
printf '%s\\n' "$@" > "$FAKE_ARGS"
while [ $# -gt 0 ]; do
  if [ "$1" = "--json" ]; then printf '{"fake": true}' > "$2"; fi
  shift
done
"""

HOSTILE_NAMES = {
    "command-substitution": "env $(touch {pwned}) `touch {pwned}`",
    "quotes-and-semicolons": 'it\'s "env"; touch {pwned} #',
    "globs-and-braces": "env * ? [a] {{x,y}} ~ &",
    "dollar-vars": "env $HOME ${{PATH}} $0",
}


def job(prefix: Path, report: Path) -> slurm.SlurmJob:
    return slurm.SlurmJob(prefix=prefix, report=report, time="00:10:00")


def render(j: slurm.SlurmJob) -> str:
    return slurm.render(j, "print('probe')\n", "print('kernel')\n")


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("name", list(HOSTILE_NAMES.values()), ids=list(HOSTILE_NAMES))
def test_script_uses_hostile_paths_verbatim_under_bash(tmp_path: Path, name: str) -> None:
    pwned = tmp_path / "PWNED"
    root = tmp_path / name.format(pwned=pwned).replace("/", "_")
    prefix = root / "prefix"
    (prefix / "bin").mkdir(parents=True)
    python = prefix / "bin" / "python"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    report = root / "report dir" / name.format(pwned=pwned).replace("/", "_")
    report.parent.mkdir()
    script = tmp_path / "job.sh"
    script.write_text(render(job(prefix, report)))
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    args = tmp_path / "args.txt"
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run(
        ["bash", str(script)],
        env={"PATH": "/usr/bin:/bin", "FAKE_ARGS": str(args), "TMPDIR": str(tmp_path)},
        cwd=work,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert report.read_text() == '{"fake": true}'
    assert not pwned.exists()
    assert sorted(p.name for p in work.iterdir()) == []  # nothing ran in the job's cwd
    ran = args.read_text().splitlines()
    assert ran[0] == "-I" and ran[2] == "--json" and ran[3].startswith(str(report) + ".")


@pytest.mark.parametrize("name", list(HOSTILE_NAMES.values()), ids=list(HOSTILE_NAMES))
def test_comment_lines_stay_comments(tmp_path: Path, name: str) -> None:
    prefix = tmp_path / name / "env"
    text = render(job(prefix, tmp_path / "r.json"))
    head = text.split("set -euo pipefail", 1)[0].splitlines()
    assert head[0] == "#!/bin/bash"
    assert all(line.startswith("#") for line in head)


@pytest.mark.parametrize(
    "bad", ["a\nrm -rf x", "cr\rx", "tab\tx", "nul-like\x1b[0m", "sep\u2028x"]
)
@pytest.mark.parametrize("where", ["prefix", "report"])
def test_control_characters_are_refused_before_rendering(
    tmp_path: Path, bad: str, where: str
) -> None:
    prefix = tmp_path / (bad if where == "prefix" else "env")
    report = tmp_path / (bad if where == "report" else "r.json")
    with pytest.raises(UsageError, match="contains") as info:
        render(job(prefix, report))
    assert "\n" not in info.value.message and "\r" not in info.value.message


def test_sbatch_values_with_non_ascii_digits_are_refused(tmp_path: Path) -> None:
    """``\\d`` matches '١' (Arabic-Indic one): --time is checked with ASCII digits only."""
    j = slurm.SlurmJob(prefix=tmp_path / "env", report=tmp_path / "r.json", time="١٠")
    with pytest.raises(UsageError, match="--time"):
        render(j)


def test_check_report_dir_refuses_control_characters(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="contains a control character"):
        slurm.check_report_dir(tmp_path / "r\n.json", explicit=True)
    assert os.listdir(tmp_path) == []

"""`conda-unsloth verify`: the real CLI running the probe in a real CPU-torch env, recording the
verdict, and refusing bad input with a one-line error and nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from conda_unsloth import knowledge, marker
from conda_unsloth.verify import report as reportmod
from tests.conftest import Result, tree
from tests.verify.conftest import Env

Cli = Callable[..., Result]


@pytest.fixture
def env(overlay_env: Env) -> Env:
    return overlay_env


def test_verify_cpu_env_fails_and_records_verdict(cli: Cli, env: Env) -> None:
    r = cli("verify", "-p", str(env.prefix), "--expect-cuda", "12.1")
    assert r.code == 1, r.err
    assert "Traceback" not in r.err
    lines = r.out.splitlines()
    assert lines[0].split()[:4] == ["check", "status", "s", "fix"]
    title = knowledge.load().issues["F4"].title
    assert f"F4 {title} (torch.cuda_build, gpu.visible, gpu.arch)" in lines
    report_file = env.prefix / "conda-meta" / "conda-unsloth-verify"
    assert lines[-1] == f"report: {report_file}"
    rep = reportmod.load(report_file)
    assert rep.ok is False
    assert rep.options["expect_cuda"] == "12.1"
    rec = (marker.read(env.prefix) or {})["verification"]
    assert rec["verdict"] == "fail"
    assert "gpu.visible" in rec["failed"]
    assert rec["report"] == str(report_file)
    # conda reads every conda-meta/*.json as a package record: we must not leave one there
    assert sorted(p.name for p in (env.prefix / "conda-meta").iterdir()) == [
        "conda-unsloth",
        "conda-unsloth-verify",
    ]


def test_verify_json_is_one_document(cli: Cli, env: Env) -> None:
    r = cli("verify", "-p", str(env.prefix), "--json", "--checks", "torch,seed")
    assert r.code == 1
    doc = json.loads(r.out)
    assert doc["schema"] == "conda-unsloth/verify-report/1"
    assert doc["prefix"] == str(env.prefix)
    assert doc["ok"] is False
    assert [c["id"] for c in doc["checks"]][:2] == ["torch.import", "torch.cuda_build"]
    assert "seed.dispatch" in [c["id"] for c in doc["checks"]]
    [f4] = [x for x in doc["remedies"] if x["id"] == "F4"]
    assert f4["title"] == knowledge.load().issues["F4"].title
    assert f4["checks"] == ["torch.cuda_build", "gpu.visible", "gpu.arch"]
    assert doc["verdict"] == "fail"


def test_verify_passing_subset_exits_0(cli: Cli, env: Env) -> None:
    r = cli("verify", "-p", str(env.prefix), "--checks", "matmul.fp32", "--checks", "seed")
    assert r.code == 0, r.out + r.err
    assert r.out.splitlines()[-2].startswith("verification PASSED (partial: 2 of the checks)")
    # a --checks subset never records a verified env: "partial", with the checks it ran
    rec = (marker.read(env.prefix) or {})["verification"]
    assert rec["verdict"] == "partial"
    assert rec["checks"] == ["matmul.fp32", "seed.dispatch"]


def test_expect_cuda_defaults_to_the_marker_target(cli: Cli, env: Env) -> None:
    marker.write(env.prefix, {"target": {"cuda": "12.4"}})
    r = cli("verify", "-p", str(env.prefix), "--json", "--checks", "torch.cuda_build")
    doc = json.loads(r.out)
    assert doc["options"]["expect_cuda"] == "12.4"


def test_from_report_records_without_running(cli: Cli, env: Env, tmp_path: Path) -> None:
    first = cli(
        "verify",
        "-p",
        str(env.prefix),
        "--checks",
        "matmul.fp32",
        "--report",
        str(tmp_path / "r.json"),
    )
    assert first.code == 0
    marker.path_for(env.prefix).unlink()
    r = cli("verify", "-p", str(env.prefix), "--from-report", str(tmp_path / "r.json"))
    assert r.code == 0
    rec = (marker.read(env.prefix) or {})["verification"]
    assert rec["verdict"] == "partial"
    assert rec["checks"] == ["matmul.fp32"]
    assert rec["report"] == str(tmp_path / "r.json")


def test_list_checks(cli: Cli) -> None:
    r = cli("verify", "--list-checks")
    assert r.code == 0
    ids = [line.split()[0] for line in r.out.splitlines()]
    assert ids[0] == "torch.import"
    assert "seed.dispatch" in ids
    assert ids[-1] == "unsloth.import"
    r = cli("verify", "--list-checks", "--json")
    assert r.code == 0
    assert [c["id"] for c in json.loads(r.out)["checks"]] == ids


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (["--expect-cuda", "12"], "--expect-cuda '12' is not a CUDA version X.Y", 2),
        (["--timeout", "0"], "--timeout must be a positive number of seconds", 2),
        (["--checks", "matmul,bogus"], "unknown check 'bogus'", 2),
        (["--partition", "gpu"], "--partition only apply with --sbatch FILE", 2),
        (["--sbatch", "x.sh", "--from-report", "r.json"], "do not go together", 2),
        (
            ["--sbatch", "x.sh", "--time", "10 min"],
            "--time '10 min' is not a valid sbatch value",
            2,
        ),
        (["--sbatch", "x.sh", "--partition", "gpu;rm"], "--partition 'gpu;rm' is not a valid", 2),
        (["--from-report", "missing.json"], "does not exist", 2),
        (["--from-report", "garbage.json"], "not JSON", 2),
        (["--from-report", "empty.json"], "lists no checks", 2),
        # a value given empty (`--sbatch "$JOB"`, JOB unset) never means "not given": before,
        # these ran the probe here and replaced the env's recorded verdict
        (["--sbatch", ""], "--sbatch is empty", 2),
        (["--sbatch", " "], "--sbatch is empty", 2),
        (["--partitions", ""], "--partitions is empty", 2),
        (["--sbatch", "x.sh", "--partitions", ""], "--partitions is empty", 2),
        (["--gpu-types", ""], "--gpu-types is empty", 2),
        (["--partition", ""], "--partition is empty", 2),
        (["--report", ""], "--report is empty", 2),
        (["--from-report", ""], "--from-report is empty", 2),
    ],
    ids=[
        "expect-cuda",
        "timeout",
        "unknown-check",
        "slurm-flag-alone",
        "sbatch-and-from-report",
        "time-with-space",
        "partition-metachar",
        "report-missing",
        "report-garbage",
        "report-empty",
        "sbatch-empty",
        "sbatch-blank",
        "partitions-empty",
        "partitions-empty-with-sbatch",
        "gpu-types-empty",
        "partition-empty",
        "report-flag-empty",
        "from-report-empty",
    ],
)
def test_bad_input_one_line_error_nothing_written(
    cli: Cli,
    env: Env,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    message: str,
    code: int,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "garbage.json").write_text("{nope")
    empty = {
        "schema": "conda-unsloth/verify-report/1",
        "probe_version": "1",
        "created": "2026-11-27T23:00:00Z",
        "seconds": 0.1,
        "python": {"prefix": str(env.prefix)},
        "checks": [],
    }
    (tmp_path / "empty.json").write_text(json.dumps(empty))
    before_env = tree(env.prefix / "conda-meta")
    before_cwd = tree(tmp_path)
    r = cli("verify", "-p", str(env.prefix), *args)
    assert r.code == code
    assert "Traceback" not in r.err
    first = r.err.splitlines()[0]
    assert first.startswith("conda-unsloth: error: ")
    assert message in first
    assert tree(env.prefix / "conda-meta") == before_env
    assert tree(tmp_path) == before_cwd


def test_missing_prefix_is_exit_2(cli: Cli, tmp_path: Path) -> None:
    r = cli("verify", "-p", str(tmp_path / "nope"))
    assert r.code == 2
    assert (
        r.err.splitlines()[0] == f"conda-unsloth: error: prefix {tmp_path / 'nope'} does not exist"
    )
    assert not (tmp_path / "nope").exists()


def test_env_without_python_is_a_verify_error(cli: Cli, tmp_path: Path) -> None:
    prefix = tmp_path / "env"
    (prefix / "conda-meta").mkdir(parents=True)
    r = cli("verify", "-p", str(prefix))
    assert r.code == 1
    assert r.err.splitlines()[0] == (
        f"conda-unsloth: error: {prefix} has no bin/python: verification runs inside the "
        "environment's own python"
    )
    assert sorted(p.name for p in (prefix / "conda-meta").iterdir()) == []


def test_json_error_is_one_document(cli: Cli, env: Env) -> None:
    r = cli("verify", "-p", str(env.prefix), "--json", "--expect-cuda", "twelve")
    assert r.code == 2
    doc = json.loads(r.out)
    assert doc["error"] == "UsageError"
    assert doc["exit_code"] == 2


def test_subprocess_cli(env: Env) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "conda_unsloth",
            "verify",
            "-p",
            str(env.prefix),
            "--checks",
            "torch.single_dist",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["checks"][0]["status"] == "pass"


def test_run_verification_api_used_by_create(env: Env) -> None:
    from conda_unsloth.verify import run_verification

    rep = run_verification(env.prefix, expect_cuda="12.1", checks=["torch", "seed"])
    assert rep.ok is False
    assert [c.id for c in rep.failed_required()] == ["torch.cuda_build", "gpu.visible", "gpu.arch"]
    assert rep.check("seed.dispatch") is not None
    assert rep.options["expect_cuda"] == "12.1"


def _report_of(env: Env, tmp_path: Path, cli: Cli) -> Path:
    out = tmp_path / "r.json"
    r = cli("verify", "-p", str(env.prefix), "--checks", "matmul.fp32", "--report", str(out))
    assert r.code == 0, r.err
    return out


def test_from_report_of_another_prefix_is_refused(cli: Cli, env: Env, tmp_path: Path) -> None:
    report = _report_of(env, tmp_path, cli)
    other = tmp_path / "other-env"
    (other / "conda-meta").mkdir(parents=True)
    before = tree(other)
    r = cli("verify", "-p", str(other), "--from-report", str(report))
    assert r.code == 2
    assert "Traceback" not in r.err
    assert r.err.splitlines()[0] == (
        f"conda-unsloth: error: --from-report {report} was written by the python of "
        f"{env.prefix}, not of {other}"
    )
    assert tree(other) == before
    # --force records it anyway, and says so
    r = cli("verify", "-p", str(other), "--from-report", str(report), "--force")
    assert r.code == 0
    assert "conda-unsloth: warning: --from-report" in r.err
    assert (marker.read(other) or {})["verification"]["verdict"] == "partial"

"""Fleet verification without a scheduler: Slurm reports (as the job script writes them) merged
into the marker by `verify --from-report`, what the marker keeps per partition, the checks on
the fleet options, and `module --require-verified` with the real Lmod and Tcl module tools.
The live Slurm runs of the same are in test_slurm_live.py."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conda_unsloth import marker
from conda_unsloth.errors import UsageError, VerifyError
from conda_unsloth.exports import slurm
from conda_unsloth.verify import probe
from conda_unsloth.verify import report as reportmod
from tests.conftest import Result, tree
from tests.exports.moduletools import CLEAN_PATH, lmod_cmd, make_prefix, tcl_cmd

Cli = Callable[..., Result]
GPU = {"a100": ("NVIDIA A100-SXM4-80GB", "8.0"), "h100": ("NVIDIA H100 80GB HBM3", "9.0")}


def report(
    partition: str | None,
    *,
    gpu: bool = True,
    created: str = "2026-12-01T10:00:00Z",
    job: str = "41",
    task: str | None = None,
    kind: str | None = "partition",
    target: str | None = None,
) -> dict[str, Any]:
    """A report as the job script leaves it: every check of the probe, then the slurm object."""
    checks = []
    for spec in probe.CHECKS:
        c = {
            "id": spec.id,
            "title": spec.title,
            "status": "pass",
            "required": True,
            "seconds": 0.5,
            "detail": "ok",
            "remedy": None,
            "data": {},
        }
        if spec.id == "gpu.visible":
            if gpu and partition in GPU:
                name, cap = GPU[partition]
                c["data"] = {
                    "devices": [{"index": 0, "name": name, "capability": cap}],
                    "driver": "550.54.14",
                }
            else:
                c.update(status="fail", remedy="F18", detail="no GPU usable: no NVIDIA driver")
        checks.append(c)
    doc: dict[str, Any] = {
        "schema": "conda-unsloth/verify-report/1",
        "probe_version": "1",
        "created": created,
        "seconds": 30.0,
        "checks": checks,
        "versions": {"torch": "2.5.1"},
    }
    if partition is not None:
        doc["slurm"] = {
            "job_id": job,
            "array_job_id": "40" if task else None,
            "array_task_id": task,
            "partition": partition,
            "node": f"gpu-{partition}",
            "cuda_visible_devices": "0",
            "target_kind": kind,
            "target": target,
        }
    return doc


def write(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def env(tmp_path: Path) -> Path:
    prefix = tmp_path / "env"
    (prefix / "conda-meta").mkdir(parents=True)
    return prefix


# ----------------------------------------------------------------------------- the report


def test_fleet_record_of_a_passing_report() -> None:
    rep = reportmod.from_json(report("a100", task="1", target="a100"), "r")
    assert reportmod.fleet_key(rep) == "a100"
    rec = reportmod.fleet_record(rep, Path("/x/r"))
    assert {k: rec[k] for k in ("kind", "verdict", "gpu", "arch", "capability", "driver")} == {
        "kind": "partition",
        "verdict": "pass",
        "gpu": "NVIDIA A100-SXM4-80GB",
        "arch": "sm_80",
        "capability": "8.0",
        "driver": "550.54.14",
    }
    assert (rec["partition"], rec["node"], rec["job"], rec["array_job"], rec["array_task"]) == (
        "a100",
        "gpu-a100",
        "41",
        "40",
        "1",
    )
    assert rec["failed"] == [] and "reason" not in rec
    assert rec["checks"]["gpu.visible"] == "pass" and len(rec["checks"]) == len(probe.CHECKS)
    assert reportmod.fleet_line("a100", rec) == (
        "a100: pass on NVIDIA A100-SXM4-80GB (sm_80, driver 550.54.14, node gpu-a100, "
        "2026-12-01T10:00:00Z)"
    )


def test_a_job_that_saw_no_gpu_fails_and_says_so() -> None:
    rep = reportmod.from_json(report("a100", gpu=False), "r")
    rec = reportmod.fleet_record(rep, None)
    assert (rec["verdict"], rec["gpu"], rec["arch"]) == ("fail", None, None)
    assert rec["reason"] == "no usable GPU (F18): no GPU usable: no NVIDIA driver"
    assert rec["failed"] == ["gpu.visible"]


def test_the_target_names_the_record_else_the_partition_it_ran_in() -> None:
    by_feature = reportmod.from_json(report("gpu", kind="constraint", target="h100"), "r")
    assert reportmod.fleet_key(by_feature) == "h100"
    assert reportmod.fleet_record(by_feature, None)["kind"] == "constraint"
    plain = reportmod.from_json(report("gpu", kind="partition", target=None), "r")
    assert reportmod.fleet_key(plain) == "gpu"
    assert reportmod.fleet_key(reportmod.from_json(report(None), "r")) is None


@pytest.mark.parametrize(
    ("slurm_value", "message"),
    [
        ("a100", "'slurm' must be an object"),
        ({"partition": 7}, "'slurm.partition' must be a string"),
        ({"target_kind": "rack"}, "'slurm.target_kind' 'rack' is not one of"),
    ],
    ids=["not-object", "not-string", "unknown-kind"],
)
def test_a_malformed_slurm_object_is_refused(slurm_value: Any, message: str) -> None:
    doc = report("a100")
    doc["slurm"] = slurm_value
    with pytest.raises(VerifyError, match=message):
        reportmod.from_json(doc, "r")


def test_the_slurm_object_survives_a_round_trip() -> None:
    rep = reportmod.from_json(report("a100", task="0", target="a100"), "r")
    again = reportmod.loads(reportmod.dumps(rep))
    assert again.slurm == rep.slurm and again.slurm["node"] == "gpu-a100"
    assert "slurm" not in reportmod.from_json(report(None), "r").to_json()


# ----------------------------------------------------------------------------- --from-report


def test_several_reports_go_into_the_fleet(cli: Cli, env: Path, tmp_path: Path) -> None:
    a = write(tmp_path / "conda-unsloth-verify.a100", report("a100", target="a100", task="0"))
    h = write(tmp_path / "conda-unsloth-verify.h100", report("h100", gpu=False, task="1"))
    r = cli("verify", "-p", str(env), "--from-report", str(a), str(h))
    assert r.code == 1  # h100 failed
    assert r.out.splitlines() == [
        "a100: pass on NVIDIA A100-SXM4-80GB (sm_80, driver 550.54.14, node gpu-a100, "
        "2026-12-01T10:00:00Z)",
        "h100: fail (node gpu-h100, 2026-12-01T10:00:00Z); no usable GPU (F18): no GPU usable: "
        "no NVIDIA driver",
        f"recorded 2 report(s) in {marker.path_for(env)}",
    ]
    mark = marker.read(env) or {}
    assert sorted(mark["fleet"]) == ["a100", "h100"]
    assert mark["fleet"]["a100"]["report"] == str(a)
    assert mark["fleet"]["a100"]["env_digest"] == marker.env_digest(env)
    ver = mark["verification"]
    assert (ver["verdict"], ver["fleet"], ver["failed"]) == (
        "fail",
        ["a100", "h100"],
        ["h100:gpu.visible"],
    )


def test_a_directory_and_a_glob(cli: Cli, env: Path, tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    reports.mkdir()
    write(reports / "conda-unsloth-verify.a100", report("a100"))
    write(reports / "conda-unsloth-verify.h100", report("h100"))
    (reports / "conda-unsloth-verify.h100.77.tmp").write_text("half written")
    (reports / "notes.txt").write_text("not a report")
    assert cli("verify", "-p", str(env), "--from-report", str(reports)).code == 0
    assert sorted((marker.read(env) or {})["fleet"]) == ["a100", "h100"]
    other = tmp_path / "env2"
    (other / "conda-meta").mkdir(parents=True)
    r = cli("verify", "-p", str(other), "--from-report", str(reports / "conda-unsloth-verify.a*"))
    assert r.code == 0, r.err
    assert sorted((marker.read(other) or {})["fleet"]) == ["a100"]


def test_the_newer_report_of_a_partition_wins(cli: Cli, env: Path, tmp_path: Path) -> None:
    old = write(tmp_path / "old", report("a100", gpu=False, created="2026-12-01T09:00:00Z"))
    new = write(tmp_path / "new", report("a100", created="2026-12-01T11:00:00Z"))
    assert cli("verify", "-p", str(env), "--from-report", str(new), str(old)).code == 1
    assert (marker.read(env) or {})["fleet"]["a100"]["verdict"] == "pass"
    # and a later run replaces the record, the other partitions stay
    write(tmp_path / "h", report("h100"))
    assert cli("verify", "-p", str(env), "--from-report", str(tmp_path / "h")).code == 0
    assert sorted((marker.read(env) or {})["fleet"]) == ["a100", "h100"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--from-report", "{d}"], "no conda-unsloth-verify* report in it"),
        (["--from-report", "{d}/x.*"], "no file matches"),
        (["--from-report", "{d}/a", "{d}/b", "--report", "{d}/c"], "takes one --from-report"),
    ],
    ids=["empty-dir", "glob-no-match", "report-with-several"],
)
def test_bad_from_report_arguments(
    cli: Cli, env: Path, tmp_path: Path, argv: list[str], message: str
) -> None:
    d = tmp_path / "d"
    d.mkdir()
    write(d / "a", report("a100"))
    write(d / "b", report("h100"))
    before = tree(env)
    r = cli("verify", "-p", str(env), *[a.format(d=d) for a in argv])
    assert r.code == 2
    assert message in r.err.splitlines()[0] and "Traceback" not in r.err
    assert tree(env) == before


# ----------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--partitions", "a100,,h100"], "give a comma-separated list"),
        (["--partitions", "a100,a100"], "names a100 more than once"),
        (["--constraints", "a100&ib"], "is not a plain name"),
        (["--gpu-types", "a 100"], "is not a plain name"),
        (["--partitions", "a100", "--partition", "gpu"], "--partitions and --partition"),
        (["--gpu-types", "a100", "--gres", "gpu:a100:1"], "must be gpu or gpu:N"),
        (["--partitions", "a100", "--constraints", "h100"], "not allowed with argument"),
        (["--partitions", "a100", "--wait"], "--wait only applies with --submit"),
    ],
    ids=[
        "empty-item",
        "twice",
        "expression",
        "space",
        "with-partition",
        "typed-gres",
        "two-kinds",
        "wait-alone",
    ],
)
def test_bad_fleet_options_are_refused_and_nothing_written(
    cli: Cli, env: Path, tmp_path: Path, argv: list[str], message: str
) -> None:
    out = tmp_path / "job.sh"
    r = cli("verify", "-p", str(env), "--sbatch", str(out), *argv)
    assert r.code == 2
    assert message in r.err and len(r.err.strip().splitlines()) <= 3
    assert not out.exists()


def test_fleet_options_need_sbatch(cli: Cli, env: Path) -> None:
    r = cli("verify", "-p", str(env), "--partitions", "a100,h100", "--submit")
    assert r.code == 2
    assert "--partitions, --submit only apply with --sbatch FILE" in r.err


@pytest.mark.parametrize(
    ("flag", "first", "updates"),
    [
        ("--partitions", ["--partition=v100", "--gres=gpu:1"], ["${J}_1 Partition=a100"]),
        ("--constraints", ["--constraint=v100", "--gres=gpu:1"], ["${J}_1 Features=a100"]),
        ("--gpu-types", [], ["${J}_0 Gres=gpu:v100:1", "${J}_1 Gres=gpu:a100:1"]),
    ],
    ids=["partitions", "constraints", "gpu-types"],
)
def test_array_header_and_its_submission(
    cli: Cli, env: Path, tmp_path: Path, flag: str, first: list[str], updates: list[str]
) -> None:
    out = tmp_path / "job.sh"
    r = cli("verify", "-p", str(env), "--sbatch", str(out), flag, "v100,a100", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["reports"] == {
        "v100": str(env / "conda-meta" / "conda-unsloth-verify.v100"),
        "a100": str(env / "conda-meta" / "conda-unsloth-verify.a100"),
    }
    assert doc["submit"] == [
        f"sbatch --parsable --hold {out}",
        *(f"scontrol update JobId={u}" for u in updates),
        "scontrol release ${J}",
    ]
    text = out.read_text()
    header = [ln.split(" ", 1)[1] for ln in text.splitlines() if ln.startswith("#SBATCH ")]
    assert header[:2] == ["--job-name=unsloth-verify", "--array=0-1"]
    assert [
        h for h in header if h.split("=")[0] in ("--partition", "--constraint", "--gres")
    ] == first
    assert "TARGETS=(v100 a100)\n" in text


def test_submit_dry_run_shows_the_commands_and_writes_nothing(
    cli: Cli, env: Path, tmp_path: Path
) -> None:
    out = tmp_path / "job.sh"
    r = cli(
        "verify", "-p", str(env), "--sbatch", str(out), "--partitions", "v100,a100", "--submit",
        "--dry-run",
    )  # fmt: skip
    assert r.code == 0, r.err
    assert r.out.splitlines() == [
        f"would write {out} (a dry run writes nothing)",
        f"would run: sbatch --parsable --hold {out}",
        "would run: scontrol update JobId=${J}_1 Partition=a100",
        "would run: scontrol release ${J}",
    ]
    assert not out.exists()


def test_submit_without_slurm_commands_is_one_line(
    cli: Cli, env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    out = tmp_path / "job.sh"
    r = cli("verify", "-p", str(env), "--sbatch", str(out), "--partitions", "a100", "--submit")
    assert r.code == 1
    assert r.err.splitlines()[0] == (
        "conda-unsloth: error: sbatch and scontrol not found: --submit runs Slurm's commands "
        "(run it where sbatch works, e.g. a login node)"
    )


# ----------------------------------------------------------------------------- publishing


def fleet_env(tmp_path: Path, cli: Cli, *reports: dict[str, Any]) -> Path:
    prefix = make_prefix(tmp_path / "apps")
    for i, doc in enumerate(reports):
        write(tmp_path / f"r{i}", doc)
    if reports:
        cli(
            "verify",
            "-p",
            str(prefix),
            "--from-report",
            *(str(tmp_path / f"r{i}") for i in range(len(reports))),
        )
    return prefix


def test_require_verified_refuses_and_names_the_command(cli: Cli, tmp_path: Path) -> None:
    prefix = fleet_env(tmp_path, cli, report("a100"), report("h100", gpu=False))
    out = tmp_path / "modulefiles"
    out.mkdir()
    r = cli("module", "-p", str(prefix), "unsloth/2024.9", "-o", str(out),
            "--require-verified", "a100,h100,v100")  # fmt: skip
    assert r.code == 1
    line = r.err.splitlines()[0]
    assert line.startswith("conda-unsloth: error: not publishing unsloth/2024.9: not verified on ")
    assert (
        "h100 (fail: no usable GPU (F18): no GPU usable: no NVIDIA driver); v100 (no report)"
        in line
    )
    assert line.endswith("--sbatch verify.sbatch --partitions a100,h100,v100 --submit --wait")
    assert list(out.iterdir()) == []
    with pytest.raises(UsageError, match="--require-verified 'a100,,h100'"):
        slurm.parse_fleet("a100,,h100", "--require-verified")


@pytest.mark.parametrize("fmt", ["lmod", "tcl"])
def test_published_module_shows_the_gpus_real_tool(cli: Cli, tmp_path: Path, fmt: str) -> None:
    prefix = fleet_env(
        tmp_path,
        cli,
        report("a100", target="a100", task="0"),
        report("h100", target="h100", task="1"),
    )
    out = tmp_path / "modulefiles"
    out.mkdir()
    r = cli("module", "-p", str(prefix), "unsloth/2024.9", "-o", str(out), "--format", fmt,
            "--require-verified", "a100,h100")  # fmt: skip
    assert r.code == 0, r.err
    cmd = [lmod_cmd(), "bash"] if fmt == "lmod" else ["tclsh", tcl_cmd(), "bash"]
    env = {"PATH": CLEAN_PATH, "HOME": str(tmp_path), "MODULEPATH": str(out)}
    shown = {}
    for verb in ("whatis", "help"):
        proc = subprocess.run(
            [*cmd, verb, "unsloth/2024.9"], env=env, capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr
        shown[verb] = proc.stdout + proc.stderr
    assert (
        "Verified on: a100 (NVIDIA A100-SXM4-80GB, sm_80), h100 (NVIDIA H100 80GB HBM3, sm_90)"
        in shown["whatis"]
    )
    assert (
        "a100: NVIDIA A100-SXM4-80GB, sm_80, driver 550.54.14, node gpu-a100, job 40_0, "
        "2026-12-01T10:00:00Z" in shown["help"]
    )
    assert (
        "h100: NVIDIA H100 80GB HBM3, sm_90, driver 550.54.14, node gpu-h100, job 40_1"
        in (shown["help"])
    )


def test_an_unverified_module_says_so(tmp_path: Path, cli: Cli) -> None:
    prefix = fleet_env(tmp_path, cli, report("h100", gpu=False))
    r = cli("module", "-p", str(prefix), "unsloth/2024.9", "--dry-run")
    assert r.code == 0
    assert 'whatis("Verified on: none yet")' in r.out
    assert "Not verified on a GPU yet (conda-unsloth verify --sbatch)." in r.out  # standalone


def test_gpu_names_from_a_report_cannot_break_the_module(tmp_path: Path, cli: Cli) -> None:
    doc = report("a100")
    visible = next(c for c in doc["checks"] if c["id"] == "gpu.visible")
    visible["data"]["devices"][0]["name"] = 'A100 "x"\n]]\nos.execute("id")'
    prefix = fleet_env(tmp_path, cli, doc)
    r = cli("module", "-p", str(prefix), "unsloth/2024.9", "--dry-run")
    assert r.code == 0, r.err
    assert 'whatis("Verified on: a100 (A100 \\"x\\" ]] os.execute(\\"id\\"), sm_80)")' in r.out
    assert '\nos.execute("id")' not in r.out


def test_the_hand_submit_commands_run_as_printed(tmp_path: Path, cli: Cli, env: Path) -> None:
    """The `or submit it by hand` lines, pasted into bash after `J=...`, address the array's
    tasks (``$J_1`` would be an unset variable named J_1)."""
    out = tmp_path / "job.sh"
    r = cli("verify", "-p", str(env), "--sbatch", str(out), "--partitions", "v100,a100")
    assert r.code == 0, r.err
    lines = [ln.strip() for ln in r.out.splitlines() if ln.strip().startswith("scontrol ")]
    assert lines, r.out
    script = "J=4242\n" + "".join(f"echo {ln}\n" for ln in lines)
    shown = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert shown == [
        "scontrol update JobId=4242_1 Partition=a100",
        "scontrol release 4242",
    ]
    assert "next: conda-unsloth verify -p" in r.out  # standalone: the command that runs here

"""`conda-unsloth create` end to end with the rattler backend, a real interpreter (this
machine's CPython as a conda package), a local channel and a local wheelhouse — and the
nothing-lost guarantees under injected failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conda_unsloth import inventory, prefixtx
from tests import envbuild
from tests.conftest import Result, tree
from tests.micromamba.fixture import current_args, installer, micromamba_exe  # noqa: F401

# issue 21: the tests marked ON_EACH_INSTALLER run once with `--installer rattler` and once with
# `--installer micromamba` (tests/micromamba/fixture.py; `args` adds the flag)
ON_EACH_INSTALLER = pytest.mark.usefixtures("installer")


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONDA_UNSLOTH_CACHE", str(tmp_path / "cache"))


def args(demo: Path, prefix: Path, *extra: str, wheels: Path | None = None) -> list[str]:
    return envbuild.create_args(demo, prefix, *extra, *current_args(), wheels=wheels)


def env_run(prefix: Path, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(prefix / "bin" / "python"), "-c", code], capture_output=True, text=True, check=False
    )


@ON_EACH_INSTALLER
def test_create_end_to_end(cli: Callable[..., Result], demo: Path, tmp_path: Path) -> None:
    prefix = tmp_path / "env"
    r = cli(*args(demo, prefix), "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["status"] == "ok" and doc["verification"]["verdict"] == "skipped"
    assert "unsloth==2024.12.12" in doc["pip_packages"]
    # the env runs, with conda's torch stand-in and the pip companions
    run = env_run(
        prefix,
        "import sys, torch, xformers, unsloth; print(sys.prefix, torch.__version__, unsloth.__version__)",
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [str(prefix), "2.5.1", "2024.12.12"]
    # the CUDA build won although the CPU build has a higher build number
    assert (prefix / "conda-meta" / "pytorch-2.5.1-py3.11_cuda12.1_cudnn9.1.0_0.json").exists()
    assert (prefix / "conda-meta" / "pytorch-mutex-1.0-cuda.json").exists()
    # pip check, and torch still conda's (exactly one torch distribution)
    check = subprocess.run(
        [str(prefix / "bin" / "python"), "-m", "pip", "check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout
    assert inventory.torch_dists(prefix) == ["torch-2.5.1.dist-info (conda)"]
    marker = json.loads((prefix / "conda-meta" / "conda-unsloth").read_text())
    assert marker["status"] == "ok" and marker["tool"] == "conda-unsloth"
    assert marker["target"]["cuda"] == "12.1" and marker["profile"] == "pytorch"
    assert marker["verification"]["verdict"] == "skipped"
    assert all(p["sha256"] for p in marker["pip"]) and len(marker["lock_digest"]) == 64
    assert not list(tmp_path.glob(".env.conda-unsloth*")), "no lock or backup left behind"
    # conda reads every conda-meta/*.json as a record named name-version-build: ours must not be one
    for rec in (prefix / "conda-meta").glob("*.json"):
        data = json.loads(rec.read_text())
        assert rec.name[:-5].rsplit("-", 2) == [data["name"], data["version"], data["build"]]


@ON_EACH_INSTALLER
def test_dry_run_writes_nothing(cli: Callable[..., Result], demo: Path, tmp_path: Path) -> None:
    before = tree(tmp_path)
    r = cli(*args(demo, tmp_path / "env"), "--dry-run")
    assert r.code == 0 and "pytorch" in r.out and "py3.11_cuda12.1_cudnn9.1.0_0" in r.out
    assert tree(tmp_path) == before and not (tmp_path / "env").exists()


def test_non_interactive_without_yes_changes_nothing(demo: Path, tmp_path: Path) -> None:
    argv = [a for a in args(demo, tmp_path / "env") if a != "--yes"]
    proc = subprocess.run(
        [sys.executable, "-m", "conda_unsloth", *argv],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "CONDA_UNSLOTH_CACHE": str(tmp_path / "c")},
    )
    assert proc.returncode == 2 and "add --yes" in proc.stderr
    assert not (tmp_path / "env").exists()


@ON_EACH_INSTALLER
def test_json_never_prompts_as_in_conda(demo: Path, tmp_path: Path) -> None:
    """`create --json` off a terminal and without --yes creates (conda does not prompt under
    --json); stdout is one JSON document."""
    argv = [a for a in args(demo, tmp_path / "env") if a != "--yes"]
    proc = subprocess.run(
        [sys.executable, "-m", "conda_unsloth", *argv, "--json"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "CONDA_UNSLOTH_CACHE": str(tmp_path / "c")},
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "ok"
    assert (tmp_path / "env" / "conda-meta" / "conda-unsloth").is_file()


def test_a_bad_flag_points_to_the_verbs_help(cli: Callable[..., Result], tmp_path: Path) -> None:
    r = cli("create", "-p", str(tmp_path / "env"), "--bogus")
    assert r.code == 2
    assert r.err.splitlines() == [
        "conda-unsloth: error: unrecognized arguments: --bogus",
        "hint: conda-unsloth create --help",
    ]


def test_existing_prefix_is_refused_without_force(
    cli: Callable[..., Result], demo: Path, tmp_path: Path
) -> None:
    prefix = tmp_path / "env"
    (prefix / "conda-meta").mkdir(parents=True)
    (prefix / "conda-meta" / "history").write_text("old env\n")
    before = tree(tmp_path)
    r = cli(*args(demo, prefix))
    assert r.code == 2 and "already exists" in r.err and "--force" in r.err
    assert tree(tmp_path) == before


@ON_EACH_INSTALLER
def test_failed_pip_stage_leaves_no_prefix(
    cli: Callable[..., Result], demo: Path, tmp_path: Path
) -> None:
    wheels = tmp_path / "wheels"
    envbuild.wheelhouse(wheels)
    (wheels / "trl-0.12.2-py3-none-any.whl").unlink()  # inject: a companion is missing
    prefix = tmp_path / "env"
    r = cli(*args(demo, prefix, wheels=wheels))
    assert r.code == 1
    assert "pip could not resolve" in r.err and "trl" in r.err
    assert "Traceback" not in r.err
    assert not prefix.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "wheels"]


@ON_EACH_INSTALLER
def test_keep_failed_keeps_and_marks(
    cli: Callable[..., Result], demo: Path, tmp_path: Path
) -> None:
    wheels = tmp_path / "wheels"
    envbuild.wheelhouse(wheels)
    (wheels / "trl-0.12.2-py3-none-any.whl").unlink()
    prefix = tmp_path / "env"
    r = cli(*args(demo, prefix, "--keep-failed", wheels=wheels))
    assert r.code == 1
    marker = json.loads((prefix / "conda-meta" / "conda-unsloth").read_text())
    assert marker["status"] == "failed" and "pip could not resolve" in marker["failure"]


@ON_EACH_INSTALLER
def test_force_keeps_the_old_env_when_the_new_one_fails(
    cli: Callable[..., Result], demo: Path, tmp_path: Path
) -> None:
    prefix = tmp_path / "env"
    assert cli(*args(demo, prefix)).code == 0
    before = tree(prefix)
    wheels = tmp_path / "wheels"
    envbuild.wheelhouse(wheels)
    (wheels / "peft-0.14.0-py3-none-any.whl").unlink()
    r = cli(*args(demo, prefix, "--force", wheels=wheels))
    assert r.code == 1
    assert tree(prefix) == before, "the old env is back, byte for byte"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "env", "wheels"]


@ON_EACH_INSTALLER
def test_force_replaces_after_success(
    cli: Callable[..., Result], demo: Path, tmp_path: Path
) -> None:
    prefix = tmp_path / "env"
    assert cli(*args(demo, prefix)).code == 0
    (prefix / "old-file").write_text("from the old env")
    assert cli(*args(demo, prefix, "--force")).code == 0
    assert not (prefix / "old-file").exists()
    assert env_run(prefix, "import unsloth").returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "env"]


def test_second_concurrent_create_is_refused(
    cli: Callable[..., Result], demo: Path, tmp_path: Path
) -> None:
    prefix = tmp_path / "env"
    with prefixtx.prefix_lock(prefix):  # a first create holds the prefix
        r = cli(*args(demo, prefix))
    assert (
        r.code == 2
        and f"another conda-unsloth create is building {prefix} (pid {os.getpid()})" in r.err
    )
    assert not prefix.exists()


@ON_EACH_INSTALLER
def test_two_create_processes_one_refusal(demo: Path, tmp_path: Path) -> None:
    prefix = tmp_path / "env"
    env = {
        **os.environ,
        "CONDA_UNSLOTH_CACHE": str(tmp_path / "c"),
        "CONDA_UNSLOTH_NVML": "0",
        "CONDA_UNSLOTH_NVIDIA_SMI": "",
    }
    cmd = [sys.executable, "-m", "conda_unsloth", *args(demo, prefix), "-q"]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    results = [(p.returncode, err) for p, (_, err) in zip(procs, outputs, strict=True)]
    codes = sorted(c for c, _ in results)
    assert codes[0] == 0, results
    # the other one was refused: either by the lock while building, or because the env exists
    assert codes[1] == 2 and any(
        ("create is building" in e or "already exists" in e) for _, e in results
    )
    assert env_run(prefix, "import unsloth").returncode == 0


@ON_EACH_INSTALLER
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_mid_install_leaves_no_prefix(demo: Path, tmp_path: Path, sig: int) -> None:
    prefix = tmp_path / "env"
    env = {
        **os.environ,
        "CONDA_UNSLOTH_CACHE": str(tmp_path / "c"),
        "CONDA_UNSLOTH_NVML": "0",
        "CONDA_UNSLOTH_NVIDIA_SMI": "",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "conda_unsloth", *args(demo, prefix)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 120
    while not prefix.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, "create finished before the signal could be sent"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "Traceback" not in err, err
    assert not prefix.exists(), "the half-built prefix was removed"
    assert not list(tmp_path.glob(".env.conda-unsloth*"))


@pytest.fixture
def lock(cli: Callable[..., Result], demo: Path, tmp_path: Path) -> Iterator[Path]:
    out = tmp_path / "unsloth.lock.txt"
    r = cli(
        "solve",
        "-c",
        (demo / "channel").as_uri(),
        "--offline",
        "--cuda",
        "12.1",
        "--lock",
        str(out),
        "--format",
        "explicit",
    )
    assert r.code == 0, r.err
    yield out


def test_from_lock_with_a_tampered_hash_is_refused(
    cli: Callable[..., Result], demo: Path, tmp_path: Path, lock: Path
) -> None:
    lines = lock.read_text().splitlines()
    i = next(n for n, ln in enumerate(lines) if "/pytorch-2.5.1-" in ln)
    url, _digest = lines[i].split("#")
    lines[i] = f"{url}#{'0' * 64}"
    lock.write_text("\n".join(lines) + "\n")
    prefix = tmp_path / "env"
    r = cli(
        "create",
        "-p",
        str(prefix),
        "--from-lock",
        str(lock),
        "--yes",
        "--offline",
        "--pip-find-links",
        str(demo / "wheels"),
    )
    assert r.code != 0 and "sha256 mismatch for pytorch-2.5.1-" in r.err
    assert not prefix.exists() and "Traceback" not in r.err


def test_our_conda_lock_export_carries_each_wheels_url_and_hash(
    cli: Callable[..., Result], demo: Path, tmp_path: Path
) -> None:
    """The conda-lock export of a created env records every pip wheel's url and sha256, and
    --from-lock installs exactly those wheels from their urls: offline, without any
    --pip-find-links, and with the lock's hashes in the new marker."""
    source = tmp_path / "source"
    assert cli(*args(demo, source)).code == 0
    lock = tmp_path / "unsloth-lock.yml"
    r = cli("export", "-p", str(source), "--format", "conda-lock", "-o", str(lock))
    assert r.code == 0, r.err
    copy = tmp_path / "copy"
    r = cli("create", "-p", str(copy), "--from-lock", str(lock), "--offline", "--yes", "--json")
    assert r.code == 0, r.err
    marker = json.loads((copy / "conda-meta" / "conda-unsloth").read_text())
    original = json.loads((source / "conda-meta" / "conda-unsloth").read_text())
    by_name = {p["name"]: (p["url"], p["sha256"]) for p in original["pip"]}
    assert len(marker["pip"]) == 8
    assert {p["name"]: (p["url"], p["sha256"]) for p in marker["pip"]} == by_name


def test_from_lock_for_another_platform_is_refused(
    cli: Callable[..., Result], tmp_path: Path, lock: Path
) -> None:
    lock.write_text(lock.read_text().replace("# platform: linux-64", "# platform: osx-arm64"))
    r = cli("create", "-p", str(tmp_path / "env"), "--from-lock", str(lock), "--yes")
    assert r.code == 2 and "is for osx-arm64, not linux-64" in r.err
    assert not (tmp_path / "env").exists()


@ON_EACH_INSTALLER
def test_from_lock_installs_without_solving(
    cli: Callable[..., Result], demo: Path, tmp_path: Path, lock: Path
) -> None:
    prefix = tmp_path / "env"
    r = cli(
        "create",
        "-p",
        str(prefix),
        "--from-lock",
        str(lock),
        "--yes",
        "--offline",
        "--json",
        "--pip-find-links",
        str(demo / "wheels"),
        *current_args(),
    )
    assert r.code == 0, r.err
    assert (prefix / "conda-meta" / "pytorch-2.5.1-py3.11_cuda12.1_cudnn9.1.0_0.json").exists()
    assert env_run(prefix, "import torch; print(torch.__version__)").stdout.strip() == "2.5.1"
    # the lock's pip part (pins without wheel hashes) is installed too: unsloth is there
    assert (
        env_run(prefix, "import unsloth; print(unsloth.__version__)").stdout.strip()
        == "2024.12.12"
    )


@ON_EACH_INSTALLER
def test_failed_verification_leaves_no_prefix_fake_gpu(
    cli: Callable[..., Result], demo: Path, tmp_path: Path, fake_gpu: Callable[..., Path]
) -> None:
    """A GPU host (a stand-in nvidia-smi) makes create run the real probe inside the new env,
    whose torch is a stand-in without CUDA: verification fails and the env is rolled back."""
    fake_gpu(driver="550.54.14", cuda="12.4", gpus=(("NVIDIA A100-SXM4-80GB", "8.0"),))
    prefix = tmp_path / "env"
    r = cli(*args(demo, prefix))
    assert r.code == 1
    assert "verification failed: " in r.err and "gpu.visible" in r.err
    assert not prefix.exists() and "Traceback" not in r.err


@ON_EACH_INSTALLER
def test_failed_verification_with_keep_failed_keeps_the_report_fake_gpu(
    cli: Callable[..., Result], demo: Path, tmp_path: Path, fake_gpu: Callable[..., Path]
) -> None:
    fake_gpu(driver="550.54.14", cuda="12.4", gpus=(("NVIDIA A100-SXM4-80GB", "8.0"),))
    prefix = tmp_path / "env"
    assert cli(*args(demo, prefix, "--keep-failed")).code == 1
    marker = json.loads((prefix / "conda-meta" / "conda-unsloth").read_text())
    assert marker["status"] == "failed" and marker["failure"].startswith("verification failed: ")
    report = json.loads((prefix / "conda-meta" / "conda-unsloth-verify").read_text())
    assert report["schema"] == "conda-unsloth/verify-report/1"
    assert any(c["status"] == "fail" for c in report["checks"])


def test_a_lock_read_back_takes_noarch_and_build_number_from_the_package(
    demo: Path, lock: Path
) -> None:
    from conda_unsloth.exports.lockread import read_lock

    solved = read_lock(lock, "linux-64")
    mutex = {r.build: r for r in solved.records if r.name == "pytorch-mutex"}["cuda"]
    assert (mutex.noarch, mutex.build_number) == ("generic", 100)  # not guessed from the URL

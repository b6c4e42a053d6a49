"""Fault injection at each stage of `create`: SIGKILL / SIGTERM during install and the pip stage,
a file-size limit standing in for a full disk. Afterwards: no half env, an existing env
untouched, and a rerun succeeds."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import envbuild
from tests.conftest import tree
from tests.micromamba.fixture import (  # noqa: F401
    assert_installer_stopped,
    current_args,
    install_running,
    installer,
    micromamba_exe,
)

# issue 21: the tests marked ON_EACH_INSTALLER run once with `--installer rattler` and once with
# `--installer micromamba` (tests/micromamba/fixture.py; `command` adds the flag)
ON_EACH_INSTALLER = pytest.mark.usefixtures("installer")


def command(demo: Path, prefix: Path, *extra: str) -> list[str]:
    argv = envbuild.create_args(demo, prefix, *extra, *current_args())
    return [sys.executable, "-m", "conda_unsloth", *argv]


def environ(tmp: Path) -> dict[str, str]:
    (tmp / "tmpdir").mkdir(exist_ok=True)
    return {
        **os.environ,
        "CONDA_UNSLOTH_CACHE": str(tmp / "cache"),
        "CONDA_UNSLOTH_NVML": "0",
        "CONDA_UNSLOTH_NVIDIA_SMI": "",
        "TMPDIR": str(tmp / "tmpdir"),
    }


def run(cmd: list[str], tmp: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, capture_output=True, text=True, env=environ(tmp), check=False, timeout=300
    )


def start_and_signal(
    cmd: list[str], tmp: Path, sig: int, when: str, prefix: Path
) -> tuple[int, str]:
    """Start a create; send ``sig`` once ``when`` happens ('prefix' appears, or a progress line
    containing ``when`` is printed)."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environ(tmp)
    )
    seen = []
    deadline = time.monotonic() + 120
    assert proc.stderr is not None
    if when == "prefix":  # the conda packages are being installed (micromamba: it runs)
        while not install_running(prefix) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
    else:
        for line in proc.stderr:
            seen.append(line)
            if when in line:
                break
    assert proc.poll() is None, f"create ended before {when!r}: {''.join(seen)}"
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=120)
    return proc.returncode, "".join(seen) + err


def ok_env(prefix: Path) -> bool:
    p = subprocess.run(
        [str(prefix / "bin" / "python"), "-c", "import torch, unsloth"],
        capture_output=True,
        check=False,
    )
    return p.returncode == 0


@ON_EACH_INSTALLER
def test_sigkill_during_install_then_rerun_succeeds(demo: Path, tmp_path: Path) -> None:
    prefix = tmp_path / "env"
    code, _ = start_and_signal(command(demo, prefix), tmp_path, signal.SIGKILL, "prefix", prefix)
    assert code == -signal.SIGKILL
    assert_installer_stopped(prefix)  # nothing installs on after the create died
    # SIGKILL allows no cleanup: nothing of ours may be left in the temp folder ...
    assert not list((tmp_path / "tmpdir").glob("conda-unsloth*"))
    # ... and the half env is marked as ours and unfinished ...
    rerun = run(command(demo, prefix), tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert "an earlier create was killed before it finished" in rerun.stderr
    assert ok_env(prefix)  # ... and the rerun removed it and built a working env


@ON_EACH_INSTALLER
def test_sigkill_during_force_replace_restores_the_old_env(demo: Path, tmp_path: Path) -> None:
    prefix = tmp_path / "env"
    assert run(command(demo, prefix), tmp_path).returncode == 0
    (prefix / "mine.txt").write_text("user data in the old env")
    before = tree(prefix)
    proc = subprocess.Popen(
        command(demo, prefix, "--force"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environ(tmp_path),
    )
    deadline = time.monotonic() + 120
    while (
        not list(tmp_path.glob(".env.conda-unsloth-backup-*"))
        and proc.poll() is None
        and time.monotonic() < deadline
    ):
        time.sleep(0.002)
    assert proc.poll() is None, "create ended before the old env was moved aside"
    proc.kill()
    proc.communicate(timeout=60)
    # the next create (without --force) puts the old env back and refuses to touch it
    again = run(command(demo, prefix), tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr
    assert "an earlier --force create was killed" in again.stderr
    assert tree(prefix) == before
    assert not list(tmp_path.glob(".env.conda-unsloth*"))


@ON_EACH_INSTALLER
def test_sigterm_during_pip_stage_leaves_nothing(demo: Path, tmp_path: Path) -> None:
    prefix = tmp_path / "env"
    code, err = start_and_signal(
        command(demo, prefix), tmp_path, signal.SIGTERM, "pip stage", prefix
    )
    assert code == 128 + signal.SIGTERM
    assert "interrupted (signal 15)" in err and "Traceback" not in err
    assert not prefix.exists()
    assert run(command(demo, prefix), tmp_path).returncode == 0 and ok_env(prefix)


@ON_EACH_INSTALLER
def test_sigterm_during_force_replace_keeps_the_old_env(demo: Path, tmp_path: Path) -> None:
    prefix = tmp_path / "env"
    assert run(command(demo, prefix), tmp_path).returncode == 0
    before = tree(prefix)
    code, _ = start_and_signal(
        command(demo, prefix, "--force"), tmp_path, signal.SIGTERM, "pip stage", prefix
    )
    assert code == 128 + signal.SIGTERM
    assert tree(prefix) == before
    assert not list(tmp_path.glob(".env.conda-unsloth*"))


def _limit_file_size() -> None:  # runs in the child before exec
    signal.signal(
        signal.SIGXFSZ, signal.SIG_IGN
    )  # a write past the limit fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, 400_000))


def _create_on_a_full_disk(demo: Path, prefix: Path, tmp_path: Path) -> None:
    """A create of ``prefix`` under RLIMIT_FSIZE: it fails with one error line, no traceback."""
    proc = subprocess.run(
        command(demo, prefix),
        capture_output=True,
        text=True,
        env=environ(tmp_path),
        preexec_fn=_limit_file_size,
        check=False,
        timeout=300,
    )
    assert proc.returncode != 0
    assert "conda-unsloth: error:" in proc.stderr and "Traceback" not in proc.stderr


@ON_EACH_INSTALLER
def test_disk_full_simulated_by_a_file_size_limit(demo: Path, tmp_path: Path) -> None:
    """RLIMIT_FSIZE stands in for a full disk: every write past 400 kB fails (EFBIG), as ENOSPC would."""
    prefix = tmp_path / "env"
    _create_on_a_full_disk(demo, prefix, tmp_path)
    assert not prefix.exists()
    assert run(command(demo, prefix), tmp_path).returncode == 0 and ok_env(prefix)


@ON_EACH_INSTALLER
def test_sigterm_during_verification_leaves_nothing_fake_gpu(demo: Path, tmp_path: Path) -> None:
    """A stand-in nvidia-smi makes this host look like a GPU node, so create runs the probe."""
    smi = tmp_path / "nvidia-smi"
    smi.write_text(
        "#!/bin/sh\ncase \"$1\" in\n  --query-gpu=*) echo '0, NVIDIA A100, 550.54.14, 8.0' ;;\n"
        '  *) echo "Driver Version: 550.54.14   CUDA Version: 12.4" ;;\nesac\n'
    )
    smi.chmod(0o755)
    prefix = tmp_path / "env"
    cmd = command(demo, prefix)
    env = {**environ(tmp_path), "CONDA_UNSLOTH_NVIDIA_SMI": str(smi)}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if "verifying on the GPU" in line:
            break
    time.sleep(0.3)  # let the probe start its workers
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert not prefix.exists()
    leftovers = subprocess.run(
        ["pgrep", "-f", str(prefix)], capture_output=True, text=True, check=False
    )
    assert leftovers.stdout.strip() == "", "no probe process outlives the create"


@ON_EACH_INSTALLER
@pytest.mark.parametrize("delay_ms", [0, 5, 20, 60, 150], ids=lambda d: f"{d}ms")
def test_sigterm_at_any_moment_of_the_build_is_never_lost(
    demo: Path, tmp_path: Path, delay_ms: int
) -> None:
    """A signal that lands while a child is being forked used to run our handler inside an
    at-fork hook, where Python swallows the exception: the create went on and exited 0."""
    prefix = tmp_path / "env"
    proc = subprocess.Popen(
        command(demo, prefix),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environ(tmp_path),
    )
    deadline = time.monotonic() + 120
    while not prefix.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    time.sleep(delay_ms / 1000)
    if proc.poll() is not None:
        pytest.skip("the create finished before the signal")
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Exception ignored" not in err and "Traceback" not in err
    assert not prefix.exists()


def _identity(path: Path) -> list[int]:
    st = os.lstat(path)
    return [st.st_dev, st.st_ino]


@ON_EACH_INSTALLER
def test_sigkill_then_user_remakes_the_dir_with_the_freed_inode(
    demo: Path, tmp_path: Path
) -> None:
    """Issue 16 #1: after a SIGKILLed create the user removes the half env and makes a new
    directory at that path; the file system may hand it the freed inode number, so the
    journal's (dev, inode) matches. The next create must leave that directory alone."""
    prefix = tmp_path / "env"
    code, _ = start_and_signal(command(demo, prefix), tmp_path, signal.SIGKILL, "prefix", prefix)
    assert code == -signal.SIGKILL
    journal = tmp_path / ".env.conda-unsloth-journal"
    old = _identity(prefix)
    subprocess.run(["rm", "-rf", str(prefix)], check=True)  # the old inode is freed
    prefix.mkdir()
    (prefix / "thesis.tex").write_text("years of work")
    doc = json.loads(journal.read_text())
    assert doc["prefix_id"] == old
    if _identity(prefix) != old:  # this file system did not reuse it: make the journal match,
        doc["prefix_id"] = _identity(prefix)  # as ext4 does on its own
        journal.write_text(json.dumps(doc))
    rerun = run(command(demo, prefix), tmp_path)
    assert rerun.returncode == 2, rerun.stderr
    assert "not provably the directory" in rerun.stderr and "already exists" in rerun.stderr
    assert "Traceback" not in rerun.stderr
    assert (prefix / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in prefix.iterdir()) == ["thesis.tex"]


@ON_EACH_INSTALLER
def test_disk_full_leaves_no_parent_directory_it_made(demo: Path, tmp_path: Path) -> None:
    """Issue 16 #2: the lock step makes missing parents; a failed create removes them."""
    prefix = tmp_path / "new" / "deeper" / "env"
    _create_on_a_full_disk(demo, prefix, tmp_path)
    assert not (tmp_path / "new").exists()

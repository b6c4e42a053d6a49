"""`conda-unsloth create --installer micromamba` (issue 21 item 2): libmamba through micromamba
solves, our validation judges the solution exactly as a rattler solve's, micromamba installs
exactly that solution; the choice of installer; the supervisor that kills micromamba's process
group; and what micromamba must never touch (the user's HOME, an existing env)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conda_unsloth.micromamba import Micromamba
from conda_unsloth.micromamba.solver import MicromambaSolver
from conda_unsloth.runtime import standalone
from conda_unsloth.solvers.rattler import RattlerSolver
from conda_unsloth.spec import Dep, EnvSpec
from conda_unsloth.target import Target
from tests import envbuild
from tests.conftest import Result, tree


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONDA_UNSLOTH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()


def spec(demo: Path, *specs: str) -> EnvSpec:
    return EnvSpec(None, [(demo / "channel").as_uri()], [Dep(s) for s in specs])


TARGET = Target(platform="linux-64", cuda="12.1")
STACK = (
    "python=3.11",
    "pytorch::pytorch 2.5.1 py3.11_cuda12.1_*",
    "pytorch-cuda=12.1",
    "xformers::xformers 0.0.28.post3 py311_cu12.1.0_pyt2.5.1",
    "pytorch-mutex 1.0 cuda",
    "mkl<2024.1",
    "pip",
)


def test_micromamba_solves_what_rattler_solves(demo: Path, micromamba_exe: Path) -> None:
    s = spec(demo, *STACK)
    mm = MicromambaSolver(Micromamba(micromamba_exe)).solve(s, TARGET, offline=True)
    ra = RattlerSolver().solve(s, TARGET, offline=True)
    key = [(r.name, r.version, r.build, r.url, r.sha256, r.md5, r.depends) for r in mm.records]
    assert key == [
        (r.name, r.version, r.build, r.url, r.sha256, r.md5, r.depends) for r in ra.records
    ]
    assert mm.solver == "libmamba (micromamba 2.8.1)"
    assert mm.channels == ra.channels
    assert "__cuda=12.1=0" in mm.virtual_packages


def test_the_target_cuda_decides_the_build_not_this_host(demo: Path, micromamba_exe: Path) -> None:
    """Without a build pin the CPU build has the higher build number; __cuda comes from the
    target (CONDA_OVERRIDE_CUDA for micromamba), and pytorch-cuda 12.1 needs __cuda."""
    s = spec(demo, "python=3.11", "pytorch 2.5.1", "pytorch-cuda=12.1", "pip")
    solved = MicromambaSolver(Micromamba(micromamba_exe)).solve(s, TARGET, offline=True)
    assert solved.record("pytorch") is not None


def test_unsatisfiable_is_micromambas_explanation(
    cli: Callable[..., Result], demo: Path, tmp_path: Path, micromamba_exe: Path
) -> None:
    f = tmp_path / "env.yml"
    f.write_text(
        f"channels: [{(demo / 'channel').as_uri()}]\ndependencies:\n"
        "  - python=3.11\n  - pytorch 2.5.1 py3.11_cpu*\n  - pytorch-mutex 1.0 cuda\n"
    )
    os.environ["MAMBA_EXE"] = str(micromamba_exe)
    try:
        r = cli("create", "-p", str(tmp_path / "env"), "-f", str(f), "--installer", "micromamba",
                "--offline", "--yes", "--cuda", "12.1")  # fmt: skip
    finally:
        del os.environ["MAMBA_EXE"]
    assert r.code == 1, r.err
    first = next(ln for ln in r.err.splitlines() if ln.startswith("conda-unsloth: error:"))
    assert first.startswith("conda-unsloth: error: micromamba could not solve: ")
    assert "pytorch-mutex ==1.0 cpu" in first and "Traceback" not in r.err
    assert not (tmp_path / "env").exists()


@pytest.mark.parametrize("installer", ["rattler", "micromamba"])
def test_a_solution_our_checks_refuse_is_refused_on_both(
    cli: Callable[..., Result],
    demo: Path,
    tmp_path: Path,
    micromamba_exe: Path,
    installer: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A file that lets the solver pick the CPU pytorch (no build pin, no pytorch-cuda): both
    solvers pick it, and the same validation refuses it before anything is installed."""
    monkeypatch.setenv("MAMBA_EXE", str(micromamba_exe))
    f = tmp_path / "env.yml"
    f.write_text(
        f"channels: [{(demo / 'channel').as_uri()}]\n"
        "dependencies:\n  - python=3.11\n  - pytorch 2.5.1\n  - pip\n"
    )
    r = cli("create", "-p", str(tmp_path / "env"), "-f", str(f), "--installer", installer,
            "--offline", "--yes", "--cuda", "12.1", "--json")  # fmt: skip
    assert r.code != 0
    doc = json.loads(r.out)
    assert doc["error"] == "ValidationError" and "CPU build of pytorch" in doc["message"], doc
    assert not (tmp_path / "env").exists()


def test_a_missing_local_channel_is_one_line(
    cli: Callable[..., Result],
    tmp_path: Path,
    micromamba_exe: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MAMBA_EXE", str(micromamba_exe))
    r = cli("create", "-p", str(tmp_path / "env"), "-c", (tmp_path / "nope").as_uri(),
            "--installer", "micromamba", "--yes", "--cuda", "12.1")  # fmt: skip
    errors = [ln for ln in r.err.splitlines() if ln.startswith("conda-unsloth: error:")]
    assert r.code == 2 and len(errors) == 1 and "does not exist or is not a directory" in errors[0]
    assert "Traceback" not in r.err


def test_an_unreachable_channel_says_why(
    cli: Callable[..., Result],
    tmp_path: Path,
    micromamba_exe: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """micromamba heads its errors "Multiple errors occurred:": the line we print is the
    reason under that heading (the connection refused), not the heading."""
    monkeypatch.setenv("MAMBA_EXE", str(micromamba_exe))
    r = cli("create", "-p", str(tmp_path / "env"), "-c", "http://127.0.0.1:9/chan",
            "--installer", "micromamba", "--dry-run", "--cuda", "12.1")  # fmt: skip
    errors = [ln for ln in r.err.splitlines() if ln.startswith("conda-unsloth: error:")]
    assert r.code != 0 and len(errors) == 1, r.err
    assert "127.0.0.1" in errors[0] and "connect" in errors[0].lower(), errors[0]
    assert not errors[0].rstrip().endswith(":")


def test_micromamba_never_writes_the_users_home(
    cli: Callable[..., Result], demo: Path, tmp_path: Path, micromamba_exe: Path
) -> None:
    """micromamba registers every env it touches in $HOME/.conda/environments.txt: ours gets a
    HOME of its own (in our cache folder)."""
    os.environ["MAMBA_EXE"] = str(micromamba_exe)
    try:
        argv = envbuild.create_args(demo, tmp_path / "env", "--installer", "micromamba")
        r = cli(*argv, "--json")
    finally:
        del os.environ["MAMBA_EXE"]
    assert r.code == 0, r.err
    assert tree(tmp_path / "home") == {}
    marker = json.loads((tmp_path / "env" / "conda-meta" / "conda-unsloth").read_text())
    assert marker["solver"] == "libmamba (micromamba 2.8.1)"
    assert marker["request"]["unsloth_installer"] == "micromamba"


# ----------------------------------------------------------------------------- the choice


def test_without_micromamba_the_installer_flag_is_one_line(
    cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MAMBA_EXE", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no micromamba on it
    r = cli("create", "-p", str(tmp_path / "env"), "--installer", "micromamba", "--yes")
    assert r.code == 2
    assert r.err.splitlines()[0] == (  # before any planning or notice
        "conda-unsloth: error: --installer micromamba: no micromamba found (neither $MAMBA_EXE "
        "nor micromamba on PATH)"
    )
    assert not (tmp_path / "env").exists()


def test_installer_conda_standalone_is_refused(cli: Callable[..., Result], tmp_path: Path) -> None:
    r = cli("create", "-p", str(tmp_path / "env"), "--installer", "conda", "--yes")
    assert r.code == 2 and "--installer conda needs conda" in r.err


@pytest.mark.parametrize(
    ("mamba", "conda", "expected"),
    [(True, False, "micromamba"), (True, True, None), (False, False, None)],
    ids=["micromamba-no-conda", "micromamba-and-conda", "neither"],
)
def test_default_installer(
    mamba: bool, conda: bool, expected: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """micromamba by default only where the user has it and no conda; else py-rattler."""
    exe = tmp_path / "bin" / "micromamba"
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    monkeypatch.delenv("CONDA_EXE", raising=False)
    if mamba:
        monkeypatch.setenv("MAMBA_EXE", str(exe))
    else:
        monkeypatch.delenv("MAMBA_EXE", raising=False)
    if conda:
        monkeypatch.setenv("CONDA_EXE", "/opt/conda/bin/conda")
    rt = standalone()
    assert rt.auto_installer() == expected
    chosen = rt.with_installer(None)
    assert chosen.default_solver == (expected or "rattler")


# ----------------------------------------------------------------------------- the supervisor


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_the_process_group_dies_with_a_killed_create(tmp_path: Path) -> None:
    """A stand-in for a create (a Python process) runs a supervised command that starts a
    grandchild which never writes (no SIGPIPE could stop it); SIGKILL the create: the whole
    group is gone at once."""
    pids = tmp_path / "pids"
    create = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, subprocess, sys, time\n"
            "subprocess.Popen([sys.executable, '-m', 'conda_unsloth.micromamba.supervise',"
            " str(os.getpid()), '', 'sh', '-c', 'sleep 300 & echo $! $$ > "
            + str(pids)
            + "; wait'],"
            " start_new_session=True)\n"
            "time.sleep(300)\n",
        ]
    )
    deadline = time.monotonic() + 30
    while not (pids.exists() and pids.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.02)
    grandchild, child = (int(p) for p in pids.read_text().split())
    assert _alive(grandchild) and _alive(child)
    create.send_signal(signal.SIGKILL)
    create.wait()
    deadline = time.monotonic() + 5
    while (_alive(grandchild) or _alive(child)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(grandchild) and not _alive(child)


def test_the_supervisor_passes_the_exit_code_on(tmp_path: Path) -> None:
    code = subprocess.call(
        [sys.executable, "-m", "conda_unsloth.micromamba.supervise", str(os.getpid()), "",
         "sh", "-c", "exit 7"],
        start_new_session=True,
    )  # fmt: skip
    assert code == 7

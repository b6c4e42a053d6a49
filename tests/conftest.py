"""Shared fixtures. Every test runs on a host with no GPU unless it puts a stand-in nvidia-smi
in place itself (see ``fake_gpu``): NVML is skipped and no real nvidia-smi is consulted."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from conda_unsloth.__main__ import main


@pytest.fixture(autouse=True)
def _no_real_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONDA_UNSLOTH_NVML", "0")
    monkeypatch.setenv("CONDA_UNSLOTH_NVIDIA_SMI", "")
    monkeypatch.delenv("CONDA_OVERRIDE_CUDA", raising=False)
    monkeypatch.delenv("CONDA_OVERRIDE_GLIBC", raising=False)
    monkeypatch.delenv("CONDA_UNSLOTH_KNOWLEDGE", raising=False)


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The offline demo (a local channel with this machine's python, pip and stand-ins for the
    GPU stack, plus a wheelhouse for the pip companions), built once per test session. Tests
    read it; none may change it."""
    from tests import envbuild

    return envbuild.build_demo(tmp_path_factory.mktemp("demo"))


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run the real standalone CLI in-process: ``cli("env", "--cuda", "12.1")``."""

    def run(*argv: str) -> Result:
        code = main(list(argv))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


FAKE_SMI = """#!/bin/sh
# Stand-in for nvidia-smi on a machine without a GPU (test edge only).
case "$1" in
  --query-gpu=*) printf '%s\\n' {rows} ;;
  *) echo "| NVIDIA-SMI {driver}   Driver Version: {driver}   CUDA Version: {cuda}     |" ;;
esac
"""


@pytest.fixture
def fake_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """Put a stand-in nvidia-smi in place that reports the given driver, CUDA and GPUs."""

    def install(
        driver: str = "550.54.14",
        cuda: str = "12.4",
        gpus: tuple[tuple[str, str], ...] = (("NVIDIA H100 80GB HBM3", "9.0"),),
    ) -> Path:
        rows = " ".join(f"'{i}, {name}, {driver}, {cc}'" for i, (name, cc) in enumerate(gpus))
        exe = tmp_path / "nvidia-smi"
        exe.write_text(FAKE_SMI.format(rows=rows, driver=driver, cuda=cuda))
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        monkeypatch.setenv("CONDA_UNSLOTH_NVIDIA_SMI", str(exe))
        return exe

    return install


def tree(root: Path) -> dict[str, bytes]:
    """A snapshot of every file under root (for 'nothing was written' assertions)."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            out[str(p.relative_to(root))] = p.read_bytes()
    return out

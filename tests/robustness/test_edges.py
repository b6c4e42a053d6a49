"""Edges that used to end in a traceback, a hang or a silent wrong result (issue 16): each is a
one-line error with a non-zero exit, or works, with the output's encoding and the signals a
user may send."""

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

from tests.conftest import Result
from tests.envbuild import create_args


@pytest.mark.parametrize("value", ["inf", "1e308", "nan", "-1", "0", "86401"])
def test_verify_timeout_out_of_range_is_one_line(
    cli: Callable[..., Result], tmp_path: Path, value: str
) -> None:
    (tmp_path / "env" / "conda-meta").mkdir(parents=True)
    r = cli("verify", "-p", str(tmp_path / "env"), "--timeout", value)
    assert r.code == 2 and "Traceback" not in r.err
    assert r.err.splitlines()[0].startswith(
        "conda-unsloth: error: --timeout must be a positive number"
    )


@pytest.mark.parametrize("value", ["１２.４", "١٢.٤", "12.4\n"])
def test_override_cuda_takes_ascii_digits_only(
    cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CONDA_OVERRIDE_CUDA", value)
    r = cli("env", "--dry-run")
    if value.strip() == "12.4":  # surrounding blanks are fine, as in conda
        assert r.code == 0, r.err
        return
    assert r.code == 2
    assert "CONDA_OVERRIDE_CUDA" in r.err.splitlines()[0] and "Traceback" not in r.err


def _run(argv: list[str], tmp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conda_unsloth", *argv],
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
        timeout=120,
        env={**os.environ, "CONDA_UNSLOTH_CACHE": str(tmp / "cache"), **env},
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["create", "-p", "{tmp}/ünsloth-env", "-c", "{tmp}/ünsloth-channel", "--dry-run"],
        ["env", "-n", "ünsloth", "--dry-run"],
    ],
    ids=["prefix", "name"],
)
def test_ascii_output_encoding_with_a_non_ascii_path(tmp_path: Path, argv: list[str]) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    r = _run(args, tmp_path, PYTHONIOENCODING="ascii")
    assert "Traceback" not in r.stderr and "UnicodeEncodeError" not in r.stderr
    assert r.returncode in (0, 2), r.stderr  # a missing local channel: one line naming it
    assert "\\xfc" in r.stdout + r.stderr  # the path is written, escaped


def test_nvidia_smi_printing_bytes_that_are_not_utf8_fake_gpu(
    cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_bytes(
        b"#!/bin/sh\n"
        b'case "$1" in --query-gpu=*) printf "0, NVIDIA \\377\\376 H100, 550.54.14, 9.0\\n";;\n'
        b'*) echo "| NVIDIA-SMI 550.54.14  Driver Version: 550.54.14  CUDA Version: 12.4 |";;\n'
        b"esac\n"
    )
    smi.chmod(0o755)
    monkeypatch.setenv("CONDA_UNSLOTH_NVIDIA_SMI", str(smi))
    r = cli("env", "--dry-run", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["target"]["cuda"] == "12.1" and doc["target"]["gpu_archs"] == ["9.0"]


def test_building_for_another_machine_skips_and_records_verification(
    cli: Callable[..., Result], demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CONDA_OVERRIDE_CUDA=12.1 on a host without a GPU, as the README says to do on a login
    node: the env is built, verification is skipped and the marker says why."""
    monkeypatch.setenv("CONDA_UNSLOTH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CONDA_OVERRIDE_CUDA", "12.1")
    prefix = tmp_path / "env"
    r = cli(*create_args(demo, prefix), "--json")
    assert r.code == 0, r.err
    verification = json.loads(r.out)["verification"]
    assert verification["verdict"] == "skipped"
    assert "building for another machine (CONDA_OVERRIDE_CUDA=12.1)" in verification["reason"]
    marker = json.loads((prefix / "conda-meta" / "conda-unsloth").read_text())
    assert marker["status"] == "ok" and marker["verification"]["verdict"] == "skipped"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_while_planning_ends_the_run_with_one_message_fake_gpu(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """Host detection (planning) waits on an nvidia-smi that hangs: every signal a user may send
    is reported the same way, exit 128+N."""
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\nexec sleep 60\n")
    smi.chmod(0o755)
    env = {**os.environ, "CONDA_UNSLOTH_NVIDIA_SMI": str(smi), "CONDA_UNSLOTH_NVML": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "conda_unsloth", "env", "-o", str(tmp_path / "e.yml")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    time.sleep(1.5)
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + sig, err
    assert err.strip().splitlines() == [
        f"conda-unsloth: interrupted (signal {int(sig)}); nothing was left half-done"
    ]
    assert not (tmp_path / "e.yml").exists()

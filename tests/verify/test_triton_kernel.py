"""The probe's Triton kernel file, compiled and run for real by the real triton 3.6.0 in its
interpreter mode (``TRITON_INTERPRET=1`` runs @triton.jit kernels on the CPU). Downloads the
~190 MB triton wheel from PyPI: marked slow."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from conda_unsloth.verify import KERNEL
from tests.verify.conftest import Env, run_probe

pytestmark = pytest.mark.slow

RUN = """
import importlib.util, sys, torch
spec = importlib.util.spec_from_file_location("kernel", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
exact, detail = module.run_add(torch, "cpu", 5000)
print(exact, detail)
"""


@pytest.fixture(scope="module")
def triton_env(pypi_envs: Callable[..., Env]) -> Env:
    return pypi_envs("triton==3.6.0", "numpy")  # the interpreter needs numpy


def test_kernel_compiles_and_adds_exactly_in_the_interpreter(triton_env: Env) -> None:
    proc = subprocess.run(
        [str(triton_env.python), "-I", "-c", RUN, str(KERNEL)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "TRITON_INTERPRET": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "True triton 3.6.0: vector add of 5000 floats, max |diff| 0"


def test_probe_fails_the_kernel_without_gpu_when_triton_is_installed(
    triton_env: Env, tmp_path: Path
) -> None:
    run = run_probe(triton_env, "--checks", "triton", tmp=tmp_path)
    c = run.check("triton.kernel")
    assert (c["status"], c["required"], c["remedy"]) == ("fail", True, "F4")
    assert c["detail"] == (
        "needs a CUDA device; none is usable: torch 2.13.0+cpu is a CPU build (see gpu.visible)"
    )
    assert run.code == 1

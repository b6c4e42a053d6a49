"""The seed bug for real: the actual xformers 0.0.27.post1 wheel (Python code as shipped; its
CUDA extension cannot load next to the CPU torch 2.13.0) makes the dispatch check fail with the
seed's error text, and 0.0.27.post2 (the fix) passes.

Downloads two ~21 MB wheels (+ numpy, which xformers.ops imports) from PyPI: marked slow.
0.0.27.post1 stands for the 0.0.27 pair (known issue F1 lists both): the 0.0.27 wheel is 164 MB.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Result
from tests.verify.conftest import Env, run_probe

pytestmark = pytest.mark.slow

SEED = (
    "TypeError: Multiple dispatch failed for 'torch._ops.aten.to.dtype_layout'; all "
    "__torch_dispatch__ handlers returned NotImplemented:"
)


def test_xformers_0_0_27_post1_fails_the_dispatch_check(
    pypi_envs: Callable[..., Env], tmp_path: Path
) -> None:
    env = pypi_envs("xformers==0.0.27.post1", "numpy")
    run = run_probe(env, "--checks", "seed,xformers.extension,xformers.build", tmp=tmp_path)
    seed = run.check("seed.dispatch")
    assert (seed["status"], seed["remedy"], seed["required"]) == ("fail", "F1", True)
    assert SEED in seed["detail"]
    assert seed["detail"].startswith(
        "xformers 0.0.27.post1: LowerTriangularMask().to('cpu') under inference_mode raised"
    )
    assert "xformers.ops.fmha.attn_bias.LowerTriangularMask" in seed["data"]["error"]
    # the wheel's extension was built for torch 2.4.0+cu121: it cannot load here
    ext = run.check("xformers.extension")
    assert (ext["status"], ext["remedy"]) == ("fail", "F2")
    assert "built for torch 2.4.0+cu121 / CUDA 12.1" in ext["detail"]
    build = run.check("xformers.build")
    assert (build["status"], build["remedy"]) == ("fail", "F2")
    assert build["data"]["build_torch"] == "2.4.0+cu121"
    assert run.code == 1


def test_xformers_0_0_27_post2_passes_the_dispatch_check(
    pypi_envs: Callable[..., Env], tmp_path: Path
) -> None:
    env = pypi_envs("xformers==0.0.27.post2", "numpy")
    run = run_probe(env, "--checks", "seed", tmp=tmp_path)
    seed = run.check("seed.dispatch")
    assert seed["status"] == "pass", seed
    assert seed["detail"] == (
        "xformers 0.0.27.post2 LowerTriangularMask().to('cpu') ok; "
        "aten.to.dtype_layout(float16, strided, cpu) ok"
    )
    assert run.code == 0


def test_verify_verb_names_the_seed_fix(
    pypi_envs: Callable[..., Env], cli: Callable[..., Result]
) -> None:
    env = pypi_envs("xformers==0.0.27.post1", "numpy")
    r = cli("verify", "-p", str(env.prefix), "--checks", "seed")
    assert r.code == 1
    assert "seed.dispatch" in r.out
    assert "F1 xformers 0.0.27/0.0.27.post1 attention bias breaks Tensor.to()" in r.out
    assert 'pip install --no-deps "xformers==0.0.27.post2"' in r.out

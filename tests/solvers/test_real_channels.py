"""The planned pytorch-profile spec (python 3.11, CUDA 12.1) solved by rattler against the real
pytorch / nvidia / conda-forge repodata subsets in shared/data/real-channels, plus one
xformers record built from the xformers recipe's facts (the real data has none).

The real data stops at pytorch 2.4.1 and has python 3.11 CUDA builds only for 2.2.0-2.3.1, so
the plan's pytorch/torchtriton/xformers pins are moved to 2.3.0 (what the data has; 2.3.1
would pair with xformers 0.0.27, known issue F1)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from conda_unsloth.spec import Dep
from conda_unsloth.validate import check_pytorch, check_rules, check_triton, check_xformers
from tests.realdata import REAL_CHANNELS
from tests.typed import present

from .conftest import KB, plan

REAL = REAL_CHANNELS
SET = REAL / "pixi-multi-machine"

pytestmark = pytest.mark.skipif(
    not (SET / "pytorch" / "linux-64" / "repodata.json").is_file(),
    reason=f"real channel data not present at {SET} (set CONDA_UNSLOTH_REAL_CHANNELS)",
)
pytest.importorskip("rattler")

XFORMERS = "xformers 0.0.26.post1 py311_cu12.1.0_pyt2.3.0"


@pytest.fixture
def xformers_channel(tmp_path: Path) -> str:
    from tests.channels import Pkg, write_channel

    # recipe facts (compat.md 2a): build py{py}_cu{cuda}_pyt{torch}, run pytorch={torch},
    # pytorch-cuda >=12.0,<13.0 for cu12.1.0 builds. The real tag built py3.9/3.10 only.
    pkg = Pkg(
        "xformers",
        "0.0.26.post1",
        "py311_cu12.1.0_pyt2.3.0",
        depends=("python >=3.11,<3.12.0a0", "pytorch 2.3.0.*", "pytorch-cuda >=12.0,<13.0"),
    )
    return write_channel(tmp_path / "xformers", [pkg], artifacts=False).as_uri()


def test_planned_spec_on_real_channels_picks_cuda_12_1_build(xformers_channel: str) -> None:
    from conda_unsloth.solvers.rattler import RattlerSolver

    sel, spec = plan(cuda="12.1", python="3.11", torch="2.4.1")
    repins = {
        "pytorch": "pytorch::pytorch=2.3.0=py3.11_cuda12.1_*",
        "torchtriton": "torchtriton=2.3.0",
        "xformers": "xformers::xformers=0.0.26.post1=py311_cu12.1.0_pyt2.3.0",
    }
    conda = []
    for d in spec.conda:
        name = re.split(r"[ =<>!]", d.spec.split("::")[-1], maxsplit=1)[0]
        if name == "pip":  # the real subsets carry no pip record
            continue
        conda.append(Dep(repins.get(name, d.spec), d.why))
    channels = {
        "pytorch": (SET / "pytorch").as_uri(),
        "nvidia": (SET / "nvidia").as_uri(),
        "xformers": xformers_channel,
        "conda-forge": (SET / "conda-forge").as_uri(),
    }
    assert spec.channels == ["pytorch", "nvidia", "xformers", "conda-forge"]
    spec = replace(spec, conda=conda, channels=[channels[c] for c in spec.channels[:4]])

    solved = RattlerSolver().solve(spec, sel.target)

    pt = solved.record("pytorch")
    assert pt is not None
    assert (pt.version, pt.build, pt.channel_name) == (
        "2.3.0",
        "py3.11_cuda12.1_cudnn8.9.2_0",
        "pytorch",
    )
    assert pt.sha256 is not None and pt.url.endswith(
        "/linux-64/pytorch-2.3.0-py3.11_cuda12.1_cudnn8.9.2_0.tar.bz2"
    )
    assert present(solved.record("pytorch-cuda"), "pytorch-cuda").version == "12.1"
    assert present(solved.record("pytorch-mutex"), "pytorch-mutex").build == "cuda"
    assert present(solved.record("cuda-runtime"), "cuda-runtime").channel_name == "nvidia"
    xf = solved.record("xformers")
    assert xf is not None and f"{xf.name} {xf.version} {xf.build}" == XFORMERS
    # the stack checks pass ...
    assert check_pytorch(solved, sel.target) == []
    assert check_xformers(solved, requested=True) == []
    assert check_triton(solved) == []
    # ... and the rules flag exactly what is synthetic about this env: a py311 build of an
    # xformers the channel only built for py3.9/3.10 (F14), and pytorch 2.3.0 under the
    # unsloth release planned for torch 2.4.1, which requires torch>=2.4 (U1).
    assert sorted(v.split(" ", 1)[0] for v in check_rules(solved, KB)) == ["F14", "U1"]

"""Fully pinned environment.yml: read back by our CEP-24 reader, every record pinned to
``name version build`` (the form conda, micromamba, rattler and conda-lock read alike:
tests/micromamba), channels in order and no ``nodefaults``, conda's torch/triton pinned for pip,
no credentials."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from conda_unsloth.exports.environment import export
from conda_unsloth.redact import has_credentials
from conda_unsloth.solvers.base import SolvedEnv
from conda_unsloth.spec import read


def test_round_trip_pins_everything(solved_env: SolvedEnv, tmp_path: Path) -> None:
    text = export(solved_env)
    path = tmp_path / "environment.yml"
    path.write_text(text)
    env = read(path)
    assert env.name == "unsloth"
    assert env.channels == [
        "https://conda.anaconda.org/pytorch",
        "https://mirror.example.org/nvidia",
        "https://mirror.example.org/conda-forge",
    ]
    assert sorted(env.conda_specs()) == sorted(
        f"{r.name} {r.version} {r.build}" for r in solved_env.records
    )
    assert "pytorch 2.5.1 py3.11_cuda12.1_cudnn9.1.0_0" in env.conda_specs()
    assert env.pip_requirements() == ["unsloth==2024.12.12", "peft==0.14.0"]
    # conda's torch and triton are pinned for pip (read back as constraints, not requirements)
    assert [d.spec for d in env.pip_constraints] == ["torch==2.5.1", "triton==3.1.0"]
    assert not has_credentials(text)
    assert text.startswith("# Fully pinned by conda-unsloth")
    # the header says how each tool rebuilds it from these channels only
    assert "micromamba create -f THIS_FILE --strict-channel-priority --override-channels" in text
    assert (
        "conda create --file THIS_FILE --override-channels -c https://conda.anaconda.org/pytorch"
        " -c https://mirror.example.org/nvidia -c https://mirror.example.org/conda-forge" in text
    )


def test_unpinned_pip_requirements_are_kept(solved_env: SolvedEnv, tmp_path: Path) -> None:
    solved = replace(
        solved_env,
        extra={
            "pip_unpinned": ("unsloth", "transformers>=4.46", "zoo @ git+https://github.com/u/z")
        },
    )
    path = tmp_path / "environment.yml"
    path.write_text(export(solved))
    assert read(path).pip_requirements() == [
        "unsloth==2024.12.12",
        "peft==0.14.0",
        "unsloth",
        "transformers>=4.46",
        "zoo @ git+https://github.com/u/z",
    ]

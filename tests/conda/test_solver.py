"""The libmamba backend through conda. The scoping helpers are pure and run everywhere; the
solves need a real conda with conda-libmamba-solver (marked conda: the conda lane)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from conda_unsloth.conda.solver import (
    CondaLibmambaSolver,
    _qualified_specs,
    scoped_env,
    target_overrides,
)
from conda_unsloth.errors import SpecError
from conda_unsloth.spec import Dep, EnvSpec
from conda_unsloth.target import CudaFrom, Target

if TYPE_CHECKING:
    from conda.base.context import Context  # conda's settings object (untyped here)

T121 = Target("linux-64", "12.1", glibc="2.36")


def test_target_overrides_come_from_the_target_not_the_host() -> None:
    assert target_overrides(T121) == {
        "CONDA_OVERRIDE_CUDA": "12.1",
        "CONDA_OVERRIDE_GLIBC": "2.36",
        "CONDA_OVERRIDE_LINUX": "5.15",
        "CONDA_OVERRIDE_ARCHSPEC": "x86_64",
    }
    driver = Target("linux-aarch64", "12.1", driver_cuda="12.4", cuda_from=CudaFrom.DRIVER)
    assert target_overrides(driver) == {
        "CONDA_OVERRIDE_CUDA": "12.4",
        "CONDA_OVERRIDE_GLIBC": "2.28",
        "CONDA_OVERRIDE_LINUX": "5.15",
        "CONDA_OVERRIDE_ARCHSPEC": "aarch64",
    }


@pytest.mark.parametrize("channels", [[], ["nodefaults"]], ids=["no-channels", "only-nodefaults"])
def test_no_channels_is_a_spec_error_not_the_condarc_channels(channels: list[str]) -> None:
    """Checked before conda is even imported: runs with or without conda."""
    with pytest.raises(SpecError) as info:
        CondaLibmambaSolver().solve(EnvSpec(None, channels, [Dep("python=3.11")]), T121)
    assert info.value.message == "no channels to solve with"


def test_scoped_env_restores_also_on_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONDA_OVERRIDE_CUDA", "11.8")
    monkeypatch.delenv("CONDA_OVERRIDE_GLIBC", raising=False)
    with (
        pytest.raises(RuntimeError),
        scoped_env({"CONDA_OVERRIDE_CUDA": "12.1", "CONDA_OVERRIDE_GLIBC": "2.36"}),
    ):
        assert os.environ["CONDA_OVERRIDE_CUDA"] == "12.1"
        assert os.environ["CONDA_OVERRIDE_GLIBC"] == "2.36"
        raise RuntimeError("solver failed")
    assert os.environ["CONDA_OVERRIDE_CUDA"] == "11.8"
    assert "CONDA_OVERRIDE_GLIBC" not in os.environ


def test_qualified_specs_follow_replacement_channels() -> None:
    specs = ["pytorch::pytorch=2.5.1=py3.11_cuda12.1_*", "python=3.11", "conda-forge::pip"]
    assert _qualified_specs(specs, ["/srv/mirror/pytorch", "conda-forge"]) == [
        "file:///srv/mirror/pytorch::pytorch=2.5.1=py3.11_cuda12.1_*",
        "python=3.11",
        "conda-forge::pip",
    ]


# ----------------------------------------------------------------------------- with conda


@pytest.fixture
def libmamba() -> CondaLibmambaSolver:
    return CondaLibmambaSolver()


@pytest.mark.conda
@pytest.mark.parametrize(
    "cuda", ["11.8", "12.1", "12.4"], ids=["cuda11.8", "cuda12.1", "cuda12.4"]
)
def test_libmamba_pytorch_profile(
    libmamba: CondaLibmambaSolver, tmp_path: Path, cuda: str
) -> None:
    from dataclasses import replace

    from conda_unsloth import knowledge
    from conda_unsloth.host import Host
    from conda_unsloth.select import Request, select
    from conda_unsloth.spec import from_selection
    from conda_unsloth.validate import validate
    from tests.channels import write_pytorch_profile

    kb = knowledge.load()
    sel = select(Request(cuda=cuda, python="3.11"), Host(platform="linux-64", glibc="2.36"), kb)
    spec = replace(from_selection(sel, None, None), channels=write_pytorch_profile(tmp_path))
    before = dict(os.environ)
    solved = libmamba.solve(spec, sel.target)
    assert dict(os.environ) == before  # overrides scoped
    pt = solved.record("pytorch")
    assert pt is not None and pt.build == f"py3.11_cuda{cuda}_cudnn9.1.0_0"
    assert solved.solver.startswith("libmamba (conda ")
    validate(solved, kb, sel.target)


@pytest.fixture
def conda_context() -> Context:
    from conda.base.context import context

    return context


@pytest.mark.conda
@pytest.mark.parametrize(
    ("condarc_offline", "flag", "expected"),
    [(True, False, True), (False, True, True), (False, False, False)],
    ids=["condarc-offline", "flag-offline", "online"],
)
def test_scope_keeps_condas_own_offline_setting(
    conda_context: Context, condarc_offline: bool, flag: bool, expected: bool
) -> None:
    from conda_unsloth.conda.solver import target_scope

    with conda_context._override("offline", condarc_offline):
        with target_scope(conda_context, T121, offline=flag):
            assert conda_context.offline is expected
        assert conda_context.offline is condarc_offline


@pytest.mark.conda
def test_scope_presents_the_targets_virtual_packages_not_the_hosts(
    conda_context: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conda_unsloth.conda.solver import target_scope

    monkeypatch.setenv("CONDA_OVERRIDE_ARCHSPEC", "zen4")
    monkeypatch.setenv("CONDA_OVERRIDE_LINUX", "6.8.0")
    with target_scope(conda_context, T121, offline=False) as seen:
        vps = {v.split("=", 1)[0]: v for v in seen}
        assert vps["__cuda"] == "__cuda=12.1=0"
        assert vps["__glibc"] == "__glibc=2.36=0"
        assert vps["__linux"] == "__linux=5.15=0"
        assert vps["__archspec"] == "__archspec=1=x86_64"
        assert conda_context.subdir == "linux-64"
    assert os.environ["CONDA_OVERRIDE_ARCHSPEC"] == "zen4"
    assert os.environ["CONDA_OVERRIDE_LINUX"] == "6.8.0"


@pytest.mark.conda
def test_solve_reports_the_virtual_packages_it_used_classic_backend(
    conda_context: Context, tmp_path: Path
) -> None:
    """The whole adapter on real local channels, with conda's classic solver standing in for
    the libmamba plugin where conda-libmamba-solver is not installed."""
    from conda.core.solve import Solver as Classic

    from tests.channels import write_pytorch_profile

    spec = EnvSpec(
        None,
        write_pytorch_profile(tmp_path),
        [Dep("python=3.11"), Dep("pytorch=2.5.1"), Dep("pytorch-cuda=12.1")],
        pip=[Dep("unsloth"), Dep("peft==0.14.0")],
    )
    before = dict(os.environ)
    solved = CondaLibmambaSolver(backend=Classic).solve(spec, T121)
    assert dict(os.environ) == before
    assert "__archspec=1=x86_64" in solved.virtual_packages
    assert "__linux=5.15=0" in solved.virtual_packages
    assert "__cuda=12.1=0" in solved.virtual_packages
    pt = solved.record("pytorch")
    assert pt is not None and pt.build == "py3.11_cuda12.1_cudnn9.1.0_0"
    assert [(p.name, p.version) for p in solved.pip] == [("peft", "0.14.0")]
    assert solved.extra["pip_unpinned"] == ("unsloth",)


@pytest.mark.conda
def test_libmamba_unsatisfiable_carries_its_explanation(
    libmamba: CondaLibmambaSolver, tmp_path: Path
) -> None:
    from conda_unsloth.errors import UnsolvableError
    from conda_unsloth.spec import Dep, EnvSpec
    from tests.channels import write_pytorch_profile

    spec = EnvSpec(
        None, write_pytorch_profile(tmp_path), [Dep("python=3.12"), Dep("xformers::xformers")]
    )
    with pytest.raises(UnsolvableError) as info:
        libmamba.solve(spec, T121)
    assert "xformers" in info.value.message

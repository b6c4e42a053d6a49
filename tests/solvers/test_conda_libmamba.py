"""The libmamba backend through conda. The scoping helpers are pure and run everywhere; the
solves need a real conda with conda-libmamba-solver (skipped where conda is absent)."""

from __future__ import annotations

import os

import pytest

from conda_unsloth.select import Target
from conda_unsloth.solvers.conda_libmamba import _qualified_specs, scoped_env, target_overrides

T121 = Target("linux-64", "12.1", (), None, "2.36", "--cuda")


def test_target_overrides_come_from_the_target_not_the_host() -> None:
    assert target_overrides(T121) == {
        "CONDA_OVERRIDE_CUDA": "12.1",
        "CONDA_OVERRIDE_GLIBC": "2.36",
    }
    driver = Target("linux-64", "12.1", (), "12.4", None, "driver")
    assert target_overrides(driver) == {
        "CONDA_OVERRIDE_CUDA": "12.4",
        "CONDA_OVERRIDE_GLIBC": "2.28",
    }


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
def libmamba():  # type: ignore[no-untyped-def]
    pytest.importorskip("conda", reason="needs a real conda installation")
    pytest.importorskip("conda_libmamba_solver", reason="needs conda-libmamba-solver")
    from conda_unsloth.solvers.conda_libmamba import CondaLibmambaSolver

    return CondaLibmambaSolver()


@pytest.mark.conda
@pytest.mark.parametrize(
    "cuda", ["11.8", "12.1", "12.4"], ids=["cuda11.8", "cuda12.1", "cuda12.4"]
)
def test_libmamba_pytorch_profile(libmamba, tmp_path, cuda: str) -> None:  # type: ignore[no-untyped-def]
    import dataclasses

    from conda_unsloth import knowledge
    from conda_unsloth.host import Host
    from conda_unsloth.select import Request, select
    from conda_unsloth.spec import from_selection
    from conda_unsloth.validate import validate
    from tests.channels import write_pytorch_profile

    kb = knowledge.load()
    sel = select(Request(cuda=cuda, python="3.11"), Host(platform="linux-64", glibc="2.36"), kb)
    spec = dataclasses.replace(
        from_selection(sel, None, None), channels=write_pytorch_profile(tmp_path)
    )
    before = dict(os.environ)
    solved = libmamba.solve(spec, sel.target)
    assert dict(os.environ) == before  # overrides scoped
    pt = solved.record("pytorch")
    assert pt is not None and pt.build == f"py3.11_cuda{cuda}_cudnn9.1.0_0"
    assert solved.solver.startswith("libmamba (conda ")
    validate(solved, kb, sel.target)


@pytest.mark.conda
def test_libmamba_unsatisfiable_carries_its_explanation(libmamba, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from conda_unsloth.errors import UnsolvableError
    from conda_unsloth.spec import Dep, EnvSpec
    from tests.channels import write_pytorch_profile

    spec = EnvSpec(
        None, write_pytorch_profile(tmp_path), [Dep("python=3.12"), Dep("xformers::xformers")]
    )
    with pytest.raises(UnsolvableError) as info:
        libmamba.solve(spec, T121)
    assert "xformers" in info.value.message

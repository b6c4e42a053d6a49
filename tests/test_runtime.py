"""The runtime the entry points hand to the verbs: which solvers, installer and env directories
a run uses, and hints that name the command the user ran."""

from __future__ import annotations

import pytest

from conda_unsloth.errors import UsageError
from conda_unsloth.runtime import command_of, standalone


def test_standalone_solves_with_rattler_by_default() -> None:
    rt = standalone()
    assert rt.solver(None).name == "rattler"
    assert rt.solver("rattler").name == "rattler"
    assert rt.solver(" Rattler ").name == "rattler"


def test_libmamba_standalone_is_a_usage_error_naming_the_conda_command() -> None:
    with pytest.raises(UsageError, match="needs conda") as info:
        standalone().solver("libmamba")
    assert any("inside conda" in h and "libmamba is the default" in h for h in info.value.hints)
    # no "conda unsloth ..." in it: Runtime.hint would turn that into the command that failed
    assert not any("conda unsloth " in h for h in info.value.hints)
    assert info.value.message == standalone().hint(info.value.message)


def test_installer_conda_standalone_names_no_command_that_cannot_run_it() -> None:
    rt = standalone()
    with pytest.raises(UsageError, match="--installer conda needs conda") as info:
        rt.with_installer("conda", None)
    assert "conda-unsloth create" not in rt.hint(info.value.message)


def test_unknown_solver_names_the_known_ones() -> None:
    with pytest.raises(UsageError, match="is not a solver here; choose one of rattler"):
        standalone().solver("classic")


def test_hints_name_the_command_the_user_ran() -> None:
    assert standalone().hint("conda unsloth env --cuda 12.1") == "conda-unsloth env --cuda 12.1"
    rt = standalone("python -m conda_unsloth")
    assert rt.hint("run conda unsloth verify -p X") == "run python -m conda_unsloth verify -p X"
    assert command_of("/usr/bin/conda-unsloth") == "conda-unsloth"
    assert command_of("/x/conda_unsloth/__main__.py") == "python -m conda_unsloth"
    assert command_of("/x/pytest/__main__.py") == "conda-unsloth"

"""The conda mode is set by the plugin's entry point for the verb it runs, not guessed from
``sys.modules``: a process that imported conda (this test run, when conda is installed) still runs
the standalone CLI standalone."""

from __future__ import annotations

import argparse
import sys
import types

import pytest

from conda_unsloth import plugin, runmode
from conda_unsloth.solvers import default_solver, get_solver


def test_an_imported_conda_does_not_make_a_standalone_run_a_conda_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # only the presence of the modules matters to the old guess; stand-ins suffice
    for name in ("conda", "conda.base", "conda.base.context"):
        monkeypatch.setitem(sys.modules, name, sys.modules.get(name) or types.ModuleType(name))
    assert not runmode.in_conda()
    assert default_solver() == "rattler"
    assert get_solver(None).name == "rattler"


def test_inside_conda_is_scoped_and_restored_after_an_error() -> None:
    with runmode.inside_conda():
        assert runmode.in_conda() and default_solver() == "libmamba"
        with runmode.inside_conda():
            assert runmode.in_conda()
        assert runmode.in_conda()
    assert not runmode.in_conda()
    with pytest.raises(RuntimeError), runmode.inside_conda():
        raise RuntimeError("a verb that fails")
    assert not runmode.in_conda() and default_solver() == "rattler"


def test_the_plugins_entry_runs_the_verb_in_conda_mode() -> None:
    seen: list[bool] = []

    def verb(args: argparse.Namespace) -> int:
        seen.append(runmode.in_conda())
        return 3

    assert plugin._action(argparse.Namespace(func=verb)) == 3
    assert seen == [True]
    assert not runmode.in_conda()

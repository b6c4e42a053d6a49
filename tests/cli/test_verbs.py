"""The verb table: every verb module is listed, `--help` shows them all, aliases run their verb,
and a command imports only its own verb's module."""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from conda_unsloth import cli as climod
from tests.conftest import Result


def test_the_table_names_every_verb_module_and_nothing_else() -> None:
    modules = {m.name for m in pkgutil.iter_modules(climod.__path__) if not m.name.startswith("_")}
    assert {name for name, _, _ in climod.VERBS} == modules
    for name, _, _ in climod.VERBS:
        mod = climod.verb_module(name)
        assert callable(mod.configure_parser) and callable(mod.execute) and mod.DESCRIPTION


def _run(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conda_unsloth", *argv],
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200"},  # argparse wraps help at the terminal's width
        capture_output=True,
        text=True,
        check=False,
    )


def test_help_lists_every_verb_with_its_summary(tmp_path: Path) -> None:
    r = _run("--help", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    commands = " ".join(r.stdout.split("COMMAND\n", 1)[1].split())
    for name, aliases, summary in climod.VERBS:
        shown = f"{name} ({', '.join(aliases)})" if aliases else name
        assert f"{shown} {' '.join(summary.split())}" in commands, r.stdout


def test_an_unknown_verb_is_one_line_naming_the_choices(cli: Callable[..., Result]) -> None:
    r = cli("plna", "--cuda", "12.1")
    assert r.code == 2
    line = r.err.splitlines()[0]
    assert "invalid choice: 'plna'" in line
    for name, _, _ in climod.VERBS:
        assert name in line


def test_an_alias_runs_its_verb(cli: Callable[..., Result]) -> None:
    args = ("--cuda", "12.1", "--dry-run", "-q")
    by_alias, by_name = cli("plan", *args), cli("env", *args)
    assert by_alias.code == by_name.code == 0
    assert by_alias.out == by_name.out and "pytorch-cuda=12.1" in by_alias.out


@pytest.mark.parametrize(("alias", "verb"), [("plan", "env"), ("lock", "solve")])
def test_an_alias_gets_its_verbs_options(tmp_path: Path, alias: str, verb: str) -> None:
    r = _run(alias, "--help", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: conda-unsloth {verb} ")
    assert "--cuda" in r.stdout


def test_a_command_imports_only_its_own_verb(tmp_path: Path) -> None:
    code = (
        "import sys; from conda_unsloth.__main__ import main; "
        "rc = main(['env', '--cuda', '12.1', '--dry-run', '-q']); "
        "print(sorted(m for m in sys.modules if m.startswith('conda_unsloth.cli.')), "
        "file=sys.stderr); sys.exit(rc)"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert r.returncode == 0, r.stderr
    loaded = r.stderr.strip().splitlines()[-1]
    assert "'conda_unsloth.cli.env'" in loaded
    for name, _, _ in climod.VERBS:
        if name != "env":
            assert f"'conda_unsloth.cli.{name}'" not in loaded


# What `env` stays fast without (bench/bench_env.py has the numbers): none of these may come
# back on its path unless the interpreter loads them anyway.
NOT_ON_THE_PLAN_PATH = (
    "dataclasses",
    "inspect",
    "typing",
    "pathlib",
    "packaging",
    "json",
    "pickle",  # the cache is read with its C half, _pickle
    "tempfile",
    "shutil",
    "signal",
    "ruamel",
    "rattler",
    "conda_unsloth.rules",
    "conda_unsloth.yamlload",
)


def test_a_plan_loads_none_of_the_heavy_modules(tmp_path: Path) -> None:
    """Not a timing test: which modules `conda-unsloth env` imports, with a warm knowledge
    cache (the first run fills it), against what a bare interpreter imports."""

    def loaded(code: str) -> set[str]:
        r = subprocess.run(
            [sys.executable, "-c", f"import sys; {code}; print(' '.join(sys.modules))"],
            cwd=tmp_path,
            env={**os.environ, "CONDA_UNSLOTH_CACHE": str(tmp_path / "cache")},
            capture_output=True,
            text=True,
            check=True,
        )
        return set(r.stdout.splitlines()[-1].split())

    plan = (
        "from conda_unsloth.__main__ import main; main(['env', '--cuda', '12.1', '-q', '--force'])"
    )
    loaded(plan)  # fills the knowledge cache (a cold load parses YAML and runs the rules)
    on_path = loaded(plan)
    bare = loaded("pass")
    assert "conda_unsloth.cli.env" in on_path and (tmp_path / "environment.yml").is_file()
    back = [
        m
        for m in on_path - bare
        if m in NOT_ON_THE_PLAN_PATH or m.split(".")[0] in NOT_ON_THE_PLAN_PATH
    ]
    assert back == []


@pytest.mark.parametrize("columns", [None, "123", "0", "-4", "wide"])
def test_help_width_is_the_terminal_width_shutil_would_give(
    monkeypatch: pytest.MonkeyPatch, columns: str | None
) -> None:
    """The formatters read the width without importing shutil; they must read what
    shutil.get_terminal_size reads (COLUMNS, then the terminal, then 80)."""
    import shutil

    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert climod._columns() == shutil.get_terminal_size().columns
    assert climod.HelpFormatter("prog")._width == climod._columns() - 2
    assert climod.RawDescriptionHelpFormatter("prog", width=50)._width == 50

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


@pytest.mark.parametrize("columns", [60, 100])
def test_help_fits_the_terminal_width(monkeypatch: pytest.MonkeyPatch, columns: int) -> None:
    """Help is wrapped to the terminal width (COLUMNS), as argparse does with shutil."""
    import contextlib
    import io

    monkeypatch.setenv("COLUMNS", str(columns))
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        climod.generate_parser(argv=["create"]).parse_args(["create", "--help"])
    text = out.getvalue()
    lines = text[text.index("options:") :].splitlines()  # the description keeps its own breaks
    assert len(lines) > 20
    # argparse keeps an unbreakable token (a long flag) whole; every other line fits
    assert [ln for ln in lines if len(ln) > columns and " " in ln.strip()] == []

"""The ``conda doctor`` health check: action and fixer called directly (no conda needed), the
CondaHealthCheck arguments for old and new condas, and the real hook type where conda exists."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from conda_unsloth.conda import health
from tests import prefixes as P
from tests.conftest import tree


class Declined(Exception):
    """What conda's confirm() raises when the user says no (CondaSystemExit there)."""


class Recorder:
    """Stands in for conda's install API, which is not installed here (fake_conda edge)."""

    def __init__(self, rc: int = 0) -> None:
        self.calls: list[list[str]] = []
        self.rc = rc

    def __call__(self, args: argparse.Namespace, specs: list[str]) -> int:
        self.calls.append(list(specs))
        return self.rc


def test_action_seed_prints_x_with_findings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = P.write_prefix(tmp_path / "seed", P.seed_pip())
    health.action(str(prefix), False)
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "❌ Unsloth stack: 2 known problem(s):"
    assert any(line.strip().startswith("F1 (error): xformers 0.0.27") for line in lines)
    assert any(line.strip().startswith("U1 (error)") for line in lines)
    assert f'{prefix}/bin/python -m pip install --no-deps "transformers<4.45.0"' in out
    assert f"conda unsloth doctor -p {prefix}" in out
    assert "evidence:" not in out


def test_action_verbose_adds_evidence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prefix = P.write_prefix(tmp_path / "seed", P.seed_pip())
    health.action(str(prefix), True)
    out = capsys.readouterr().out
    assert "evidence: xformers 0.0.27 (pypi)" in out


def test_action_healthy_prints_one_ok_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = P.write_prefix(tmp_path / "ok", P.healthy())
    health.action(str(prefix), False)
    assert capsys.readouterr().out == "✅ Unsloth stack: no known-bad combination found.\n\n"


def test_action_is_silent_for_an_env_without_torch_or_unsloth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = P.write_prefix(
        tmp_path / "plain", ([P.PY311, P.MKL_2023], [P.Wheel("requests", "2.32.3")])
    )
    health.action(str(prefix), True)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("kind", ["missing", "corrupt-record", "wrong-type-record", "fifo-record"])
def test_action_never_raises_on_bad_prefix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    target = tmp_path / "env"
    fifos = []
    if kind != "missing":
        P.write_prefix(target, P.healthy())
        bad = target / "conda-meta" / "bad-1.0-0.json"
    if kind == "corrupt-record":
        bad.write_text("{")
    elif kind == "wrong-type-record":
        bad.write_text('{"name": "bad", "version": "1.0", "build": "0", "files": [{"a": 1}]}')
    elif kind == "fifo-record":
        fifos.append(P.make_fifo(bad))
    P.call_or_unhang(lambda: health.action(str(target), False), fifos)
    out = capsys.readouterr().out
    assert out.startswith("❌ Unsloth stack: ")
    assert len(out.strip().splitlines()) == 1


def test_action_fifo_metadata_does_not_hang_and_quotes_the_prefix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = P.write_prefix(tmp_path / "seed;touch pwned", P.seed_pip())
    sp = prefix / "lib" / "python3.11" / "site-packages"
    fifo = P.make_fifo(sp / "unsloth-2024.9.post4.dist-info" / "METADATA")
    P.call_or_unhang(lambda: health.action(str(prefix), False), [fifo])
    out = capsys.readouterr().out
    assert out.startswith("❌ Unsloth stack: 2 known problem(s):")
    assert f"details: conda unsloth doctor -p '{prefix}'" in out


def test_fixer_healthy_does_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prefix = P.write_prefix(tmp_path / "ok", P.healthy())

    def confirm(msg: str) -> None:
        raise AssertionError("nothing to confirm")

    before = tree(prefix)
    assert health.fixer(str(prefix), argparse.Namespace(), confirm) == 0
    assert "No known-bad" in capsys.readouterr().out
    assert tree(prefix) == before


def test_fixer_env_without_stack_does_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = P.write_prefix(tmp_path / "plain", ([P.PY311], []))
    assert health.fixer(str(prefix), argparse.Namespace(), lambda m: None) == 0
    assert "nothing to fix" in capsys.readouterr().out


def test_fix_mkl_confirms_then_installs_pin_fake_conda(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = P.write_prefix(tmp_path / "env", P.swap(P.healthy(), conda=[P.MKL_2024]))
    asked: list[str] = []
    install = Recorder()
    rc = health.fix(str(prefix), argparse.Namespace(), asked.append, install=install)
    assert rc == 0
    assert asked == [f"Install mkl<2024.1 into {prefix}?"]
    assert install.calls == [["mkl<2024.1"]]
    assert "F10: mkl 2024.2.2" in capsys.readouterr().out


def test_fix_declined_installs_nothing_fake_conda(tmp_path: Path) -> None:
    prefix = P.write_prefix(tmp_path / "env", P.swap(P.healthy(), conda=[P.MKL_2024]))
    install = Recorder()

    def confirm(msg: str) -> None:
        raise Declined(msg)

    with pytest.raises(Declined):
        health.fix(str(prefix), argparse.Namespace(), confirm, install=install)
    assert install.calls == []


def test_fix_install_failure_is_the_exit_code_fake_conda(tmp_path: Path) -> None:
    prefix = P.write_prefix(tmp_path / "env", P.swap(P.healthy(), conda=[P.MKL_2024]))
    rc = health.fix(str(prefix), argparse.Namespace(), lambda m: None, install=Recorder(rc=3))
    assert rc == 3


def test_fix_seed_prints_plan_and_runs_nothing_fake_conda(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = P.write_prefix(tmp_path / "seed", P.seed_pip())
    install = Recorder()

    def confirm(msg: str) -> None:
        raise AssertionError("a rebuild is never confirmed and run by the fixer")

    before = tree(prefix)
    rc = health.fix(str(prefix), argparse.Namespace(), confirm, install=install)
    out = capsys.readouterr().out
    assert rc == 1, "problems remain that need a rebuild"
    assert install.calls == []
    assert f"conda unsloth create -p {prefix}-fixed --unsloth 2024.9.post4" in out
    assert "# F1" in out and "# U1" in out
    assert tree(prefix) == before


def test_fix_mixed_applies_mkl_and_reports_the_rest_fake_conda(tmp_path: Path) -> None:
    stack = P.swap(P.healthy(), conda=[P.MKL_2024], pip=[P.Wheel("transformers", "4.47.0")])
    prefix = P.write_prefix(tmp_path / "env", stack)
    install = Recorder()
    rc = health.fix(str(prefix), argparse.Namespace(), lambda m: None, install=install)
    assert install.calls == [["mkl<2024.1"]]
    assert rc == 1


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"name", "action"}, {"name", "action"}),
        (
            {"name", "action", "fixer", "summary", "fix"},
            {"name", "action", "fixer", "summary", "fix"},
        ),
    ],
    ids=["conda-23.11-to-25.11", "conda-26.1+"],
)
def test_health_check_kwargs_follow_the_fields(fields: set[str], expected: set[str]) -> None:
    kwargs = health.health_check_kwargs(fields)
    assert set(kwargs) == expected
    assert kwargs["name"] == "unsloth" and kwargs["action"] is health.action
    if "fixer" in kwargs:
        assert kwargs["fixer"] is health.fixer
        assert isinstance(kwargs["summary"], str) and isinstance(kwargs["fix"], str)


def test_importing_the_check_does_not_import_conda() -> None:
    code = (
        "import sys, conda_unsloth.conda.health, conda_unsloth.doctor, conda_unsloth.inventory; "
        "assert not any(m == 'conda' or m.startswith('conda.') for m in sys.modules), "
        "sorted(m for m in sys.modules if m.startswith('conda'))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.conda
def test_conda_health_check_type_accepts_our_kwargs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from conda.plugins import types

    fields = {f.name for f in dataclasses.fields(types.CondaHealthCheck)}
    check = types.CondaHealthCheck(**health.health_check_kwargs(fields))
    assert check.name == "unsloth"
    prefix = P.write_prefix(tmp_path / "seed", P.seed_pip())
    check.action(str(prefix), False)
    assert "❌ Unsloth stack" in capsys.readouterr().out


def test_action_reports_what_conda_remove_xformers_left(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`conda remove xformers` leaves unsloth's xformers requirement unmet: `conda doctor`
    (package rules only) must say so, never "no known-bad combination"."""
    prefix = P.write_prefix(tmp_path / "env", P.swap(P.healthy(), drop=["xformers"]))
    health.action(str(prefix), False)
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "❌ Unsloth stack: 1 known problem(s):"
    assert "U1 (error)" in out
    assert "xformers is not installed (needs xformers>=0.0.27.post2)" in out

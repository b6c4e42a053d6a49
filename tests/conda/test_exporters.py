"""`conda export --format unsloth-…`: same output as `conda unsloth export` for the same prefix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from conda_unsloth.conda.exporters import export
from conda_unsloth.errors import UsageError
from conda_unsloth.exports import FORMATS, Format
from tests.conftest import Result
from tests.exportenv import make_env


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.conda_name)
def test_same_output_as_the_verb_conda_env_stand_in(
    cli: Callable[..., Result], tmp_path: Path, fmt: Format
) -> None:
    """conda hands the exporter its Environment; a stand-in with the same two attributes."""
    name = fmt.conda_name
    prefix = make_env(tmp_path)
    out = tmp_path / "verb.out"
    r = cli("export", "-p", str(prefix), "--format", fmt.name, "-o", str(out))
    assert r.code == 0, r.err
    got = export(name, SimpleNamespace(prefix=str(prefix), name=None))
    assert got == out.read_text().rstrip("\n")


def test_no_prefix_is_a_clear_error() -> None:
    with pytest.raises(UsageError, match="need an installed environment"):
        export("unsloth-explicit", SimpleNamespace(prefix=None, name=None))


def test_names_never_collide_with_conda_or_conda_lockfiles() -> None:
    taken = {"explicit", "environment-yaml", "environment-json", "requirements", "conda-lock-v1"}
    for f in FORMATS:
        assert not ({f.conda_name, *f.conda_aliases} & taken)
        assert f.conda_filename.startswith("unsloth")


@pytest.mark.conda
def test_exporter_hook_with_real_conda() -> None:
    from conda_unsloth import plugin

    names = [e.name for e in plugin.conda_environment_exporters()]
    assert names == [f.conda_name for f in FORMATS]


def test_other_platform_than_installed_is_refused(tmp_path: Path) -> None:
    """conda's Environment carries the platform `conda export --platform` asked for; we export
    installed packages and never re-solve, so another platform is a usage error."""
    prefix = make_env(tmp_path)
    with pytest.raises(UsageError) as info:
        export(
            "unsloth-explicit",
            SimpleNamespace(prefix=str(prefix), name=None, platform="osx-arm64"),
        )
    assert info.value.message.endswith("cannot export them for platform osx-arm64")
    same = export(
        "unsloth-explicit", SimpleNamespace(prefix=str(prefix), name=None, platform="linux-64")
    )
    assert "@EXPLICIT" in same


@pytest.mark.conda
def test_conda_export_help_lists_our_locks_as_lockfiles(tmp_path: Path) -> None:
    """The real `conda export --help`: explicit and conda-lock pin exact builds with hashes
    ("Lockfiles"); the pinned environment.yml is an environment spec. Before: all three were
    under "Environment specs" (issue 14 item 5)."""
    from tests.conda import realconda
    from tests.conftest import CondaSandbox

    r = realconda.conda(CondaSandbox(tmp_path / "_conda"), "export", "--help")
    assert r.code == 0, r
    epilog = r.out.split("Available output formats:", 1)[1]
    specs, locks = epilog.split("Lockfiles:", 1)
    assert "Environment specs:" in specs
    for f in FORMATS:
        line = f"    - {f.conda_name}"
        assert (line in locks) is f.lockfile and (line in specs) is not f.lockfile, epilog
    assert {f.name for f in FORMATS if f.lockfile} == {"explicit", "conda-lock"}

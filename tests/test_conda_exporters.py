"""`conda export --format unsloth-…`: same output as `conda unsloth export` for the same prefix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from conda_unsloth.conda_exporters import EXPORTERS, export
from conda_unsloth.conda_exporters import FORMATS as VERB_FORMAT
from conda_unsloth.errors import UsageError
from tests.cli.test_export import make_env
from tests.conftest import Result


@pytest.mark.parametrize("name", list(EXPORTERS))
def test_same_output_as_the_verb_conda_env_stand_in(
    cli: Callable[..., Result], tmp_path: Path, name: str
) -> None:
    """conda hands the exporter its Environment; a stand-in with the same two attributes."""
    prefix = make_env(tmp_path)
    out = tmp_path / "verb.out"
    r = cli("export", "-p", str(prefix), "--format", VERB_FORMAT[name], "-o", str(out))
    assert r.code == 0, r.err
    got = export(name, SimpleNamespace(prefix=str(prefix), name=None))
    assert got == out.read_text().rstrip("\n")


def test_no_prefix_is_a_clear_error() -> None:
    with pytest.raises(UsageError, match="need an installed environment"):
        export("unsloth-explicit", SimpleNamespace(prefix=None, name=None))


def test_names_never_collide_with_conda_or_conda_lockfiles() -> None:
    taken = {"explicit", "environment-yaml", "environment-json", "requirements", "conda-lock-v1"}
    for name, (aliases, files, _) in EXPORTERS.items():
        assert not ({name, *aliases} & taken)
        assert all(f.startswith("unsloth") for f in files)


def test_exporter_hook_with_real_conda() -> None:
    pytest.importorskip("conda")
    from conda.plugins import types

    if not hasattr(types, "CondaEnvironmentExporter"):
        pytest.skip("conda < 25.7 has no environment exporters")
    from conda_unsloth import plugin

    names = [e.name for e in plugin.conda_environment_exporters()]  # type: ignore[attr-defined]
    assert names == list(EXPORTERS)


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

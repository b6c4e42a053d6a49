"""`conda export --format unsloth-…`: same output as `conda unsloth export` for the same prefix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from conda_unsloth.conda.exporters import export
from conda_unsloth.errors import UsageError
from conda_unsloth.exports import FORMATS, Format
from tests.cli.test_export import make_env
from tests.conftest import Result


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


def test_exporter_hook_with_real_conda() -> None:
    pytest.importorskip("conda")
    from conda.plugins import types

    if not hasattr(types, "CondaEnvironmentExporter"):
        pytest.skip("conda < 25.7 has no environment exporters")
    from conda_unsloth import plugin

    names = [e.name for e in plugin.conda_environment_exporters()]  # type: ignore[attr-defined]
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

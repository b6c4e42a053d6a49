"""The post-command guard: silent for prefixes we did not build, warns with the fix for ours."""

from __future__ import annotations

from pathlib import Path

import pytest

from conda_unsloth import guard, marker
from tests import prefixes as P


def test_not_our_prefix_is_silent(tmp_path: Path) -> None:
    prefix = P.write_prefix(tmp_path / "env", P.seed_pip())
    assert guard.check_prefix(prefix, "install") == []


def test_our_healthy_prefix_is_silent(tmp_path: Path) -> None:
    prefix = P.write_prefix(tmp_path / "env", P.healthy())
    marker.write(prefix, {"status": "ok"})
    assert guard.check_prefix(prefix, "install") == []


def test_our_prefix_broken_by_a_conda_command_warns_with_the_fix(tmp_path: Path) -> None:
    prefix = P.write_prefix(tmp_path / "env", P.seed_pip())
    marker.write(prefix, {"status": "ok"})
    lines = guard.check_prefix(prefix, "install")
    assert lines[0].startswith(f"conda-unsloth warning: `conda install` left {prefix} with F1:")
    assert any(ln.startswith("  fix: ") for ln in lines)


def test_both_env_create_spellings_are_guarded() -> None:
    assert {"env_create", "create", "env_update", "install", "remove"} <= guard.RUN_FOR


def test_hooks_with_real_conda() -> None:
    pytest.importorskip("conda")
    from conda_unsloth import plugin

    assert [c.name for c in plugin.conda_health_checks()] == ["unsloth"]  # type: ignore[attr-defined]
    assert [c.name for c in plugin.conda_post_commands()] == ["unsloth-guard"]  # type: ignore[attr-defined]

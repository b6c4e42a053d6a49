"""Fixtures for solver tests: planned specs and local channels built by tests/channels.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from conda_unsloth import knowledge
from conda_unsloth.host import Host
from conda_unsloth.select import Request, Selection, select
from conda_unsloth.spec import EnvSpec, from_selection

KB = knowledge.load()
NO_GPU = Host(platform="linux-64", glibc="2.36")
# the ``planned`` fixture: ``planned(channels, cuda="12.1", ...)`` -> (selection, spec)
Planned = Callable[..., tuple[Selection, EnvSpec]]


@pytest.fixture(autouse=True)
def _private_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every test gets its own repodata cache (never the user's)."""
    monkeypatch.setenv("CONDA_UNSLOTH_CACHE", str(tmp_path_factory.mktemp("cache")))


def plan(**req: str) -> tuple[Selection, EnvSpec]:
    sel = select(Request(**req), NO_GPU, KB)  # type: ignore[arg-type]  # str values; gpu_archs is a tuple
    return sel, from_selection(sel, None, None)


@pytest.fixture
def planned() -> Planned:
    """``planned(channels, cuda="12.1", ...)``: the planned spec with its channels replaced."""

    def make(channels: list[str], **req: str) -> tuple[Selection, EnvSpec]:
        sel, spec = plan(**req)
        return sel, replace(spec, channels=channels)

    return make


@pytest.fixture(scope="module")
def pytorch_channels(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    from tests.channels import write_pytorch_profile

    return write_pytorch_profile(tmp_path_factory.mktemp("pt") / "channels")


@pytest.fixture(scope="module")
def conda_forge_channels(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    from tests.channels import write_conda_forge_profile

    return write_conda_forge_profile(tmp_path_factory.mktemp("cf") / "channels")


__all__ = ["KB", "NO_GPU", "Path", "Planned", "plan"]

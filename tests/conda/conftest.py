"""Fixtures of the conda lane: the offline demo channel and one environment created from it with
``conda unsloth create --offline`` (libmamba + conda's transaction), shared by the tests that
only read it. Tests that change an environment create their own."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conda import realconda
from tests.conftest import CondaSandbox


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python -m tests.envbuild``'s channel and wheelhouse, built once."""
    from tests.envbuild import build_demo

    return build_demo(tmp_path_factory.mktemp("demo"))


@pytest.fixture
def sandbox(tmp_path: Path) -> CondaSandbox:
    """The per-test sandbox that ``tests/conftest._conda_isolated`` made for a conda test (for
    the processes a test starts itself)."""
    box = CondaSandbox(tmp_path / "_conda")
    assert box.condarc.exists(), "only for tests marked conda"
    return box


@dataclass(frozen=True)
class Built:
    prefix: Path
    sandbox: CondaSandbox  # its package cache holds the demo channel's repodata and packages
    demo: Path
    create: realconda.Run


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory, demo: Path) -> Built:
    """One env made inside conda from an empty cache: `conda unsloth create --offline` on the
    demo channel. Read it; never change it."""
    box = CondaSandbox(tmp_path_factory.mktemp("built-sandbox")).make()
    prefix = box.root / "env"
    r = realconda.conda(box, "unsloth", *realconda.create_args(demo, prefix))
    assert r.code == 0, r
    return Built(prefix, box, demo, r)

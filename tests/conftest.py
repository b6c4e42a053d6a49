"""Shared fixtures. Every test runs on a host with no GPU unless it puts a stand-in nvidia-smi
in place itself (see ``fake_gpu``): NVML is skipped and no real nvidia-smi is consulted."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conda_unsloth.__main__ import main

# helper modules whose asserts are test assertions: give them pytest's assertion messages
pytest.register_assert_rewrite("tests.selection")


@pytest.fixture(autouse=True)
def _no_real_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONDA_UNSLOTH_NVML", "0")
    monkeypatch.setenv("CONDA_UNSLOTH_NVIDIA_SMI", "")
    monkeypatch.delenv("CONDA_OVERRIDE_CUDA", raising=False)
    monkeypatch.delenv("CONDA_OVERRIDE_GLIBC", raising=False)
    monkeypatch.delenv("CONDA_UNSLOTH_KNOWLEDGE", raising=False)


@pytest.fixture(autouse=True)
def _no_host_pip_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pip stage honours PIP_*/UV_* wheel sources (a cluster's mirror); a developer's or CI
    machine's own (this one sets PIP_FIND_LINKS) must not make a test pass or fail."""
    import os

    for name in list(os.environ):
        if name.startswith(("PIP_", "UV_")):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The offline demo (a local channel with this machine's python, pip and stand-ins for the
    GPU stack, plus a wheelhouse for the pip companions), built once per test session. Tests
    read it; none may change it."""
    from tests import envbuild

    return envbuild.build_demo(tmp_path_factory.mktemp("demo"))


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run the real standalone CLI in-process: ``cli("env", "--cuda", "12.1")``."""

    def run(*argv: str) -> Result:
        code = main(list(argv))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


FAKE_SMI = """#!/bin/sh
# Stand-in for nvidia-smi on a machine without a GPU (test edge only).
case "$1" in
  --query-gpu=*) printf '%s\\n' {rows} ;;
  *) echo "| NVIDIA-SMI {driver}   Driver Version: {driver}   CUDA Version: {cuda}     |" ;;
esac
"""


@pytest.fixture
def fake_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """Put a stand-in nvidia-smi in place that reports the given driver, CUDA and GPUs."""

    def install(
        driver: str = "550.54.14",
        cuda: str = "12.4",
        gpus: tuple[tuple[str, str], ...] = (("NVIDIA H100 80GB HBM3", "9.0"),),
    ) -> Path:
        rows = " ".join(f"'{i}, {name}, {driver}, {cc}'" for i, (name, cc) in enumerate(gpus))
        exe = tmp_path / "nvidia-smi"
        exe.write_text(FAKE_SMI.format(rows=rows, driver=driver, cuda=cuda))
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        monkeypatch.setenv("CONDA_UNSLOTH_NVIDIA_SMI", str(exe))
        return exe

    return install


def tree(root: Path) -> dict[str, bytes]:
    """A snapshot of every file under root (for 'nothing was written' assertions)."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            out[str(p.relative_to(root))] = p.read_bytes()
    return out


# ----------------------------------------------------------------------------- the conda lane
# Tests marked `conda` need a real conda (conda 26.x + conda-libmamba-solver) importable in the
# Python that runs pytest: CI's conda lane (.ci/run: ../shared/conda-wheelhouse/setup-conda.sh,
# the project installed into that conda's Python, `pytest -m conda`). Elsewhere they skip, saying
# so; in the lane (CONDA_UNSLOTH_LANE=conda) a missing conda stops the run instead.

CONDA_LANE_ENV = "CONDA_UNSLOTH_LANE"
CONDA_SKIP_REASON = (
    "needs a real conda: runs in the conda lane (.ci/run: setup-conda.sh, then `pytest -m conda` "
    "under that conda's Python)"
)
# conda 26.7's LocalFSAdapter (conda/gateways/connection/adapters/localfs.py) hands out open
# files that conda never closes: the file:// channel's repodata.json (read by
# gateways/repodata/zstd.py download_repodata, stream=True) and the 404 bodies of its
# repodata.json.zst / sharded-index probes (SpooledTemporaryFile). Only these two messages are
# ignored, only in conda tests; every other ResourceWarning stays an error.
CONDA_RESOURCE_WARNINGS = (
    "ignore:unclosed file <_io.BufferedReader name='[^']*/repodata\\.json'>:ResourceWarning",
    "ignore:Unclosed file <tempfile\\.SpooledTemporaryFile object at 0x[0-9a-f]+>:ResourceWarning",
)
# The user's home as this session found it: conda tests must never write there.
SESSION_HOME = os.environ.get("HOME", "")


def conda_importable() -> bool:
    import importlib.util

    return importlib.util.find_spec("conda") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _mark_slow(config, items)
    marked = [item for item in items if item.get_closest_marker("conda") is not None]
    if not marked:
        return
    have_conda = conda_importable()
    if not have_conda and os.environ.get(CONDA_LANE_ENV) == "conda":
        raise pytest.UsageError(
            f"{CONDA_LANE_ENV}=conda but conda is not importable in {sys.executable}: "
            "run the conda lane under the Python of setup-conda.sh's conda"
        )
    for item in marked:
        if not have_conda:
            item.add_marker(pytest.mark.skip(reason=CONDA_SKIP_REASON))
        for spec in CONDA_RESOURCE_WARNINGS:
            item.add_marker(pytest.mark.filterwarnings(spec))


@dataclass(frozen=True)
class CondaSandbox:
    """Everything conda writes, in one temporary folder: HOME (~/.conda/environments.txt,
    ~/.condarc), the package cache, env directories, caches and an empty condarc. Names resolve
    to a dead local address, so no test reaches the network by a channel name."""

    root: Path

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def pkgs(self) -> Path:
        return self.root / "pkgs"

    @property
    def envs(self) -> Path:
        return self.root / "envs"

    @property
    def condarc(self) -> Path:
        return self.root / "condarc.yml"

    def environ(self) -> dict[str, str]:
        return {
            "HOME": str(self.home),
            "CONDARC": str(self.condarc),
            "CONDA_PKGS_DIRS": str(self.pkgs),
            "CONDA_ENVS_DIRS": str(self.envs),
            "XDG_CACHE_HOME": str(self.root / "cache"),
            "XDG_CONFIG_HOME": str(self.root / "config"),
            "CONDA_CHANNEL_ALIAS": "http://127.0.0.1:9",
            "CONDA_NUMBER_CHANNEL_NOTICES": "0",
            "CONDA_REPORT_ERRORS": "false",
            "CONDA_SOLVER": "libmamba",
            "PIP_CONFIG_FILE": os.devnull,
            "PIP_NO_INDEX": "1",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        }

    def make(self) -> CondaSandbox:
        for d in (self.home, self.pkgs, self.envs):
            d.mkdir(parents=True, exist_ok=True)
        self.condarc.write_text("")  # empty: no user channels, nothing from ~ or /etc/conda
        return self


# host settings that would leak into a sandboxed conda or pip (CI's env.sh sets some)
SANDBOX_UNSET = (
    "CONDA_PREFIX",
    "CONDA_DEFAULT_ENV",
    "CONDA_OFFLINE",
    "PIP_FIND_LINKS",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "CONDA_UNSLOTH_CACHE",
)


@pytest.fixture(autouse=True)
def _conda_isolated(request: pytest.FixtureRequest) -> Iterator[None]:
    """For every test marked ``conda``: conda (in this process and in the processes it starts)
    reads and writes only a per-test :class:`CondaSandbox`; conda's context is re-read from it
    and restored after. Every file conda left open is collected while the test's warning
    filters still apply."""
    if request.node.get_closest_marker("conda") is None:
        yield
        return
    import gc

    from conda.base.context import reset_context

    sandbox = CondaSandbox(request.getfixturevalue("tmp_path") / "_conda").make()
    mp = pytest.MonkeyPatch()
    for k in SANDBOX_UNSET:
        mp.delenv(k, raising=False)
    for k, v in sandbox.environ().items():
        mp.setenv(k, v)
    reset_context()
    try:
        yield
    finally:
        gc.collect()
        mp.undo()
        reset_context()


# ----------------------------------------------------------------------------- lanes
# The fast lane (`python -m pytest -m "not slow"`) is what a developer runs between edits; the
# whole suite (`python -m pytest`, what CI runs) adds the slow lane: every test that builds an
# env from the demo channel (a real create: rattler, the pip stage), the fault and kill runs,
# the probe's process supervision, the benchmarks' smoke runs and everything that runs the
# real micromamba (it builds envs).
SLOW_FIXTURES = frozenset({"demo", "torch_env", "micromamba_exe", "mirror"})
SLOW_MODULES = frozenset(
    {
        "tests/robustness/test_faults.py",
        "tests/robustness/test_journal.py",
        "tests/robustness/test_hostile_inputs.py",
        "tests/verify/test_supervisor.py",
        "tests/verify/test_probe.py",
        "tests/verify/test_remedies.py",
        "tests/verify/test_bench_verify.py",
        "tests/test_benches.py",
        "tests/test_pip_stage.py",
    }
)


def _mark_slow(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(str(config.rootpath))
    for item in items:
        module = Path(str(item.path)).relative_to(root).as_posix()
        fixtures = set(getattr(item, "fixturenames", ()))
        if module in SLOW_MODULES or fixtures & SLOW_FIXTURES:
            item.add_marker(pytest.mark.slow)

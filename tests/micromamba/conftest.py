"""Fixtures of the micromamba lane (issue 21): the real micromamba, the offline mirror of the
envs/ files' channels, and the environments conda-unsloth builds from it with py-rattler (the
reference every stock tool's result is compared with)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from conda_unsloth.spec import read
from tests.conda.realconda import pip_dists
from tests.conftest import SANDBOX_UNSET, CondaSandbox, conda_importable
from tests.micromamba import fixture, standins
from tests.micromamba.fixture import micromamba_exe  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
ENVS = ROOT / "envs"


@pytest.fixture(scope="session")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> standins.Mirror:
    return standins.build(tmp_path_factory.mktemp("mirror"))


@dataclass(frozen=True)
class Run:
    argv: tuple[str, ...]
    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return (
            f"$ {' '.join(self.argv)}\n[exit {self.code}]\n{self.out[-4000:]}\n{self.err[-4000:]}"
        )


def run(argv: list[str], env: Mapping[str, str], cwd: Path | None = None) -> Run:
    proc = subprocess.run(
        argv,
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return Run(tuple(argv), proc.returncode, proc.stdout, proc.stderr)


@dataclass(frozen=True)
class Tools:
    """The stock tools, each isolated in ``box`` (HOME, rc files, caches, pip)."""

    micromamba: Path
    box: Path

    def mm(
        self, *args: str, extra: Mapping[str, str] | None = None, wheels: Path | None = None
    ) -> Run:
        env = fixture.environ(self.box, extra, wheels=wheels)
        return run([str(self.micromamba), *args], env, cwd=self.box)

    def condarc(self, text: str) -> None:
        """The user's ~/.condarc, for micromamba (its HOME is ``box/home``) and conda."""
        (self.box / "home" / ".condarc").write_text(text)
        self.conda_box.condarc.write_text(text)

    @property
    def conda_box(self) -> CondaSandbox:
        box = CondaSandbox(self.box / "_conda")
        if not box.condarc.exists():
            box.make()
        return box

    def conda(
        self, *args: str, extra: Mapping[str, str] | None = None, wheels: Path | None = None
    ) -> Run:
        """``conda ARGS`` (the conda of the Python running the tests: the lane's)."""
        if not conda_importable():
            fixture.need("conda (the lane runs under setup-conda.sh's Python)")
        env = {k: v for k, v in os.environ.items() if k not in SANDBOX_UNSET}
        env = {k: v for k, v in env.items() if not k.startswith("PIP_")}
        env.update(self.conda_box.environ())
        env.update({"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1"})
        if wheels is not None:
            env["PIP_FIND_LINKS"] = str(wheels)
        env.update(extra or {})
        return run([sys.executable, "-m", "conda", *args], env, cwd=self.box)

    def unsloth(self, *args: str, extra: Mapping[str, str] | None = None) -> Run:
        """The standalone ``conda-unsloth`` of this checkout, its cache in ``box``."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CONDA_", "MAMBA_"))}
        env.update(
            {
                "CONDA_UNSLOTH_CACHE": str(self.box / "cu-cache"),
                "CONDA_UNSLOTH_NVML": "0",
                "CONDA_UNSLOTH_NVIDIA_SMI": "",
                "HOME": str(self.box / "home"),
                "PIP_CONFIG_FILE": os.devnull,
            }
        )
        env.update(extra or {})
        return run([sys.executable, "-m", "conda_unsloth", *args], env, cwd=self.box)


@pytest.fixture
def tools(micromamba_exe: Path, tmp_path: Path) -> Tools:  # noqa: F811
    box = tmp_path / "box"
    (box / "home").mkdir(parents=True)
    return Tools(micromamba_exe, box)


# ----------------------------------------------------------------------------- what an env holds


def records(prefix: Path) -> set[tuple[str, str, str, str]]:
    """(name, version, build, url) of every conda record in ``prefix``: what each tool must
    agree on (the ``channel`` field is written differently by each: a name, a URL, a URL with
    the subdir)."""
    out = set()
    for path in (prefix / "conda-meta").glob("*.json"):
        doc = json.loads(path.read_text())
        out.add((doc["name"], doc["version"], doc["build"], doc["url"]))
    return out


def conda_dists(prefix: Path) -> dict[str, list[str]]:
    """torch, triton, xformers: every dist-info of each (name -> [INSTALLER, ...])."""
    out: dict[str, list[str]] = {}
    for info in prefix.glob("lib/python3*/site-packages/*.dist-info"):
        name = info.name.removesuffix(".dist-info").rsplit("-", 1)[0].lower()
        if name in ("torch", "triton", "xformers"):
            installer = info / "INSTALLER"
            out.setdefault(name, []).append(installer.read_text().strip())
    return out


@dataclass(frozen=True)
class Reference:
    prefix: Path
    records: set[tuple[str, str, str, str]]
    pip: set[tuple[str, str]]


def copy(src: Path, where: Path) -> Path:
    """The file in a folder of its own (both tools write their pip requirements file next to
    it; nothing may land in the checkout)."""
    where.mkdir(parents=True, exist_ok=True)
    out = where / src.name
    out.write_text(src.read_text())
    return out


def same_env(prefix: Path, ref: Reference, *, pip: bool = True) -> None:
    got = records(prefix)
    assert not [r for r in got if "/trap/" in r[3]], "a package from a channel no file lists"
    assert got == ref.records
    if pip:
        assert pip_dists(prefix) == ref.pip
    # conda's torch, xformers and triton: one distribution each, installed by conda
    assert conda_dists(prefix) == {n: ["conda"] for n in ("torch", "triton", "xformers")}


@pytest.fixture(scope="session")
def reference(
    mirror: standins.Mirror, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str, str], Reference]:
    """``reference(profile, cuda)``: the env ``conda-unsloth create -f envs/P-cudaC.yml
    --installer rattler`` builds from the mirror (made once per session and file)."""
    made: dict[tuple[str, str], Reference] = {}

    def get(profile: str, cuda: str) -> Reference:
        if (profile, cuda) in made:
            return made[profile, cuda]
        box = tmp_path_factory.mktemp(f"ref-{profile}-{cuda}")
        (box / "home").mkdir()
        tools = Tools(Path("micromamba-not-used"), box)
        src = ENVS / f"{profile}-cuda{cuda}.yml"
        env_file = box / src.name
        env_file.write_text(src.read_text())
        sel = standins.selection(profile, cuda)
        prefix = box / "env"
        r = tools.unsloth(
            "create", "-p", str(prefix), "-f", str(env_file),
            *mirror.channel_args(read(env_file).channels),
            "--offline", "--pip-find-links", str(mirror.wheels[sel.unsloth.version]),
            "--installer", "rattler", "--yes",
        )  # fmt: skip
        assert r.code == 0, r
        ref = Reference(prefix, records(prefix), pip_dists(prefix))
        assert ref.records and ref.pip
        made[profile, cuda] = ref
        return ref

    return get

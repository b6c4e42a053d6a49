"""Real environments for the verification probe.

``torch_env``: a venv with the real CPU build of torch 2.13.0 (``pip install torch==2.13.0``;
on the dev machine the wheel lies on disk, elsewhere pip downloads it). It gets a
``conda-meta/`` folder so the CLI accepts it as an environment.

``overlay_env``: a venv without pip whose site-packages holds a ``.pth`` line pointing at the
torch env's site-packages (``python -I`` still reads ``.pth`` files), plus whatever a test
installs on top (the real xformers 0.0.27.post1 / .post2 wheels from PyPI, a stand-in package).
Creating one takes well under a second, so each test gets its own.

Set ``CONDA_UNSLOTH_TEST_TORCH_ENV=/path/to/venv`` to reuse an existing CPU-torch venv, and
``CONDA_UNSLOTH_TEST_TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"`` where
plain PyPI would hand out the CUDA build of torch (with GBs of nvidia wheels).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import venv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conda_unsloth.verify import KERNEL, PROBE

TORCH = "torch==2.13.0"


@dataclass(frozen=True)
class Env:
    prefix: Path

    @property
    def python(self) -> Path:
        return self.prefix / "bin" / "python"

    @property
    def site(self) -> Path:
        out = subprocess.run(
            [
                str(self.python),
                "-I",
                "-c",
                "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return Path(out.stdout.strip())


@dataclass(frozen=True)
class ProbeRun:
    code: int
    doc: dict[str, Any] | None
    out: str
    err: str

    def check(self, check_id: str) -> dict[str, Any]:
        assert self.doc is not None, self.err
        hits: list[dict[str, Any]] = [c for c in self.doc["checks"] if c["id"] == check_id]
        assert len(hits) == 1, [c["id"] for c in self.doc["checks"]]
        return hits[0]


def probe_cmd(env: Env, out: Path, *args: str) -> list[str]:
    return [str(env.python), "-I", str(PROBE), "--json", str(out), "--kernel", str(KERNEL), *args]


def run_probe(
    env: Env,
    *args: str,
    tmp: Path,
    timeout: float = 600,
    environ: dict[str, str] | None = None,
) -> ProbeRun:
    out = tmp / "report.json"
    out.unlink(missing_ok=True)
    proc = subprocess.run(
        probe_cmd(env, out, *args),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=environ,
    )
    doc = json.loads(out.read_text()) if out.is_file() else None
    return ProbeRun(proc.returncode, doc, proc.stdout, proc.stderr)


def _pip(python: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", "-q", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def torch_env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    reuse = os.environ.get("CONDA_UNSLOTH_TEST_TORCH_ENV")
    if reuse:
        env = Env(Path(reuse))
    else:
        prefix = tmp_path_factory.mktemp("torch-env") / "env"
        venv.EnvBuilder(with_pip=True, symlinks=True).create(prefix)
        env = Env(prefix)
        extra = shlex.split(os.environ.get("CONDA_UNSLOTH_TEST_TORCH_PIP_ARGS", ""))
        r = _pip(env.python, "install", "--no-compile", *extra, TORCH)
        if r.returncode != 0:
            pytest.skip(f"cannot install {TORCH} into a venv: {r.stderr.strip()[-300:]}")
    (env.prefix / "conda-meta").mkdir(exist_ok=True)
    return env


def make_overlay(base: Env, where: Path) -> Env:
    """A pip-less venv that sees ``base``'s site-packages through a .pth file."""
    venv.EnvBuilder(with_pip=False, symlinks=True).create(where)
    env = Env(where)
    (env.site / "_conda_unsloth_test_base.pth").write_text(str(base.site) + "\n")
    (where / "conda-meta").mkdir(exist_ok=True)
    return env


def cuda_shim(env: Env, extra: str = "") -> None:
    """Make the CPU torch of ``env`` look like a CUDA 13.0 build (``torch.version.cuda``), the
    way a CUDA torch on a machine without a usable GPU looks: a fake at the GPU edge."""
    (env.site / "_conda_unsloth_cuda_shim.py").write_text(
        'import torch\ntorch.version.cuda = "13.0"\n' + extra
    )
    (env.site / "_conda_unsloth_cuda_shim.pth").write_text("import _conda_unsloth_cuda_shim\n")


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def overlay_env(torch_env: Env, tmp_path: Path) -> Env:
    return make_overlay(torch_env, tmp_path / "overlay")


@pytest.fixture(scope="session")
def pypi_envs(torch_env: Env, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Env]:
    """Overlay envs with real wheels from PyPI installed without their dependencies
    (``pypi_envs("xformers==0.0.27.post1", "numpy")``), made once per session."""
    made: dict[tuple[str, ...], Env] = {}

    def get(*requirements: str) -> Env:
        if requirements not in made:
            env = make_overlay(torch_env, tmp_path_factory.mktemp("pypi"))
            r = _pip(
                torch_env.python,
                "install",
                "--no-deps",
                "--no-compile",
                "--only-binary",
                ":all:",
                "--target",
                str(env.site),
                *requirements,
            )
            if r.returncode != 0:
                pyver = f"{sys.version_info.major}.{sys.version_info.minor}"
                pytest.skip(
                    f"cannot fetch {' '.join(requirements)} for Python {pyver} from PyPI: "
                    f"{r.stderr.strip()[-300:]}"
                )
            made[requirements] = env
        return made[requirements]

    return get

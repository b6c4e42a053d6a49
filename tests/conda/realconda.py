"""Running the real conda (and the standalone CLI) from the conda lane's tests.

Everything runs with the Python that runs pytest: in the conda lane that is the conda made by
``../shared/conda-wheelhouse/setup-conda.sh`` with this project installed into it, so
``python -m conda`` is that conda and ``conda unsloth`` is the installed plugin. Every run gets
an explicit environment: the host's conda and pip settings never leak in (see
``tests/conftest.CondaSandbox``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import SANDBOX_UNSET, CondaSandbox

TIMEOUT = 600


@dataclass(frozen=True)
class Run:
    argv: tuple[str, ...]
    code: int
    out: str
    err: str

    def __str__(self) -> str:  # what an assertion message shows
        return f"$ {' '.join(self.argv)}\n[exit {self.code}]\n{self.out}\n{self.err}"


def environ(sandbox: CondaSandbox, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SANDBOX_UNSET}
    env.update(sandbox.environ())
    env.update(extra or {})
    return env


def run(
    argv: list[str],
    sandbox: CondaSandbox,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Run:
    proc = subprocess.run(
        argv,
        env=environ(sandbox, env),
        cwd=cwd or sandbox.root,  # a verb's default output file never lands in the checkout
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return Run(tuple(argv), proc.returncode, proc.stdout, proc.stderr)


def conda(
    sandbox: CondaSandbox,
    *args: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Run:
    """``conda ARGS`` (this Python's conda) in ``sandbox``."""
    return run([sys.executable, "-m", "conda", *args], sandbox, cwd, env)


def standalone(sandbox: CondaSandbox, *args: str, env: Mapping[str, str] | None = None) -> Run:
    """``conda-unsloth ARGS``: the console script installed next to this Python."""
    exe = Path(sys.executable).parent / "conda-unsloth"
    argv = [str(exe)] if exe.exists() else [sys.executable, "-m", "conda_unsloth"]
    return run([*argv, *args], sandbox, env=env)


def records(prefix: Path) -> set[tuple[str, str, str]]:
    """(name, version, build) of every conda record in ``prefix``'s conda-meta."""
    out = set()
    for path in (prefix / "conda-meta").glob("*.json"):
        doc = json.loads(path.read_text())
        out.add((doc["name"], doc["version"], doc["build"]))
    return out


def pip_dists(prefix: Path) -> set[tuple[str, str]]:
    """(name, version) of the distributions the pip stage installed in ``prefix`` (INSTALLER
    pip or uv)."""
    out = set()
    for info in prefix.glob("lib/python3*/site-packages/*.dist-info"):
        installer = info / "INSTALLER"
        if installer.exists() and installer.read_text().strip() in ("pip", "uv"):
            name, version = info.name.removesuffix(".dist-info").rsplit("-", 1)
            out.add((name.lower().replace("_", "-"), version))
    return out


def create_args(demo: Path, prefix: Path, *extra: str) -> list[str]:
    """The README's offline demo create (the same arguments both ways)."""
    return [
        "create",
        "-p",
        str(prefix),
        "-c",
        (demo / "channel").as_uri(),
        "--offline",
        "--pip-find-links",
        str(demo / "wheels"),
        "--cuda",
        "12.1",
        "--yes",
        *extra,
    ]

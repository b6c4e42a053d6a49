"""The real micromamba for tests, and the ``installer`` parameter of the create and fault tests.

micromamba is not on PyPI: the lane's copy is the portable tarball in ``../shared/micromamba``
(beside the checkout; ``$SHARED_DIR`` overrides, as for ``.ci/run``). :func:`micromamba_exe`
unpacks it once per session after checking its sha256. Where it is absent a test that needs it
skips, naming the micromamba lane; in that lane (``CONDA_UNSLOTH_LANE=micromamba``) a missing
tarball is an error, so nothing there can skip for want of it.

Every stock micromamba run gets :func:`environ`: its root prefix and ``HOME`` in the test's
folder (micromamba registers each env in ``$HOME/.conda/environments.txt``), no rc file of the
user's, and pip isolated from this host's configuration.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tarfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

LANE = "micromamba"
LANE_ENV = "CONDA_UNSLOTH_LANE"
TARBALL = "micromamba-2.8.1-linux-64.tar.gz"
LANE_TEXT = "runs in the micromamba lane (.ci/run with CI_LANES=micromamba)"


def in_lane() -> bool:
    return os.environ.get(LANE_ENV) == LANE


def shared_dir() -> Path:
    env = os.environ.get("SHARED_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared"


def need(what: str) -> None:
    """Skip (or, in the micromamba lane, fail) for want of ``what``."""
    if in_lane():
        pytest.fail(f"the micromamba lane needs {what}")
    pytest.skip(f"needs {what}: {LANE_TEXT}")


def unpack(dest: Path) -> Path:
    """``dest/micromamba-2.8.1-linux-64/bin/micromamba`` from the shared tarball (sha256
    checked)."""
    tar = shared_dir() / "micromamba" / TARBALL
    if not tar.is_file():
        need(f"micromamba ({tar} is missing)")
    want = (tar.parent / (TARBALL + ".sha256")).read_text().split()[0]
    digest = hashlib.sha256(tar.read_bytes()).hexdigest()
    assert digest == want, f"{tar}: sha256 {digest} is not {want}"
    with tarfile.open(tar) as tf:
        try:
            tf.extractall(dest, filter="data")
        except TypeError:  # a Python without extraction filters (3.11 < 3.11.4): checked above
            tf.extractall(dest)
    exe = dest / TARBALL.removesuffix(".tar.gz") / "bin" / "micromamba"
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "2.8.1", out
    return exe


@pytest.fixture(scope="session")
def micromamba_exe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return unpack(tmp_path_factory.mktemp("micromamba"))


def environ(
    root: Path, extra: Mapping[str, str] | None = None, *, wheels: Path | None = None
) -> dict[str, str]:
    """The environment of a stock ``micromamba`` run: root prefix and HOME under ``root``, the
    user's conda/mamba settings and rc files out, pip offline on ``wheels`` (none: no index)."""
    drop = ("CONDA_", "MAMBA_", "PIP_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.pop("CONDARC", None)
    env.pop("MAMBARC", None)
    (root / "home").mkdir(parents=True, exist_ok=True)
    env.update(
        {
            "MAMBA_ROOT_PREFIX": str(root / "mroot"),
            "HOME": str(root / "home"),
            "XDG_CONFIG_HOME": str(root / "home" / ".config"),
            "PIP_CONFIG_FILE": os.devnull,
            "PIP_NO_INDEX": "1",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        }
    )
    if wheels is not None:
        env["PIP_FIND_LINKS"] = str(wheels)
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class Installer:
    """One value of the create/fault tests' ``installer`` parameter."""

    name: str
    exe: Path | None = None  # the micromamba, for name == "micromamba"

    @property
    def args(self) -> list[str]:
        return ["--installer", self.name]


INSTALLERS = ("rattler", "micromamba")
CURRENT: list[Installer] = []  # the installer of the running test (the helpers read it)


def current_args() -> list[str]:
    return CURRENT[-1].args if CURRENT else []


@pytest.fixture(params=INSTALLERS)
def installer(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Installer]:
    """Run the test once per installer: ``create --installer rattler`` and ``--installer
    micromamba`` (``MAMBA_EXE`` set, the way micromamba's shell hook sets it). The module's
    argument helpers append :func:`current_args`."""
    if request.param == "micromamba":
        exe = request.getfixturevalue("micromamba_exe")
        monkeypatch.setenv("MAMBA_EXE", str(exe))
        value = Installer("micromamba", exe)
    else:
        monkeypatch.delenv("MAMBA_EXE", raising=False)
        value = Installer("rattler")
    CURRENT.append(value)
    try:
        yield value
    finally:
        CURRENT.remove(value)


def install_running(prefix: Path) -> bool:
    """Whether the create building ``prefix`` is installing its conda packages now: with
    micromamba, a micromamba process working on ``prefix`` is alive (the fault tests kill the
    create at that moment); with rattler, ``conda-meta`` exists."""
    if not CURRENT or CURRENT[-1].name != "micromamba":
        return (prefix / "conda-meta").exists()
    # micromamba is extracting packages: a `micromamba package extract` child in the session
    # of the micromamba that installs into prefix
    sessions = {_session(pid) for pid in installer_processes(prefix, supervisor=False)}
    return any(_session(pid) in sessions for pid in _extractors())


def _session(pid: int) -> int | None:
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[4])


def _extractors() -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[0].endswith(b"/micromamba") and argv[1:3] == [b"package", b"extract"]:
                out.append(int(entry.name))
    return out


def installer_processes(prefix: Path, *, supervisor: bool = True) -> list[int]:
    """micromamba processes (and their supervisor) installing into ``prefix``: a path to a
    ``micromamba`` executable, ``install`` and ``prefix`` on the command line."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in argv]
        shown = words if supervisor else words[:1]  # the supervisor names it later
        exe = any("/" in w and w.rsplit("/", 1)[-1] == "micromamba" for w in shown)
        if exe and "install" in words and str(prefix) in words:
            out.append(int(entry.name))
    return out


def assert_installer_stopped(prefix: Path) -> None:
    """After the create building ``prefix`` was killed: no installer process is left, and with
    micromamba (killed while it extracted, before it links anything) not one package record
    was written afterwards: its process group died with the create."""
    deadline = time.monotonic() + 10
    while installer_processes(prefix) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert installer_processes(prefix) == []
    if CURRENT and CURRENT[-1].name == "micromamba":
        assert sorted(p.name for p in (prefix / "conda-meta").glob("*.json")) == []

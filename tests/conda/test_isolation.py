"""The conda tests run under real conda's Python with ``filterwarnings = error`` and never touch
the user's home (issue 14 item 3).

Before: 4 conda tests failed under real conda (conda's LocalFSAdapter leaves repodata.json
handles and 404 bodies open: ResourceWarning -> PytestUnraisableExceptionWarning), and
`test_install_explicit_with_real_conda` appended its env to the real ~/.conda/environments.txt.
"""

from __future__ import annotations

import json
import os
import pwd
import warnings
from pathlib import Path

import pytest

from tests.conda import realconda
from tests.conftest import SESSION_HOME, CondaSandbox

pytestmark = pytest.mark.conda


@pytest.mark.parametrize(
    ("message", "ignored"),
    [
        ("unclosed file <_io.BufferedReader name='/srv/ch/linux-64/repodata.json'>", True),
        ("Unclosed file <tempfile.SpooledTemporaryFile object at 0x7f3a2c1b9e10>", True),
        ("unclosed file <_io.BufferedReader name='/srv/ch/linux-64/other.json'>", False),
        ("unclosed file <_io.TextIOWrapper name='/srv/repodata.json' mode='r'>", False),
        ("unclosed file <_io.BufferedReader name='/srv/repodata.json.zst'>", False),
        ("unclosed <socket.socket fd=3, family=2, type=1, proto=6>", False),
    ],
    ids=["repodata-json", "spooled-404-body", "other-file", "text-mode", "zst", "socket"],
)
def test_only_condas_two_local_channel_leaks_are_ignored(message: str, ignored: bool) -> None:
    """The filters this test runs under (tests/conftest.CONDA_RESOURCE_WARNINGS + error)."""
    try:
        warnings.warn(message, ResourceWarning, stacklevel=1)
    except ResourceWarning:
        raised = True
    else:
        raised = False
    assert raised is not ignored


def test_a_libmamba_solve_on_a_file_channel_passes_under_filterwarnings_error(
    demo: Path,
) -> None:
    """In-process, as the solver tests run it: conda's fetcher opens the repodata files."""
    import gc

    from conda_unsloth.conda.solver import CondaLibmambaSolver
    from conda_unsloth.spec import Dep, EnvSpec
    from conda_unsloth.target import Target

    spec = EnvSpec(None, [(demo / "channel").as_uri()], [Dep("python=3.11"), Dep("pip")])
    solved = CondaLibmambaSolver().solve(spec, Target("linux-64", "12.1"), offline=True)
    assert {r.name for r in solved.records} == {"python", "pip"}
    gc.collect()  # the leaked handles are finalized here, under the filters


def _home_state(home: Path) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    for rel in (".conda/environments.txt", ".conda", ".condarc"):
        p = home / rel
        out[rel] = p.read_bytes() if p.is_file() else (b"<dir>" if p.is_dir() else None)
        if p.is_dir():
            out[rel + "/*"] = "\n".join(sorted(x.name for x in p.iterdir())).encode()
    return out


def test_conda_writes_only_into_the_sandbox_never_the_users_home(
    sandbox: CondaSandbox, tmp_path: Path
) -> None:
    """Creating an env registers it in ~/.conda/environments.txt: in-process (conda's explicit
    install) and in a child conda, the sandbox's file gets it, the user's is unchanged."""
    from conda_unsloth.conda.install import install_explicit
    from conda_unsloth.exports.lockread import read_lock
    from tests.channels import Pkg, write_channel

    homes = {Path(pwd.getpwuid(os.getuid()).pw_dir), Path(SESSION_HOME)} - {sandbox.home}
    before = {h: _home_state(h) for h in homes}
    assert Path.home() == sandbox.home

    chan = write_channel(tmp_path / "chan", [Pkg("mkl", "2023.1.0", "h213fc3f_46344")])
    rd = json.loads((chan / "linux-64" / "repodata.json").read_text())
    fn, rec = next(iter(rd["packages"].items()))
    lock = tmp_path / "explicit.txt"
    lock.write_text(f"@EXPLICIT\n{(chan / 'linux-64' / fn).as_uri()}#{rec['sha256']}\n")
    install_explicit(list(read_lock(lock, "linux-64").records), tmp_path / "in-process")
    r = realconda.conda(
        sandbox, "create", "-y", "-q", "-p", str(tmp_path / "child"), "--file", str(lock)
    )
    assert r.code == 0, r

    registered = (sandbox.home / ".conda" / "environments.txt").read_text().splitlines()
    assert str(tmp_path / "in-process") in registered
    assert str(tmp_path / "child") in registered
    assert list(sandbox.pkgs.glob("mkl-2023.1.0-*")), "the package cache is the sandbox's"
    assert {h: _home_state(h) for h in homes} == before

"""Issue 16, "full disk": a create that runs out of space says the disk is full and where (the
file system, its mount point, what is free), not "failed to link python-3.11.7-...", and leaves
nothing behind.

A real ENOSPC, not a simulation: a small tmpfs mounted in a private mount namespace (``unshare
--mount``; as a non-root user ``--user --map-root-user``), which disappears with the process.
The prefix is on the tmpfs, the package caches are not: linking (the rattler child) or the pip
stage (uv, pip) is what runs out of room. tests/robustness/test_faults.py keeps its file-size
limit (EFBIG) simulation."""

from __future__ import annotations

import functools
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests import envbuild
from tests.robustness.helpers import environ

SLOW = 240.0


@functools.cache
def _unshare() -> tuple[str, ...] | None:
    """How this host makes a private mount namespace where a tmpfs can be mounted (None: it
    cannot, say in a container without CAP_SYS_ADMIN and without user namespaces)."""
    import shutil
    import tempfile

    if shutil.which("unshare") is None:
        return None
    with tempfile.TemporaryDirectory() as d:
        for argv in (
            ("unshare", "--mount", "--propagation", "private"),
            ("unshare", "--user", "--map-root-user", "--mount", "--propagation", "private"),
        ):
            probe = subprocess.run(
                [*argv, "mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", d],
                capture_output=True,
                check=False,
            )
            if probe.returncode == 0:
                return argv
    return None


needs_mount = pytest.mark.skipif(
    _unshare() is None, reason="no private mount namespace here (unshare --mount) for a tmpfs"
)


def in_small_tmpfs(
    tmp: Path,
    mnt: Path,
    options: str,
    argv: list[str],
    *,
    command: tuple[str, ...] = ("conda_unsloth",),
    env: dict[str, str] | None = None,
) -> tuple[int, str, str]:
    """Run ``python -m conda_unsloth ARGV`` (``command``: ``("conda", "unsloth")`` for the
    plugin) with a fresh tmpfs (``options``) at ``mnt``, in a mount namespace of its own.
    Returns (exit code, stderr, what was left on the tmpfs)."""
    namespace = _unshare()
    assert namespace is not None
    mnt.mkdir(exist_ok=True)
    err, left = tmp / "stderr.txt", tmp / "left.txt"
    cli = shlex.join([sys.executable, "-m", *command, *argv])
    script = (
        f"mount -t tmpfs -o {options} tmpfs {shlex.quote(str(mnt))} || exit 99\n"
        f"{cli} > /dev/null 2> {shlex.quote(str(err))}\n"
        "rc=$?\n"
        f"find {shlex.quote(str(mnt))} -mindepth 1 > {shlex.quote(str(left))}\n"
        "exit $rc\n"
    )
    proc = subprocess.run(
        [*namespace, "sh", "-c", script],
        env=env or environ(tmp),
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=SLOW,
        check=False,
    )
    assert proc.returncode != 99, proc.stderr
    return proc.returncode, err.read_text(), left.read_text()


def _tmpfs_used_kb(tmp: Path, mnt: Path, argv: list[str]) -> int:
    """The space a successful create takes on a tmpfs (page rounding included)."""
    namespace = _unshare()
    assert namespace is not None
    mnt.mkdir(exist_ok=True)
    cli = shlex.join([sys.executable, "-m", "conda_unsloth", *argv])
    script = (
        f"mount -t tmpfs -o size=2g tmpfs {shlex.quote(str(mnt))} || exit 99\n"
        f"{cli} > /dev/null || exit 98\n"
        f"df -k --output=used {shlex.quote(str(mnt))} | tail -1\n"
    )
    proc = subprocess.run(
        [*namespace, "sh", "-c", script],
        env=environ(tmp),
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=SLOW,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.split()[-1])


def pad(wheel: Path, name: str, data: bytes) -> None:
    """Add ``name`` (``data``) to ``wheel``, with its line in the RECORD."""
    import base64
    import hashlib
    import zipfile

    with zipfile.ZipFile(wheel) as zf:
        files = {i.filename: zf.read(i) for i in zf.infolist()}
    record = next(n for n in files if n.endswith(".dist-info/RECORD"))
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    files[name] = data
    files[record] += f"{name},sha256={digest},{len(data)}\n".encode()
    with zipfile.ZipFile(wheel, "w") as zf:
        for n, body in files.items():
            zf.writestr(zipfile.ZipInfo(n, date_time=(2024, 1, 1, 0, 0, 0)), body)


def assert_disk_full(
    code: int, err: str, prefix: Path, mnt: Path, *, lead: str = "conda-unsloth: error: "
) -> None:
    assert code == 1, err
    assert "Traceback" not in err
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith(("==> ", "notice: "))]
    if lead.startswith("Conda"):  # conda's own transaction lines come first
        lines = [ln for ln in lines[next(i for i, ln in enumerate(lines) if lead in ln) :] if ln]
    assert lines[0].startswith(f"{lead}the disk is full (no space left on device)")
    assert f"while installing into {prefix}:" in lines[0]
    assert f"{prefix} is on the file system mounted at {mnt} (" in lines[0]
    assert all(ln.startswith("hint: ") for ln in lines[1:]), lines
    assert "failed to link" not in err


@needs_mount
def test_a_full_disk_while_linking_says_so_and_where(demo: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    prefix = mnt / "env"
    code, err, left = in_small_tmpfs(
        tmp_path, mnt, "size=8m", envbuild.create_args(demo, prefix, "--no-verify")
    )
    assert_disk_full(code, err, prefix, mnt)
    assert left == ""  # nothing of the half env, no journal, no lock file


@needs_mount
@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_a_full_disk_in_the_pip_stage_says_so_and_where(
    demo: Path, tmp_path: Path, installer: str
) -> None:
    """The wheelhouse's tqdm-standin carries 24 MB that do not compress: the conda packages fit
    on the tmpfs, the pip stage does not."""
    wheels = envbuild.wheelhouse(tmp_path / "wheels")
    pad(next(wheels.glob("tqdm_standin-*.whl")), "tqdm_standin/pad.bin", os.urandom(24 << 20))
    mnt = tmp_path / "small"
    prefix = mnt / "env"
    argv = [
        *envbuild.create_args(demo, prefix, "--no-verify", wheels=wheels),
        *["--pip-installer", installer],
    ]
    used = _tmpfs_used_kb(tmp_path, mnt, argv)
    code, err, left = in_small_tmpfs(tmp_path, mnt, f"size={used - 16 * 1024}k", argv)
    assert "pip stage" in err  # the conda packages were linked; the pip stage ran out
    assert_disk_full(code, err, prefix, mnt)
    assert left == ""


@needs_mount
@pytest.mark.conda
def test_inside_conda_a_full_disk_while_linking_says_so_and_where(
    demo: Path, tmp_path: Path
) -> None:
    """conda's transaction runs out of room and rolls back; our error says where."""
    from tests.conda import realconda
    from tests.conftest import CondaSandbox

    box = CondaSandbox(tmp_path / "_conda")
    env = {**realconda.environ(box), "CONDA_UNSLOTH_NVML": "0", "CONDA_UNSLOTH_NVIDIA_SMI": ""}
    mnt = tmp_path / "small"
    prefix = mnt / "env"
    code, err, left = in_small_tmpfs(
        tmp_path,
        mnt,
        "size=8m",
        realconda.create_args(demo, prefix, "--no-verify"),
        command=("conda", "unsloth"),
        env=env,
    )
    assert_disk_full(code, err, prefix, mnt, lead="CondaUnslothError: ")
    assert left == ""

"""Shared file systems: the prefix lock between processes, and the package cache kept
node-local when the prefix is on a network mount (read from /proc/self/mountinfo; a written
mountinfo stands in for mounts this host does not have: ``_fake_mount``)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conda_unsloth import prefixtx, sharedfs
from conda_unsloth.errors import PrefixError
from tests import envbuild
from tests.conftest import Result

# mountinfo lines as the kernel writes them (proc(5)); the first is its own example
FAKE_MOUNTINFO = """\
36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:41 / /apps rw,relatime shared:20 - nfs4 filer:/export/apps rw,vers=4.2,local_lock=none
41 40 8:3 / /apps/local rw,relatime shared:21 - xfs /dev/sdb1 rw
42 22 0:43 / /scratch rw,relatime - lustre 10.0.0.1@o2ib:/scratch rw,flock
43 22 0:44 / /home/alice\\040smith rw,relatime - gpfs gpfs0 rw
44 22 0:45 / /data rw - beegfs beegfs_nodev rw
45 22 0:46 / /data rw - ext4 /dev/sdc1 rw
46 22 0:47 / /cifs rw - cifs //srv/share rw
broken line without a separator
"""


@pytest.fixture
def _fake_mount(tmp_path: Path) -> Path:
    """A mountinfo file describing mounts this host does not have (test edge only)."""
    path = tmp_path / "mountinfo"
    path.write_text(FAKE_MOUNTINFO)
    return path


@pytest.mark.parametrize(
    ("path", "fstype", "point"),
    [
        ("/apps/unsloth/2024.12", "nfs4", "/apps"),
        ("/apps", "nfs4", "/apps"),
        ("/apps/local/envs/x", "xfs", "/apps/local"),  # the deeper mount wins
        ("/apps2/env", "ext4", "/"),  # /apps is not a prefix of /apps2
        ("/scratch/u/env", "lustre", "/scratch"),
        ("/home/alice smith/envs/u", "gpfs", "/home/alice smith"),  # \040 is a space
        ("/data/env", "ext4", "/data"),  # mounted over: the last one wins
        ("/cifs/e", "cifs", "/cifs"),
    ],
)
def test_mount_of_a_path(_fake_mount: Path, path: str, fstype: str, point: str) -> None:
    mount = sharedfs.mount_of(Path(path), _fake_mount)
    assert mount is not None and (mount.fstype, mount.point) == (fstype, point)


def test_the_kernels_example_line_parses() -> None:
    (m,) = sharedfs.parse_mountinfo(FAKE_MOUNTINFO.splitlines()[0])
    assert (m.point, m.fstype, m.source) == ("/mnt2", "ext3", "/dev/root")
    assert m.options == "rw,noatime,rw,errors=continue"


def test_an_env_on_a_network_mount_gets_a_node_local_cache(
    _fake_mount: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path / "local"))
    (tmp_path / "local").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    default = Path("/home/u/.cache/conda-unsloth/pkgs")
    where, why = sharedfs.package_cache(Path("/apps/unsloth/2024.12"), default, {}, _fake_mount)
    assert where == tmp_path / "local" / f"conda-unsloth-{os.getuid()}" / "pkgs"
    assert why == (
        f"/apps/unsloth/2024.12 is on nfs4 (/apps): package cache kept node-local in {where} "
        "(set CONDA_UNSLOTH_CACHE to choose another)"
    )
    assert (where.parent.stat().st_mode & 0o777) == 0o700
    # a cache the user chose, or a local prefix: left alone
    for environ in ({"CONDA_UNSLOTH_CACHE": "/x"}, {"CONDA_PKGS_DIRS": "/y"}):
        assert sharedfs.package_cache(Path("/apps/u"), default, environ, _fake_mount) == (
            default,
            None,
        )
    assert sharedfs.package_cache(Path("/apps/local/u"), default, {}, _fake_mount) == (
        default,
        None,
    )


def test_a_node_local_directory_someone_else_could_write_is_not_used(
    _fake_mount: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    planted = tmp_path / f"conda-unsloth-{os.getuid()}"
    planted.mkdir(mode=0o777)
    planted.chmod(0o777)
    default = Path("/home/u/.cache/conda-unsloth/pkgs")
    where, why = sharedfs.package_cache(Path("/scratch/env"), default, {}, _fake_mount)
    assert where == default
    assert why is not None and "is not a private directory of this user" in why


def test_this_hosts_own_mounts_are_read(tmp_path: Path) -> None:
    mount = sharedfs.mount_of(tmp_path)
    if not sharedfs.MOUNTINFO.exists():
        assert mount is None
        return
    assert mount is not None
    assert tmp_path.as_posix().startswith(mount.point)
    found = next(
        line.split(" - ")[1].split()[0]
        for line in sharedfs.MOUNTINFO.read_text().splitlines()
        if line.split()[4] == mount.point.replace(" ", "\\040")
    )
    assert mount.fstype == found


def test_unreadable_mountinfo_counts_as_local(tmp_path: Path) -> None:
    assert sharedfs.mount_of(tmp_path, tmp_path / "missing") is None
    default = tmp_path / "cache"
    assert sharedfs.package_cache(tmp_path, default, {}, tmp_path / "missing") == (default, None)


# ----------------------------------------------------------------------------- the prefix lock

HOLD = """\
import sys, time
from pathlib import Path
from conda_unsloth import prefixtx
with prefixtx.prefix_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_two_processes_reaching_the_prefix_by_two_paths_contend(tmp_path: Path) -> None:
    """One process locks the prefix by its real path, another names it through a symbolic
    link (as /apps and /gpfs/apps name one directory): the second is refused at once, naming
    the first; once the first is done, the lock is free and its file is gone."""
    real = tmp_path / "gpfs" / "apps"
    real.mkdir(parents=True)
    link = tmp_path / "apps"
    link.symlink_to(real)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(real / "unsloth"), "3"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        t0 = time.monotonic()
        with (
            pytest.raises(
                PrefixError, match=f"building {link / 'unsloth'} \\(pid {holder.pid}\\)"
            ),
            prefixtx.prefix_lock(link / "unsloth"),
        ):
            pass
        assert time.monotonic() - t0 < 1.0
    finally:
        holder.communicate(timeout=30)
    assert holder.returncode == 0
    with prefixtx.prefix_lock(link / "unsloth") as lock:
        assert lock.exists()
    assert sorted(p.name for p in real.iterdir()) == []


def test_a_create_on_a_network_mount_caches_packages_node_local(
    cli: Callable[..., Result],
    demo: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The create of an env under a directory that a written mountinfo says is NFS
    (``_fake_mount``) puts rattler's package cache in TMPDIR, not in ~/.cache."""
    apps = tmp_path / "apps"
    apps.mkdir()
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
        f"40 22 0:41 / {apps} rw - nfs4 filer:/export/apps rw,vers=4.2\n"
    )
    monkeypatch.setattr(sharedfs, "MOUNTINFO", mountinfo)
    for var in ("CONDA_UNSLOTH_CACHE", "CONDA_PKGS_DIRS", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "local"))
    (tmp_path / "local").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", None)
    r = cli(*envbuild.create_args(demo, apps / "env"))
    assert r.code == 0, r.err
    assert f"is on nfs4 ({apps}): package cache kept node-local" in r.err
    local = tmp_path / "local" / f"conda-unsloth-{os.getuid()}" / "pkgs"
    assert (local / "pytorch-2.5.1-py3.11_cuda12.1_cudnn9.1.0_0").is_dir()
    assert not (tmp_path / "home" / ".cache" / "conda-unsloth" / "pkgs").exists()

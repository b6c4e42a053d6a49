"""Shared (network) file systems: which mount a path is on, and where the package cache goes
when an environment is built on one.

An env on a shared file system is built once (a login node) and read by every compute node.
Two things go wrong there if the package cache shares the file system with the env, as the
default cache in ``~/.cache`` often does on clusters (home on NFS):

* rattler links a package's files from its cache into the prefix (hard links when both are on
  one file system): the env then shares inodes with a cache that other builds, from other nodes,
  clean and rewrite;
* the cache's own locks are ``flock``/``fcntl`` locks, which NFS only shares between nodes
  through lockd (NFSv3) or the NFSv4 protocol, and not at all with ``local_lock=flock|all``
  (or Lustre's ``localflock``, BeeGFS without ``tuneUseGlobalFileLocks``).

So when neither ``CONDA_UNSLOTH_CACHE`` nor ``CONDA_PKGS_DIRS`` says where the cache is, and
the prefix is on a network file system (``/proc/self/mountinfo``: nfs, nfs4, lustre, gpfs,
beegfs, cifs, smb3, ceph, glusterfs), :func:`package_cache` keeps it node-local, in
``$TMPDIR/conda-unsloth-<uid>/pkgs``; the files are then copied into the prefix, never linked.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

MOUNTINFO = Path("/proc/self/mountinfo")
NETWORK_FS = frozenset(
    {
        "nfs",
        "nfs4",
        "lustre",
        "gpfs",
        "beegfs",
        "cifs",
        "smb3",
        "ceph",
        "fuse.ceph",
        "glusterfs",
        "fuse.glusterfs",
    }
)
_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class Mount:
    point: str  # where it is mounted
    fstype: str
    source: str
    options: str  # per-mount and per-superblock options, comma-joined

    @property
    def network(self) -> bool:
        return self.fstype in NETWORK_FS


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (``\\040``)."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """The mounts of a ``/proc/PID/mountinfo`` text (proc(5)): ``ID PARENT MAJ:MIN ROOT POINT
    OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS``; malformed lines are skipped."""
    out = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        if sep < 6 or len(fields) < sep + 3:
            continue
        out.append(
            Mount(
                point=_unescape(fields[4]),
                fstype=fields[sep + 1],
                source=_unescape(fields[sep + 2]),
                options=f"{fields[5]},{fields[sep + 3] if len(fields) > sep + 3 else ''}",
            )
        )
    return out


def _within(path: PurePosixPath, point: str) -> bool:
    mount = PurePosixPath(point)
    return path == mount or mount in path.parents


def mount_of(path: Path, mountinfo: Path | None = None) -> Mount | None:
    """The mount ``path`` is on (the deepest mount point above it, the last one mounted there
    winning); ``path`` need not exist. None when ``mountinfo`` cannot be read."""
    try:
        text = (mountinfo or MOUNTINFO).read_text(encoding="utf-8", errors="surrogateescape")
    except OSError:
        return None
    target = PurePosixPath(os.path.realpath(path))
    best: Mount | None = None
    for mount in parse_mountinfo(text):
        if _within(target, mount.point) and (
            best is None
            or len(PurePosixPath(mount.point).parts) >= len(PurePosixPath(best.point).parts)
        ):
            best = mount
    return best


def node_local_cache() -> Path:
    """``$TMPDIR/conda-unsloth-<uid>/pkgs`` (per user: other users cannot plant packages)."""
    import tempfile

    return Path(tempfile.gettempdir()) / f"conda-unsloth-{os.getuid()}" / "pkgs"


def _private_dir(path: Path) -> bool:
    """``path`` exists (made now, mode 0700, if needed) as a real directory of this user that
    nobody else may write or read: a predictable name in /tmp must not be someone else's."""
    import stat

    try:
        path.mkdir(mode=0o700, exist_ok=True)
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077


def package_cache(
    prefix: Path,
    default: Path,
    environ: Mapping[str, str] | None = None,
    mountinfo: Path | None = None,
) -> tuple[Path, str | None]:
    """Where the package cache of a create of ``prefix`` goes: ``default`` (the configured
    cache, :func:`conda_unsloth.cache.cache_dir`), unless neither ``CONDA_UNSLOTH_CACHE`` nor
    ``CONDA_PKGS_DIRS`` is set and ``prefix`` is on a network file system: then node-local.
    The second item says why, when the cache moved (for a progress line)."""
    env = os.environ if environ is None else environ
    if env.get("CONDA_UNSLOTH_CACHE") or env.get("CONDA_PKGS_DIRS"):
        return default, None
    mount = mount_of(prefix, mountinfo)
    if mount is None or not mount.network:
        return default, None
    local = node_local_cache()
    if not _private_dir(local.parent):
        return default, (
            f"{prefix} is on {mount.fstype} ({mount.point}), but {local.parent} is not a private "
            f"directory of this user: package cache left in {default}"
        )
    return local, (
        f"{prefix} is on {mount.fstype} ({mount.point}): package cache kept node-local in "
        f"{local} (set CONDA_UNSLOTH_CACHE to choose another)"
    )

"""Writing a bundle: :func:`plan` locates and checks every file (nothing written),
:func:`write` writes the tar atomically (manifest first, the channel indexed by py-rattler)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ... import __version__
from ...errors import SpecError
from .layout import GENERATED_MARK, MANIFEST, SCHEMA, sha256
from .locate import Member, locate_packages, locate_wheels

if TYPE_CHECKING:
    from ...solvers.base import SolvedEnv


@dataclass(frozen=True)
class Plan:
    """What a bundle of ``prefix`` holds, every file located and checked."""

    prefix: Path
    solved: SolvedEnv
    explicit: str
    packages: tuple[Member, ...]
    wheels: tuple[Member, ...]
    marker: dict[str, Any]
    origins: dict[str, tuple[str | None, str | None]]  # fn -> the source conda-meta url, channel

    @property
    def size(self) -> int:
        return sum(m.size for m in (*self.packages, *self.wheels))


def _conda_meta_origins(prefix: Path) -> dict[str, tuple[str | None, str | None]]:
    from ...redact import redact_url

    out: dict[str, tuple[str | None, str | None]] = {}
    for f in sorted((prefix / "conda-meta").glob("*.json")):
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        url = data.get("url") if isinstance(data.get("url"), str) else None
        fn = data.get("fn") if isinstance(data.get("fn"), str) else None
        fn = fn or (url.rsplit("/", 1)[-1] if url else None)
        channel = data.get("channel") if isinstance(data.get("channel"), str) else None
        if fn:
            out[fn] = (redact_url(url) if url else None, redact_url(channel) if channel else None)
    return out


def plan(prefix: Path, *, pkgs_dirs: Sequence[Path], find_links: Sequence[Path]) -> Plan:
    """Locate and check every file of the bundle of ``prefix`` (nothing is written)."""
    from ... import exports, marker
    from .. import installed

    solved = installed.solved_from_prefix(prefix)
    if not solved.records:
        raise SpecError(f"{prefix} has no conda packages to bundle")
    explicit = installed.render_installed(solved, exports.by_name("explicit"), prefix)
    packages = locate_packages(solved.records, pkgs_dirs)
    wheels = locate_wheels(solved.pip, find_links)
    mark = marker.read(prefix) or {}
    return Plan(
        prefix,
        solved,
        explicit,
        tuple(packages),
        tuple(wheels),
        mark,
        _conda_meta_origins(prefix),
    )


def _manifest(p: Plan, files: dict[str, dict[str, Any]]) -> dict[str, Any]:
    from ...install import now
    from ...pipeline import constraints_for

    pip = []
    for pk, m in zip(p.solved.pip, p.wheels, strict=True):
        pip.append(
            {
                "name": pk.name,
                "version": pk.version,
                "url": pk.url,
                "sha256": pk.sha256 or m.sha256,
                "file": m.name,
            }
        )
    conda = []
    for rec in p.solved.records:
        doc = rec.to_json()
        url, channel = p.origins.get(rec.fn, (None, None))
        doc["meta_url"] = url or rec.url
        doc["meta_channel"] = channel
        conda.append(doc)
    target = p.marker.get("target")
    return {
        "schema": SCHEMA,
        "generated_by": f"{GENERATED_MARK} {__version__}",
        "created": now(),
        "source_prefix": str(p.prefix),
        "platform": p.solved.platform,
        "solver": p.marker.get("solver") if isinstance(p.marker.get("solver"), str) else None,
        "target": target if isinstance(target, dict) else None,
        "channels": [c for c in p.marker.get("channels") or () if isinstance(c, str)],
        "profile": p.marker.get("profile") if isinstance(p.marker.get("profile"), str) else None,
        "conda": conda,
        "pip": pip,
        "pip_constraints": constraints_for(p.solved, []),
        "files": files,
    }


def _text_member(tar: tarfile.TarFile, name: str, data: bytes, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = mtime
    info.mode = 0o644
    tar.addfile(info, fileobj=_bytes_io(data))


def _bytes_io(data: bytes) -> Any:
    import io

    return io.BytesIO(data)


def _index(channel: Path, subdirs: set[str]) -> None:
    """repodata.json for each subdir of ``channel`` (and noarch), by py-rattler's indexer."""
    import asyncio

    from rattler.index import index_fs

    for sub in subdirs | {"noarch"}:
        (channel / sub).mkdir(parents=True, exist_ok=True)
    asyncio.run(index_fs(channel, write_zst=False, write_shards=False, force=True))
    shutil.rmtree(channel / ".tmp", ignore_errors=True)


def _stage(src: Path, dest: Path) -> None:
    """``src`` at ``dest``: a hard link where the file system allows, else a copy (the indexer
    skips symbolic links)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def write(p: Plan, out: Path) -> tuple[str, int]:
    """Write the bundle of ``p`` to ``out`` atomically (a temp file beside it, then a rename);
    returns its sha256 and size."""
    import time

    from ...outputs import fsync_dir

    mtime = int(time.time())
    real = out.resolve()
    with tempfile.TemporaryDirectory(prefix=".conda-unsloth-bundle-", dir=real.parent) as tmp:
        stage = Path(tmp) / "stage"
        for m in p.packages:
            _stage(m.source, stage / m.name)
        _index(stage / "channel", {r.subdir for r in p.solved.records})
        extra: dict[str, bytes] = {"explicit.txt": p.explicit.encode()}
        constraints = "\n".join(_manifest(p, {})["pip_constraints"])
        extra["pip-constraints.txt"] = (constraints + "\n" if constraints else "").encode()
        lines = []
        for pk, m in zip(p.solved.pip, p.wheels, strict=True):
            lines.append(f"{pk.name}=={pk.version} --hash=sha256:{m.sha256}\n")
        extra["pip-requirements.txt"] = "".join(lines).encode()
        files: dict[str, dict[str, Any]] = {}
        for name, data in extra.items():
            files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        for sub in sorted((stage / "channel").iterdir()):
            repodata = sub / "repodata.json"
            if repodata.is_file():
                rel = f"channel/{sub.name}/repodata.json"
                files[rel] = {"sha256": sha256(repodata), "size": repodata.stat().st_size}
        for m in (*p.packages, *p.wheels):
            files[m.name] = {"sha256": m.sha256, "size": m.size}
        manifest = json.dumps(_manifest(p, files), indent=2, sort_keys=False).encode() + b"\n"
        partial = Path(tmp) / "bundle.tar"
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
            _text_member(tar, MANIFEST, manifest, mtime)  # first: the generated mark is read
            for name, data in extra.items():
                _text_member(tar, name, data, mtime)
            for sub in sorted((stage / "channel").iterdir()):
                repodata = sub / "repodata.json"
                if repodata.is_file():
                    tar.add(repodata, f"channel/{sub.name}/repodata.json", recursive=False)
            for m in p.packages:
                tar.add(stage / m.name, m.name, recursive=False)
            for m in p.wheels:
                tar.add(m.source, m.name, recursive=False)
        with open(partial, "rb+") as fh:
            os.fsync(fh.fileno())
        try:
            old_mode = real.stat().st_mode & 0o777
        except FileNotFoundError:
            old_mode = 0o644
        os.chmod(partial, old_mode)
        digest, size = sha256(partial), partial.stat().st_size
        os.replace(partial, real)
    fsync_dir(real.parent)
    return digest, size

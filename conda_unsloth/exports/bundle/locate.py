"""Where a bundle's files come from, nothing downloaded: each conda package from a package
cache that keeps package files or its own ``file://`` URL, each wheel from its marker URL or a
``--pip-find-links`` folder; every file checked against its record's hash."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from ...errors import SpecError
from .layout import md5, sha256

if TYPE_CHECKING:
    from ...solvers.base import PipPackage, Record


def _local_path(url: str | None) -> Path | None:
    if not url or not url.startswith("file://"):
        return None
    return Path(unquote(urlparse(url).path))


def package_dirs(extra: Sequence[Path], envs_dirs: Sequence[Path]) -> list[Path]:
    """Package caches that keep package files, in the order they are searched: ``extra``
    (``--pkgs-dir``), ``$CONDA_PKGS_DIRS``, ``ROOT/pkgs`` beside each ``ROOT/envs`` of the
    runtime's env directories, ``~/.conda/pkgs``; those that exist."""
    dirs: list[Path] = [Path(d).expanduser() for d in extra]
    for entry in os.environ.get("CONDA_PKGS_DIRS", "").split(","):
        if entry.strip():
            dirs.append(Path(entry.strip()).expanduser())
    for d in envs_dirs:
        if d.name == "envs":
            dirs.append(d.parent / "pkgs")
    dirs.append(Path.home() / ".conda" / "pkgs")
    return [d for d in dict.fromkeys(dirs) if d.is_dir()]


@dataclass(frozen=True)
class Member:
    """A file of the bundle: its path in the tar, where it is read from, its sha256 and size."""

    name: str
    source: Path
    sha256: str
    size: int


def _matches(path: Path, rec: Record) -> bool:
    try:
        if rec.sha256:
            return sha256(path) == rec.sha256
        if rec.md5:
            return md5(path) == rec.md5
    except OSError:
        return False
    return False


def locate_packages(records: Sequence[Record], dirs: Sequence[Path]) -> list[Member]:
    """The package file of every record (SpecError naming the first one found nowhere)."""
    found: list[Member] = []
    missing: list[Record] = []
    for rec in records:
        if not rec.sha256 and not rec.md5:
            raise SpecError(
                f"the conda record of {rec.name} {rec.version} {rec.build} has no sha256 or md5: "
                "its package file cannot be checked; refusing to bundle it"
            )
        candidates = [d / rec.fn for d in dirs]
        local = _local_path(rec.url)
        if local is not None:
            candidates.append(local)
        hit = next((c for c in candidates if c.is_file() and _matches(c, rec)), None)
        if hit is None:
            missing.append(rec)
            continue
        found.append(
            Member(f"channel/{rec.subdir}/{rec.fn}", hit, sha256(hit), hit.stat().st_size)
        )
    if missing:
        first = missing[0]
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        where = ", ".join(str(d) for d in dirs) or "no package cache found"
        raise SpecError(
            f"conda package {first.fn} is not in a package cache{more}: searched {where}"
            + (f" and {first.url}" if _local_path(first.url) else "")
            + "; nothing was written",
            hints=[
                "download it again into a package cache (conda install --download-only, or "
                "conda create --download-only with the env's explicit lock) and give "
                "--pkgs-dir DIR",
                "conda-unsloth's own cache keeps extracted packages only, not the files",
            ],
        )
    return found


def _norm(name: str) -> str:
    return "".join("-" if c in "._-" else c for c in name.lower())


def _wheel_name(fn: str) -> tuple[str, str] | None:
    parts = fn.removesuffix(".whl").split("-")
    return (_norm(parts[0]), parts[1]) if fn.endswith(".whl") and len(parts) >= 5 else None


def locate_wheels(pip: Sequence[PipPackage], find_links: Sequence[Path]) -> list[Member]:
    """The wheel of every pip package: its marker URL's file, else a file of ``find_links``
    with that name (or that project and version), matching the recorded sha256."""
    found: list[Member] = []
    for p in pip:
        candidates: list[Path] = []
        local = _local_path(p.url)
        if local is not None:
            candidates.append(local)
        fn = p.url.rsplit("/", 1)[-1].split("#")[0] if p.url else None
        for d in find_links:
            if fn:
                candidates.append(d / fn)
            with contextlib.suppress(OSError):
                candidates += sorted(
                    w for w in d.glob("*.whl") if _wheel_name(w.name) == (_norm(p.name), p.version)
                )
        hit = None
        for c in dict.fromkeys(candidates):
            if c.is_file() and c.name.endswith(".whl") and (not p.sha256 or sha256(c) == p.sha256):
                hit = c
                break
        if hit is None:
            where = ", ".join(str(d) for d in find_links) or "no --pip-find-links given"
            raise SpecError(
                f"pip package {p.name}=={p.version}: its wheel"
                + (f" ({fn})" if fn else "")
                + f" was found neither at its recorded URL nor in {where}; nothing was written",
                hints=[
                    f"pip download --no-deps --only-binary :all: {p.name}=={p.version} -d DIR, "
                    "then add --pip-find-links DIR"
                ],
            )
        found.append(Member(f"wheels/{hit.name}", hit, sha256(hit), hit.stat().st_size))
    names = [m.name for m in found]
    if len(set(names)) != len(names):
        raise SpecError("two pip packages resolve to the same wheel file; refusing to bundle")
    return found

"""Build real local conda channels for tests: ``repodata.json`` plus tiny but real ``.tar.bz2``
and ``.conda`` artifacts (``info/index.json``, ``info/paths.json``, ``info/files``, payload
files) whose md5 / sha256 / size in the repodata are those of the bytes on disk.

A channel built here works as a ``file://`` channel for py-rattler (solve and install) and for
conda. Typical use::

    from tests.channels import Pkg, write_channel

    chan = write_channel(
        tmp_path / "pytorch",
        [
            Pkg("pytorch", "2.5.1", "py3.11_cuda12.1_cudnn9.1.0_0",
                depends=("python >=3.11,<3.12.0a0", "pytorch-cuda >=12.1,<12.2")),
            Pkg("pytorch-mutex", "1.0", "cuda", subdir="noarch", noarch="generic"),
        ],
    )
    chan.as_uri()  # file:///.../pytorch

``Pkg`` describes one record; ``write_channel`` writes every subdir it needs (always
``noarch`` and ``linux-64``, empty when unused) and returns the channel directory.
``noarch_python`` makes the record of a ``noarch: python`` package with a module file in
``site-packages``. ``.conda`` artifacts need a zstd compressor (``zstandard``, or
``compression.zstd`` on Python >= 3.14); ``zstd_available()`` tells whether one is present.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TIMESTAMP_MS = 1_714_000_000_000  # a fixed build time (2024-04-24) so artifacts are reproducible
SUBDIRS = ("linux-64", "noarch")


@dataclass(frozen=True)
class Pkg:
    """One package record. ``fmt`` is ``"tar.bz2"`` or ``"conda"``."""

    name: str
    version: str
    build: str = "0"
    build_number: int = 0
    depends: tuple[str, ...] = ()
    constrains: tuple[str, ...] = ()
    subdir: str = "linux-64"
    noarch: str | None = None
    fmt: str = "tar.bz2"
    track_features: str = ""
    license: str = "BSD-3-Clause"
    timestamp: int = TIMESTAMP_MS
    # payload: path inside the prefix -> bytes; default: one small text file
    files: Mapping[str, bytes] = field(default_factory=dict)

    @property
    def stem(self) -> str:
        return f"{self.name}-{self.version}-{self.build}"

    @property
    def fn(self) -> str:
        return f"{self.stem}.{self.fmt}"

    def payload(self) -> dict[str, bytes]:
        if self.files:
            return dict(self.files)
        return {f"share/{self.name}/{self.stem}.txt": f"{self.stem}\n".encode()}

    def index_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "build": self.build,
            "build_number": self.build_number,
            "depends": list(self.depends),
            "constrains": list(self.constrains),
            "license": self.license,
            "subdir": self.subdir,
            "timestamp": self.timestamp,
        }
        if self.noarch:
            doc["noarch"] = self.noarch
        if self.track_features:
            doc["track_features"] = self.track_features
        return doc


def noarch_python(
    name: str,
    version: str,
    module: str | None = None,
    depends: Iterable[str] = ("python >=3.9",),
    build: str = "pyhd8ed1ab_0",
    fmt: str = "tar.bz2",
    source: str | None = None,
) -> Pkg:
    """A ``noarch: python`` package whose payload is ``site-packages/<module>/__init__.py``
    (conda relocates ``site-packages/`` into the env's python at install time)."""
    mod = module or name.replace("-", "_")
    text = source if source is not None else f'__version__ = "{version}"\n'
    return Pkg(
        name,
        version,
        build,
        depends=tuple(depends),
        subdir="noarch",
        noarch="python",
        fmt=fmt,
        files={f"site-packages/{mod}/__init__.py": text.encode()},
    )


# ----------------------------------------------------------------------------- artifacts


def zstd_available() -> bool:
    return _zstd_compress(b"") is not None


def _zstd_compress(data: bytes) -> bytes | None:
    try:
        from compression import zstd  # type: ignore[import-not-found]  # Python >= 3.14

        out: bytes = zstd.compress(data)
        return out
    except ImportError:
        pass
    try:
        import zstandard
    except ImportError:
        return None
    return zstandard.ZstdCompressor(level=3).compress(data)


def _info_files(pkg: Pkg) -> dict[str, bytes]:
    payload = pkg.payload()
    paths = {
        "paths": [
            {
                "_path": p,
                "path_type": "hardlink",
                "sha256": hashlib.sha256(data).hexdigest(),
                "size_in_bytes": len(data),
            }
            for p, data in sorted(payload.items())
        ],
        "paths_version": 1,
    }
    return {
        "info/index.json": json.dumps(pkg.index_json(), indent=2, sort_keys=True).encode(),
        "info/paths.json": json.dumps(paths, indent=2).encode(),
        "info/files": "".join(f"{p}\n" for p in sorted(payload)).encode(),
    }


def _tar(members: Mapping[str, bytes], mtime: int, mode: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:  # type: ignore[call-overload]
        for arc, data in sorted(members.items()):
            ti = tarfile.TarInfo(arc)
            ti.size = len(data)
            ti.mtime = mtime
            ti.mode = 0o644
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def build_artifact(pkg: Pkg) -> bytes:
    """The bytes of ``pkg``'s artifact (``.tar.bz2`` or ``.conda``, per ``pkg.fmt``)."""
    mtime = pkg.timestamp // 1000
    info = _info_files(pkg)
    if pkg.fmt == "tar.bz2":
        return _tar({**info, **pkg.payload()}, mtime, "w:bz2")
    if pkg.fmt != "conda":
        raise ValueError(f"unknown package format {pkg.fmt!r}")
    info_tar = _zstd_compress(_tar(info, mtime, "w"))
    pkg_tar = _zstd_compress(_tar(pkg.payload(), mtime, "w"))
    if info_tar is None or pkg_tar is None:
        raise RuntimeError(".conda artifacts need zstandard (pip install zstandard)")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("metadata.json", json.dumps({"conda_pkg_format_version": 2}))
        zf.writestr(f"pkg-{pkg.stem}.tar.zst", pkg_tar)
        zf.writestr(f"info-{pkg.stem}.tar.zst", info_tar)
    return buf.getvalue()


def repodata_entry(pkg: Pkg, data: bytes) -> dict[str, Any]:
    entry = pkg.index_json()
    entry.update(
        md5=hashlib.md5(data).hexdigest(),
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
    )
    return entry


def write_channel(
    root: Path,
    packages: Iterable[Pkg],
    subdirs: Iterable[str] = SUBDIRS,
    *,
    artifacts: bool = True,
) -> Path:
    """Write a channel at ``root`` (created if needed) and return ``root``.

    Each package's artifact is built and written to ``root/<subdir>/<fn>`` and its record (with
    the artifact's md5, sha256 and size) to ``root/<subdir>/repodata.json``. Every subdir in
    ``subdirs`` gets a ``repodata.json``, empty when it has no package. ``artifacts=False``
    writes only repodata (records still carry real hashes of the bytes that would be written).
    """
    by_subdir: dict[str, dict[str, dict[str, dict[str, Any]]]] = {
        s: {"packages": {}, "packages.conda": {}} for s in subdirs
    }
    for pkg in packages:
        data = build_artifact(pkg)
        section = "packages.conda" if pkg.fmt == "conda" else "packages"
        by_subdir.setdefault(pkg.subdir, {"packages": {}, "packages.conda": {}})
        by_subdir[pkg.subdir][section][pkg.fn] = repodata_entry(pkg, data)
        if artifacts:
            (root / pkg.subdir).mkdir(parents=True, exist_ok=True)
            (root / pkg.subdir / pkg.fn).write_bytes(data)
    for subdir, sections in by_subdir.items():
        (root / subdir).mkdir(parents=True, exist_ok=True)
        doc = {
            "info": {"subdir": subdir},
            "packages": sections["packages"],
            "packages.conda": sections["packages.conda"],
            "removed": [],
            "repodata_version": 1,
        }
        (root / subdir / "repodata.json").write_text(json.dumps(doc, indent=1, sort_keys=True))
    return root

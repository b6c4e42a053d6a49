"""Opening a bundle for ``create --from-bundle``: every member checked against the
manifest's sha256 while it is extracted, each package against its record, each wheel against
its pin; anything else refused before anything is written."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from ...errors import SpecError, UsageError
from .installer import bundle_installer
from .layout import MANIFEST, MAX_MANIFEST_BYTES, SCHEMA, md5

if TYPE_CHECKING:
    from ...pipeline import Solution
    from ...runtime import Runtime
    from ...solvers.base import Record


@dataclass
class Opened:
    """A bundle, extracted and checked, ready for ``create``."""

    path: Path
    root: Path
    manifest: dict[str, Any]
    solution: Solution
    origins: dict[str, tuple[str, str | None]]  # fn -> (url, channel) of the source records

    @property
    def wheels(self) -> Path:
        return self.root / "wheels"

    @property
    def channel(self) -> Path:
        return self.root / "channel"

    def runtime(self, runtime: Runtime) -> Runtime:
        """``runtime`` whose installer takes every package from this bundle's channel."""
        return dataclasses.replace(
            runtime, install=bundle_installer(runtime.install, self.channel, self.origins)
        )


def _bad(path: Path, why: str) -> SpecError:
    return SpecError(
        f"bundle {path}: {why}; refusing it (nothing was written)",
        hints=["write it again on the source machine: conda unsloth export --format bundle"],
    )


def _safe_name(name: str) -> bool:
    pure = PurePosixPath(name)
    return (
        bool(name)
        and not pure.is_absolute()
        and ".." not in pure.parts
        and "\\" not in name
        and all(part not in ("", ".") for part in pure.parts)
        and all(ch.isprintable() for ch in name)
    )


def _read_manifest(path: Path, tar: tarfile.TarFile, first: tarfile.TarInfo) -> dict[str, Any]:
    if first.name != MANIFEST or not first.isfile():
        raise _bad(path, f"its first member is not {MANIFEST} (not a conda-unsloth bundle)")
    if first.size > MAX_MANIFEST_BYTES:
        raise _bad(path, f"{MANIFEST} is larger than {MAX_MANIFEST_BYTES // 1_000_000} MB")
    fh = tar.extractfile(first)
    assert fh is not None
    try:
        doc = json.loads(fh.read().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(path, f"{MANIFEST} is not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        got = doc.get("schema") if isinstance(doc, dict) else None
        raise _bad(path, f"{MANIFEST} has schema {got!r}, not {SCHEMA!r}")
    for key, kind in (("files", dict), ("conda", list), ("pip", list), ("platform", str)):
        if not isinstance(doc.get(key), kind):
            raise _bad(path, f"{MANIFEST} has no valid '{key}'")
    for name, entry in doc["files"].items():
        if (
            not _safe_name(name)
            or not isinstance(entry, dict)
            or not isinstance(entry.get("sha256"), str)
            or not isinstance(entry.get("size"), int)
        ):
            raise _bad(path, f"{MANIFEST} lists {name!r} without a valid name, sha256 and size")
    return doc


def _open_tar(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, "r:")
    except (OSError, tarfile.TarError) as exc:
        raise _bad(path, f"not a tar file ({exc})") from None


def _extract(path: Path, root: Path) -> dict[str, Any]:
    """Extract the bundle into ``root``, checking every member against the manifest; returns
    the manifest."""
    import functools

    with _open_tar(path) as tar:
        try:
            first = tar.next()
            if first is None:
                raise _bad(path, "it is empty")
            manifest = _read_manifest(path, tar, first)
            files: dict[str, dict[str, Any]] = manifest["files"]
            seen: set[str] = set()
            while True:
                info = tar.next()
                if info is None:
                    break
                name = info.name
                if info.isdir():
                    continue
                if not info.isfile() or not _safe_name(name) or name not in files:
                    raise _bad(path, f"it holds {name!r}, which its manifest does not list")
                if name in seen:
                    raise _bad(path, f"it holds {name} twice")
                seen.add(name)
                entry = files[name]
                if info.size != entry["size"]:
                    raise _bad(
                        path, f"{name} has {info.size} bytes, its manifest says {entry['size']}"
                    )
                src = tar.extractfile(info)
                assert src is not None
                dest = root / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                h = hashlib.sha256()
                with open(dest, "xb") as out:
                    for chunk in iter(functools.partial(src.read, 1 << 20), b""):
                        h.update(chunk)
                        out.write(chunk)
                if h.hexdigest() != entry["sha256"]:
                    raise _bad(
                        path,
                        f"{name} does not match its sha256 (manifest {entry['sha256'][:12]}…, "
                        f"file {h.hexdigest()[:12]}…): it was changed after the bundle was written",
                    )
        except (tarfile.TarError, EOFError) as exc:
            raise _bad(path, f"it is damaged ({exc})") from None
        except OSError as exc:
            raise SpecError(f"bundle {path}: cannot extract it: {exc.strerror or exc}") from None
    absent = sorted(set(files) - seen)
    if absent:
        raise _bad(path, f"{absent[0]} is listed in its manifest but missing")
    return manifest


def _record(doc: Any, where: Path) -> Record:
    from ...solvers.base import Record

    if not isinstance(doc, dict):
        raise _bad(where, "a conda record is not an object")
    try:
        return Record(
            name=str(doc["name"]),
            version=str(doc["version"]),
            build=str(doc["build"]),
            build_number=int(doc.get("build_number") or 0),
            channel=str(doc.get("channel") or ""),
            subdir=str(doc["subdir"]),
            url=str(doc["url"]),
            fn=str(doc["fn"]),
            md5=doc.get("md5") if isinstance(doc.get("md5"), str) else None,
            sha256=doc.get("sha256") if isinstance(doc.get("sha256"), str) else None,
            depends=tuple(str(d) for d in doc.get("depends") or ()),
            constrains=tuple(str(d) for d in doc.get("constrains") or ()),
            size=doc.get("size") if isinstance(doc.get("size"), int) else None,
            timestamp=doc.get("timestamp") if isinstance(doc.get("timestamp"), int) else None,
            noarch=doc.get("noarch") if isinstance(doc.get("noarch"), str) else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise _bad(where, f"a conda record lacks {exc}") from None


def _target(doc: Any) -> Any:
    """The source env's Target (from its marker), so the new env's marker says the same."""
    from ...target import CudaFrom, Target

    if not isinstance(doc, dict) or not isinstance(doc.get("cuda"), str):
        return None
    archs = doc.get("gpu_archs")
    return Target(
        platform=str(doc.get("platform") or "linux-64"),
        cuda=doc["cuda"],
        archs=tuple(str(a) for a in archs) if isinstance(archs, list) else (),
        driver_cuda=doc.get("driver_cuda") if isinstance(doc.get("driver_cuda"), str) else None,
        glibc=doc.get("glibc") if isinstance(doc.get("glibc"), str) else None,
        cuda_from=CudaFrom.FLAG,
        why=str(doc.get("cuda_source") or ""),
    )


def _solution(path: Path, root: Path, manifest: dict[str, Any], platform: str) -> Opened:
    from ...pipeline import Solution
    from ...solvers.base import PipPackage, SolvedEnv

    if manifest["platform"] != platform:
        raise SpecError(
            f"bundle {path} is for {manifest['platform']}, not {platform}",
            hints=[f"--platform {manifest['platform']}"],
        )
    files: dict[str, dict[str, Any]] = manifest["files"]
    records = [_record(d, path) for d in manifest["conda"]]
    if not records:
        raise _bad(path, "it lists no conda packages")
    origins: dict[str, tuple[str, str | None]] = {}
    for rec, doc in zip(records, manifest["conda"], strict=True):
        name = f"channel/{rec.subdir}/{rec.fn}"
        entry = files.get(name)
        if entry is None:
            raise _bad(path, f"{rec.fn} is not in its channel")
        if rec.sha256 and entry["sha256"] != rec.sha256:
            raise _bad(path, f"{name} is not the package its record names (sha256 differs)")
        if not rec.sha256 and rec.md5 and md5(root / name) != rec.md5:
            raise _bad(path, f"{name} is not the package its record names (md5 differs)")
        meta_url = doc.get("meta_url") if isinstance(doc.get("meta_url"), str) else rec.url
        meta_channel = (
            doc.get("meta_channel") if isinstance(doc.get("meta_channel"), str) else None
        )
        origins[rec.fn] = (meta_url, meta_channel)
    # what is installed is the bundle's copy: the checks before the build (the file matches its
    # record; offline, nothing is downloaded) look at it; the env's records get the source URL
    # back afterwards (``origins``, installer.relabel)
    records = [
        dataclasses.replace(r, url=(root / "channel" / r.subdir / r.fn).as_uri()) for r in records
    ]
    pip = []
    for d in manifest["pip"]:
        if not isinstance(d, dict) or not all(
            isinstance(d.get(k), str) for k in ("name", "version", "sha256", "file")
        ):
            raise _bad(path, "a pip entry lacks its name, version, sha256 or file")
        entry = files.get(d["file"])
        if entry is None or not d["file"].startswith("wheels/") or entry["sha256"] != d["sha256"]:
            raise _bad(path, f"the wheel of {d['name']}=={d['version']} does not match its pin")
        # installed from the bundle's wheelhouse (a --pip-find-links folder) by name, version and
        # sha256 (a create is offline: pipeline.prepare_create); the marker keeps this URL
        url = d.get("url") if isinstance(d.get("url"), str) else None
        pip.append(PipPackage(d["name"], d["version"], url, d["sha256"]))
    solver = manifest.get("solver") if isinstance(manifest.get("solver"), str) else None
    solved = SolvedEnv(
        platform=platform,
        channels=tuple(c for c in manifest.get("channels") or () if isinstance(c, str)),
        records=tuple(records),
        virtual_packages=(),
        solver=solver or f"bundle {path.name}",
        pip=tuple(pip),
    )
    checked = (
        f"every file of bundle {path.name} matches its sha256 ({len(files)} files)",
        "every package file is the one its record names",
    )
    solution = Solution(solved, _target(manifest.get("target")), checked)
    return Opened(path, root, manifest, solution, origins)


@contextlib.contextmanager
def opened(path: Path, platform: str = "linux-64") -> Iterator[Opened]:
    """The bundle at ``path`` extracted into a temp dir (removed afterwards) and checked."""
    from ...tempdirs import tempdir_prefix

    try:
        st = path.stat()
    except OSError as exc:
        raise UsageError(f"--from-bundle {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"--from-bundle {path} is not a regular file")
    with tempfile.TemporaryDirectory(prefix=tempdir_prefix("bundle")) as tmp:
        root = Path(tmp) / "bundle"
        root.mkdir()
        manifest = _extract(path, root)
        yield _solution(path, root, manifest, platform)

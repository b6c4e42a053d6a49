"""What is installed in a prefix, read from disk without importing anything from it.

Two sources, the same two ``conda list`` uses:

* conda records, ``<prefix>/conda-meta/<name>-<version>-<build>.json`` (name, version, build,
  channel, and the ``files`` each package put into the prefix);
* Python distributions in the env's site-packages (``lib/python3.X/site-packages`` on Unix,
  ``Lib/site-packages`` on Windows): ``*.dist-info`` (``METADATA`` + ``INSTALLER``) and
  ``*.egg-info`` (``PKG-INFO``; a folder or a single file).

A distribution whose folder belongs to a conda record's ``files`` (or whose ``INSTALLER`` says
``conda``) is that conda package's own metadata. Every other distribution was put there by a
Python installer (pip, uv, ...) and becomes a ``rules.Package`` with installer ``pip``: that is
how a conda ``pytorch`` is told apart from a pip ``torch`` installed on top of it.

A corrupt conda record (truncated JSON, not an object, no ``name``/``version``/``build``) is a
``PrefixError`` naming the file: conda itself refuses such a prefix
(``CorruptedEnvironmentError``), and a diagnosis that silently skipped the record could miss
exactly the package that is broken.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
from dataclasses import dataclass, field, replace
from email.parser import HeaderParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import PrefixError
from .knowledge.packages import Package, normalize

# Files in conda-meta that end in .json but are not package records.
NOT_RECORDS = frozenset({"conda-unsloth.json", "conda-unsloth"})
# Platform subdirs that end a channel URL ("https://conda.anaconda.org/pytorch/linux-64").
_SUBDIR = re.compile(r"^(noarch|(linux|osx|win|emscripten|wasi|zos|freebsd)-[0-9a-z_]+)$")
_TOKEN = re.compile(r"^/t/[^/]+")
_EGG_NAME = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+?)(-py\d+(\.\d+)*)?(-[^-]+)?$")
# Bounded reads: the header block of METADATA/PKG-INFO (Name and Version come first), the one
# word in INSTALLER, and a conda record (pytorch's, with paths_data, is a few MB).
_MAX_HEADER_BYTES = 1024 * 1024
_MAX_INSTALLER_BYTES = 1024
_MAX_RECORD_BYTES = 256 * 1024 * 1024
_CHUNK = 16 * 1024
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)


class NotRegularFile(OSError):
    """A FIFO, socket or device where a file was expected: never opened for reading."""


def read_regular(path: Path, limit: int, stop: bytes | None = None) -> bytes:
    """At most ``limit`` bytes of ``path`` (up to and including ``stop`` when given), which must
    be a regular file. A FIFO, socket or device is refused (``NotRegularFile``) before it is
    opened for reading and checked again after (non-blocking open, so a FIFO swapped in between
    cannot hang the read). ``OSError`` for anything unreadable."""
    if not stat.S_ISREG(path.stat().st_mode):
        raise NotRegularFile(f"{path} is not a regular file")
    fd = os.open(path, _OPEN_FLAGS)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFile(f"{path} is not a regular file")
        chunks: list[bytes] = []
        size = 0
        while size < limit:
            chunk = os.read(fd, min(_CHUNK, limit - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if stop is not None and stop in b"".join(chunks[-2:]):
                break
        return b"".join(chunks)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class CondaRecord:
    name: str
    version: str
    build: str
    channel: str  # short channel name: "pytorch", "conda-forge", "pkgs/main", or "" if unknown
    file: Path  # the conda-meta JSON it came from
    files: tuple[str, ...] = ()
    depends: tuple[str, ...] = ()
    # the pip distribution ("torch 2.4.0") that replaced this package's Python files: its
    # metadata folder is gone and another installer's of the same name is there
    replaced_by: str | None = None
    # the record as conda wrote it (parsed once; exports read url, hashes, subdir from it)
    data: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def package(self) -> Package:
        return Package(
            self.name,
            self.version,
            self.build,
            self.channel,
            "conda",
            stale=self.replaced_by is not None,
            requires=self.depends,
        )

    def metadata_folders(self) -> list[str]:
        """The .dist-info / .egg-info folders (prefix-relative) this package installed."""
        out: dict[str, None] = {}
        for f in self.files:
            for marker in (".dist-info", ".egg-info"):
                i = f.find(marker)
                if i != -1:
                    out[f[: i + len(marker)]] = None
        return list(out)

    def to_json(self) -> dict[str, Any]:
        doc = {
            "name": self.name,
            "version": self.version,
            "build": self.build,
            "channel": self.channel,
            "record": self.file.name,
        }
        if self.replaced_by is not None:
            doc["replaced_by"] = self.replaced_by
        return doc


@dataclass(frozen=True)
class PythonDist:
    name: str
    version: str
    installer: str  # the INSTALLER file's content ("pip", "uv", "conda"), "" when absent
    path: Path  # the .dist-info / .egg-info folder or file
    owner: str | None = None  # the conda record that lists it, if any
    requires: tuple[str, ...] = ()  # its Requires-Dist lines

    @property
    def from_conda(self) -> bool:
        return self.owner is not None or self.installer == "conda"

    def package(self) -> Package:
        return Package(self.name, self.version, "", "pypi", "pip", requires=self.requires)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "installer": self.installer,
            "path": str(self.path),
            "owner": self.owner,
        }


@dataclass
class Inventory:
    prefix: Path
    records: list[CondaRecord]
    dists: list[PythonDist]
    site_packages: list[Path] = field(default_factory=list)

    def pip_dists(self) -> list[PythonDist]:
        """Distributions a Python installer put there (not any conda package's own)."""
        return [d for d in self.dists if not d.from_conda]

    def packages(self) -> list[Package]:
        """conda records (installer ``conda``), then pip-installed distributions (``pip``)."""
        return [r.package() for r in self.records] + [d.package() for d in self.pip_dists()]

    def record(self, name: str) -> CondaRecord | None:
        key = normalize(name)
        return next((r for r in self.records if normalize(r.name) == key), None)

    def python_version(self) -> str | None:
        py = self.record("python")
        return ".".join(py.version.split(".")[:2]) if py else None

    def has_gpu_stack(self) -> bool:
        """Does anything here concern us (torch, xformers or unsloth, from conda or pip)?"""
        names = {normalize(p.name) for p in self.packages()}
        return bool(names & {"pytorch", "torch", "xformers", "unsloth", "unsloth-zoo"})

    def to_json(self) -> dict[str, Any]:
        return {
            "prefix": str(self.prefix),
            "site_packages": [str(p) for p in self.site_packages],
            "conda": [r.to_json() for r in self.records],
            "pip": [d.to_json() for d in self.pip_dists()],
        }


# ----------------------------------------------------------------------------- reading


def channel_name(channel: str, url: str = "") -> str:
    """The short channel name conda list shows, from a record's ``channel`` (a URL or a name)
    or, failing that, its package ``url``; tokens (``/t/<token>``) never survive."""
    value = channel or url
    if not value:
        return ""
    if "://" not in value:
        parts = [p for p in value.strip("/").split("/") if p]
        while parts and _SUBDIR.match(parts[-1]):
            parts.pop()
        return "/".join(parts)
    split = urlsplit(value)
    path = _TOKEN.sub("", split.path)
    parts = [p for p in path.split("/") if p]
    if not channel and parts:  # a package url: drop the file name
        parts = parts[:-1]
    while parts and _SUBDIR.match(parts[-1]):
        parts.pop()
    if split.scheme == "file":  # a local channel is its path: `conda list` shows file:///...
        return "file:///" + "/".join(parts)
    return "/".join(parts)


def _bad_record(prefix: Path, path: Path, why: str) -> PrefixError:
    return PrefixError(
        f"conda record {path} is corrupt ({why}); cannot tell what is installed in {prefix}",
        hints=[
            f"restore or remove {path.name}, then reinstall that package: "
            f"conda install --force-reinstall -p {shlex.quote(str(prefix))} PACKAGE",
            f"conda doctor -p {shlex.quote(str(prefix))} reports other damage",
        ],
    )


def _text(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


class _WrongType(Exception):
    """A record field of the wrong JSON type (turned into ``_bad_record``)."""


def _kind(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)


def _optional_text(data: dict[str, Any], key: str) -> str | None:
    """A string field that may be absent or null, but is a string when it is there."""
    value = data.get(key)
    if value is None or isinstance(value, str):
        return value
    raise _WrongType(f"'{key}' is {_kind(value)}, not a string")


def _string_list(value: object, where: str) -> list[str]:
    if not isinstance(value, list):
        raise _WrongType(f"'{where}' is {_kind(value)}, not a list")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise _WrongType(f"'{where}[{i}]' is {_kind(item)}, not a string")
    return value


def _record_files(data: dict[str, Any]) -> list[str]:
    """The files a record lists: ``files`` (strings), else ``paths_data.paths[]._path``."""
    if data.get("files") is not None:
        return _string_list(data["files"], "files")
    paths_data = data.get("paths_data")
    if paths_data is None:
        return []
    if not isinstance(paths_data, dict):
        raise _WrongType(f"'paths_data' is {_kind(paths_data)}, not an object")
    paths = paths_data.get("paths")
    if paths is None:
        return []
    if not isinstance(paths, list):
        raise _WrongType(f"'paths_data.paths' is {_kind(paths)}, not a list")
    files = []
    for i, entry in enumerate(paths):
        where = f"paths_data.paths[{i}]"
        if not isinstance(entry, dict):
            raise _WrongType(f"'{where}' is {_kind(entry)}, not an object")
        key = "_path" if "_path" in entry else "relative_path"
        value = entry.get(key)
        if not isinstance(value, str):
            raise _WrongType(f"'{where}.{key}' is {_kind(value)}, not a string")
        files.append(value)
    return files


def read_record(prefix: Path, path: Path) -> CondaRecord:
    try:
        raw = read_regular(path, _MAX_RECORD_BYTES + 1)
    except NotRegularFile:
        raise _bad_record(prefix, path, "not a regular file") from None
    except OSError as exc:
        raise _bad_record(prefix, path, f"cannot be read: {exc.strerror or exc}") from None
    if len(raw) > _MAX_RECORD_BYTES:
        raise _bad_record(prefix, path, f"larger than {_MAX_RECORD_BYTES // 2**20} MiB")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise _bad_record(prefix, path, "not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise _bad_record(
            prefix, path, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise _bad_record(prefix, path, "JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise _bad_record(prefix, path, f"a JSON {type(data).__name__}, not an object")
    values = {}
    for key in ("name", "version", "build"):
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise _bad_record(prefix, path, f"'{key}' is {_kind(value)}, not a string")
        if not value:
            raise _bad_record(prefix, path, f"no '{key}'")
        values[key] = value
    try:
        files = _record_files(data)
        depends = (
            _string_list(data["depends"], "depends") if data.get("depends") is not None else []
        )
        channel = _optional_text(data, "channel") or _optional_text(data, "schannel") or ""
        url = _optional_text(data, "url") or ""
    except _WrongType as exc:
        raise _bad_record(prefix, path, str(exc)) from None
    return CondaRecord(
        name=values["name"],
        version=values["version"],
        build=values["build"],
        channel=channel_name(channel, url),
        file=path,
        files=tuple(f.replace("\\", "/") for f in files if f),
        depends=tuple(depends),
        data=data,
    )


def find_site_packages(prefix: Path, python: str | None) -> list[Path]:
    """site-packages folders of the env's Python (all of them when python is unknown)."""
    found: list[Path] = []
    lib = prefix / "lib"
    if lib.is_dir():
        for d in sorted(lib.glob("python3*")):
            sp = d / "site-packages"
            if not sp.is_dir():
                continue
            # python3.13t is the free-threaded 3.13; python3.1 must not match 3.11
            version = d.name.removeprefix("python").rstrip("t")
            if python is None or version == python:
                found.append(sp)
    win = prefix / "Lib" / "site-packages"
    if win.is_dir() and win not in found:
        found.append(win)
    return found


def _headers(path: Path) -> tuple[str | None, str | None, tuple[str, ...]]:
    """Name, Version and the Requires-Dist lines from a METADATA / PKG-INFO file's header
    block (read up to the first blank line, at most 1 MiB; None, None, () for anything that is
    not a readable regular file)."""
    try:
        head = read_regular(path, _MAX_HEADER_BYTES, stop=b"\n\n")
    except OSError:
        return None, None, ()
    text = head.decode("utf-8", errors="replace").replace("\r\n", "\n").split("\n\n", 1)[0]
    msg = HeaderParser().parsestr(text)
    name, version = msg.get("Name"), msg.get("Version")
    requires = tuple(" ".join(str(r).split()) for r in msg.get_all("Requires-Dist") or ())
    return (
        (str(name).strip() if name else None),
        (str(version).strip() if version else None),
        requires,
    )


def _from_folder_name(stem: str) -> tuple[str | None, str | None]:
    m = _EGG_NAME.match(stem)
    if not m:
        return None, None
    return m.group("name"), m.group("version")


def read_dist(path: Path) -> PythonDist | None:
    """One distribution from its ``.dist-info`` / ``.egg-info``; None when unreadable."""
    if path.suffix == ".dist-info":
        meta, installer_file = path / "METADATA", path / "INSTALLER"
    elif path.is_dir():
        meta, installer_file = path / "PKG-INFO", path / "INSTALLER"
    else:  # a single-file egg-info is the PKG-INFO itself
        meta, installer_file = path, None
    name, version, requires = _headers(meta)
    if not name or not version:
        fname, fversion = _from_folder_name(path.name.rsplit(".", 1)[0])
        name, version = name or fname, version or fversion
    if not name or not version:
        return None
    installer = ""
    if installer_file is not None:
        try:
            raw = read_regular(installer_file, _MAX_INSTALLER_BYTES)
        except OSError:
            raw = b""
        installer = raw.decode("utf-8", errors="replace").strip()
    return PythonDist(
        name=name, version=version, installer=installer.lower(), path=path, requires=requires
    )


def _owners(records: list[CondaRecord]) -> dict[str, str]:
    """Metadata folder (path relative to the prefix, '/'-separated) -> the record owning it."""
    owners: dict[str, str] = {}
    for r in records:
        for f in r.files:
            for marker in (".dist-info", ".egg-info"):
                i = f.find(marker)
                if i != -1:
                    owners.setdefault(f[: i + len(marker)], r.name)
    return owners


def read(prefix: Path) -> Inventory:
    """The inventory of an existing prefix. ``PrefixError`` for a missing prefix, a file, a
    folder that is not a conda env, or a corrupt conda record."""
    if not prefix.exists():
        raise PrefixError(
            f"prefix {prefix} does not exist", hints=["conda env list shows your environments"]
        )
    if not prefix.is_dir():
        raise PrefixError(f"prefix {prefix} is a file, not an environment")
    meta = prefix / "conda-meta"
    if not meta.is_dir():
        raise PrefixError(
            f"{prefix} is not a conda environment (no conda-meta/ folder)",
            hints=["conda env list shows your environments"],
        )
    try:
        entries = sorted(meta.iterdir(), key=str)
    except OSError as exc:
        raise PrefixError(f"cannot list {meta}: {exc.strerror or exc}") from None
    records = [
        read_record(prefix, p)
        for p in entries
        if p.name.endswith(".json") and not p.name.startswith("._") and p.name not in NOT_RECORDS
    ]
    py = next((r for r in records if r.name == "python"), None)
    python = ".".join(py.version.split(".")[:2]) if py else None
    sp_dirs = find_site_packages(prefix, python)
    owners = _owners(records)
    dists: list[PythonDist] = []
    for sp in sp_dirs:
        try:
            candidates = sorted(sp.iterdir(), key=str)
        except OSError:
            continue
        for c in candidates:
            if c.suffix not in (".dist-info", ".egg-info"):
                continue
            d = read_dist(c)
            if d is None:
                continue
            rel = c.relative_to(prefix).as_posix()
            owner = owners.get(rel)
            if owner is not None:
                d = PythonDist(d.name, d.version, d.installer, d.path, owner, d.requires)
            dists.append(d)
    records = _mark_replaced(prefix, records, dists)
    return Inventory(prefix=prefix, records=records, dists=dists, site_packages=sp_dirs)


def _mark_replaced(
    prefix: Path, records: list[CondaRecord], dists: list[PythonDist]
) -> list[CondaRecord]:
    """Records whose Python files pip (or another installer) replaced: every metadata folder
    the record installed is gone, and a distribution of the same name that no conda package
    owns is there (pip uninstalls conda's metadata when it installs its own torch or triton).
    Python imports that distribution; conda still lists the record."""
    foreign = {normalize(d.name): d for d in dists if not d.from_conda}
    if not foreign:
        return records
    out = []
    for r in records:
        folders = r.metadata_folders()
        names = {
            normalize(_from_folder_name(Path(f).name.rsplit(".", 1)[0])[0] or "") for f in folders
        }
        gone = bool(folders) and not any((prefix / f).exists() for f in folders)
        other = next((foreign[n] for n in names if n in foreign), None)
        if gone and other is not None:
            r = replace(
                r, replaced_by=f"{other.name} {other.version} ({other.installer or 'pip'})"
            )
        out.append(r)
    return out


# ----------------------------------------------------------------------------- queries


def python_dists(prefix: Path) -> dict[str, list[tuple[str, str, str]]]:
    """Every distribution in the env's site-packages (dist-info and egg-info): normalized name
    -> [(version, installer, metadata folder name)], where a distribution a conda record lists
    (or whose INSTALLER says so) counts as "conda". Reads metadata only (see inventory.py)."""
    out: dict[str, list[tuple[str, str, str]]] = {}
    for d in read(prefix).dists:
        installer = "conda" if d.from_conda else (d.installer or "?")
        out.setdefault(normalize(d.name), []).append((d.version, installer, d.path.name))
    return out


def conda_dists(prefix: Path) -> dict[str, str]:
    """The Python distributions conda installed: normalized name -> version."""
    return {
        name: entries[0][0]
        for name, entries in python_dists(prefix).items()
        if any(inst == "conda" for _, inst, _ in entries)
    }


def torch_dists(prefix: Path) -> list[str]:
    return [f"{d} ({inst})" for _, inst, d in python_dists(prefix).get("torch", [])]

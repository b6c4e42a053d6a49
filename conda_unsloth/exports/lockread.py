"""Read a lock back into a SolvedEnv for `create --from-lock`: `@EXPLICIT` files (CEP 23) and
conda-lock v1 YAML (CEP 37). A lock for another platform, a line without a sha256, or a broken
file is refused before anything is written."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from ..errors import SpecError
from ..redact import redact_url
from ..solvers.base import PipPackage, Record, SolvedEnv

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_PIP_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
MAX_LOCK_BYTES = 20_000_000


def _split_fn(fn: str) -> tuple[str, str, str]:
    stem = fn.removesuffix(".conda").removesuffix(".tar.bz2")
    parts = stem.rsplit("-", 2)
    if len(parts) != 3 or not all(parts):
        raise ValueError(fn)
    return parts[0], parts[1], parts[2]


def _build_number(build: str) -> int:
    tail = build.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def record_from_url(url: str, sha256: str | None, md5: str | None = None, **extra: Any) -> Record:
    parsed = urlparse(url)
    path = unquote(parsed.path)
    segments = path.rstrip("/").split("/")
    if len(segments) < 3:
        raise ValueError(url)
    fn, subdir = segments[-1], segments[-2]
    name, version, build = _split_fn(fn)
    channel = redact_url(url[: url.rindex("/" + subdir + "/")])  # url keeps its token to download
    return Record(
        name=extra.get("name", name),
        version=extra.get("version", version),
        build=build,
        build_number=_build_number(build),
        channel=channel,
        subdir=subdir,
        url=url,
        fn=fn,
        md5=md5,
        sha256=sha256,
        depends=tuple(extra.get("depends", ())),
        noarch="python" if subdir == "noarch" else None,
    )


def _read_text(path: Path) -> str:
    from ..userfiles import read_text

    return read_text(path, "lock", limit=MAX_LOCK_BYTES)


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")


def _check_url(url: str, where: str) -> None:
    """A package URL from a lock: ``scheme://...``, one word, no control characters (it ends up
    in a requirements file, a download, an explicit lock)."""
    from ..outputs import control_char

    bad = control_char(url)
    if bad is not None:
        raise SpecError(f"{where}: the url contains {bad}")
    if not _URL.fullmatch(url):
        raise SpecError(f"{where} is not a package URL: {redact_url(url)[:80]!r}")


def pip_package(name: Any, version: Any, url: Any, sha: Any, where: str) -> PipPackage:
    """A locked pip wheel, validated field by field before it can reach a requirements file:
    a project name, a PEP 440 version, an http(s)/file URL, a sha256."""
    from packaging.version import InvalidVersion, Version

    if not isinstance(name, str) or not _PIP_NAME.fullmatch(name):
        raise SpecError(f"{where}: pip package name {str(name)[:80]!r} is not a project name")
    try:
        if not isinstance(version, str) or version != version.strip():
            raise InvalidVersion(str(version))
        Version(version)
    except InvalidVersion:
        raise SpecError(
            f"{where}: pip package {name} has the version {str(version)[:40]!r}, "
            "which is not a PEP 440 version"
        ) from None
    if url is not None:
        if not isinstance(url, str):
            raise SpecError(f"{where}: pip package {name}: the url must be text")
        _check_url(url, f"{where}: pip package {name}")
    if sha is not None and not (isinstance(sha, str) and _HEX64.match(sha)):
        raise SpecError(f"{where}: pip package {name} has a malformed sha256")
    return PipPackage(name, version, url, sha)


def read_lock(path: Path, platform: str) -> SolvedEnv:
    text = _read_text(path)
    if "@EXPLICIT" in text:
        return _read_explicit(path, text, platform)
    return _read_conda_lock(path, text, platform)


def _read_explicit(path: Path, text: str, platform: str) -> SolvedEnv:
    declared = None
    records = []
    pip: list[PipPackage] = []
    pip_reqs: list[str] = []
    seen_explicit = False
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("# platform:"):
            declared = line.split(":", 1)[1].strip()
            continue
        if line.startswith("# pip "):  # the pip part, as `solve --lock` writes it
            _explicit_pip(line[len("# pip ") :].strip(), pip, pip_reqs, f"lock {path}: line {n}")
            continue
        if line.startswith("#"):
            continue
        if line == "@EXPLICIT":
            seen_explicit = True
            continue
        if not seen_explicit:
            raise SpecError(f"lock {path}: line {n} comes before @EXPLICIT")
        url, _, digest = line.partition("#")
        digest = digest.removeprefix("sha256:")
        sha = digest if _HEX64.match(digest) else None
        md5 = digest if _HEX32.match(digest) else None
        if sha is None:
            raise SpecError(
                f"lock {path}: line {n} has no sha256 (got '#{digest[:16]}'); "
                "refusing a lock that cannot be checked",
                hints=["re-export it: conda unsloth solve --lock FILE --format explicit"],
            )
        _check_url(url, f"lock {path}: line {n}")
        try:
            rec = record_from_url(url, sha, md5)
        except ValueError:
            raise SpecError(
                f"lock {path}: line {n} is not a package URL: {redact_url(url)[:80]}"
            ) from None
        records.append(rec)
    if not seen_explicit or not records:
        raise SpecError(f"lock {path}: no @EXPLICIT package lines")
    subdirs = {r.subdir for r in records} - {"noarch"}
    lock_platform = declared or (subdirs.pop() if len(subdirs) == 1 else platform)
    _check_platform(path, lock_platform, subdirs | ({declared} if declared else set()), platform)
    return _solved(path, platform, records, pip, pip_reqs)


def _index_json(url: str) -> dict[str, Any] | None:
    """``info/index.json`` of a local package archive (None when unreadable or remote)."""
    import io
    import json
    import tarfile
    import zipfile

    if not url.startswith("file://"):
        return None
    from ..userfiles import is_regular

    local = Path(unquote(urlparse(url).path))
    if not is_regular(local):  # never open a FIFO or a device named by a lock
        return None
    try:
        if local.name.endswith(".tar.bz2"):
            with tarfile.open(local, "r:bz2") as tf:
                member = tf.extractfile("info/index.json")
                return json.load(member) if member else None
        if local.name.endswith(".conda"):
            import zstandard  # optional: without it the lock's own facts are kept

            with zipfile.ZipFile(local) as zf:
                name = next(n for n in zf.namelist() if n.startswith("info-"))
                raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(zf.read(name))).read()
            with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
                member = tf.extractfile("info/index.json")
                return json.load(member) if member else None
    except (
        OSError,
        KeyError,
        StopIteration,
        ValueError,
        ImportError,
        tarfile.TarError,
        zipfile.BadZipFile,
    ):
        return None
    return None


def _with_index_facts(rec: Record) -> Record:
    """A lock names a package by URL and hash only: for local archives take noarch, the build
    number and the dependencies from the package itself instead of guessing them."""
    index = _index_json(rec.url)
    if not isinstance(index, dict):
        return rec
    noarch = index.get("noarch")
    number = index.get("build_number")
    return replace(
        rec,
        noarch=noarch if isinstance(noarch, str) else None,
        build_number=number if isinstance(number, int) else rec.build_number,
        depends=tuple(index.get("depends") or rec.depends),
        constrains=tuple(index.get("constrains") or rec.constrains),
    )


def _solved(
    path: Path,
    platform: str,
    records: list[Record],
    pip: list[PipPackage],
    pip_requirements: list[str],
) -> SolvedEnv:
    """``pip``: wheels the lock pins with a hash; ``pip_requirements`` (in ``extra``): pip
    requirements it lists without one (installed by resolving them against conda's pins)."""
    records = [_with_index_facts(r) for r in records]
    return SolvedEnv(
        platform=platform,
        channels=tuple(dict.fromkeys(r.channel for r in records)),
        records=tuple(records),
        virtual_packages=(),
        solver=f"lock {path.name}",
        pip=tuple(pip),
        extra={"pip_requirements": pip_requirements} if pip_requirements else {},
    )


_PIP_LINE = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+?)"
    r"(?: @ (?P<url>\S+?))?(?:#sha256=(?P<sha>[0-9a-f]{64}))?$"
)
# the sentence `export --format explicit` writes above its pip lines
_PIP_PROSE = ("packages (not installed by conda", "install --no-deps after creating")


def _explicit_pip(text: str, pip: list[PipPackage], reqs: list[str], where: str) -> None:
    """One ``# pip ...`` line: a pinned wheel with its hash, or a requirement (validated by
    ``spec.parse_pip_requirement``); the export's own explanatory sentence is skipped, and
    anything else is refused: it would otherwise reach pip."""
    from ..spec import parse_pip_requirement

    if text.startswith(_PIP_PROSE):
        return
    m = _PIP_LINE.match(text)
    if m and m["url"] and m["sha"]:
        pip.append(pip_package(m["name"], m["version"], m["url"], m["sha"], where))
        return
    reqs.append(parse_pip_requirement(text, where))


def _check_platform(path: Path, lock_platform: str, seen: set[str], platform: str) -> None:
    others = {s for s in seen if s and s != platform}
    if lock_platform != platform or others:
        other = lock_platform if lock_platform != platform else sorted(others)[0]
        raise SpecError(
            f"lock {path} is for {other}, not {platform}; refusing it",
            hints=[
                f"solve for this platform: conda unsloth solve --platform {platform} --lock FILE"
            ],
        )


def _read_conda_lock(path: Path, text: str, platform: str) -> SolvedEnv:
    from ..spec import parse_pip_requirement
    from ..yamlload import YamlSyntaxError, load

    try:
        data = load(text)
    except YamlSyntaxError as exc:
        raise SpecError(f"lock {path}: {exc.detail}") from None
    if (
        not isinstance(data, dict)
        or data.get("version") != 1
        or not isinstance(data.get("package"), list)
    ):
        raise SpecError(f"lock {path} is neither an @EXPLICIT file nor a conda-lock v1 file")
    metadata = data.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise SpecError(f"lock {path}: 'metadata' must be a mapping")
    metadata = metadata or {}
    platforms = metadata.get("platforms") or []
    if not isinstance(platforms, list):
        raise SpecError(f"lock {path}: 'metadata.platforms' must be a list")
    custom = metadata.get("custom_metadata") or {}
    # conda-lock allows only string values there: one requirement a line
    carried = custom.get("pip_requirements") if isinstance(custom, dict) else None
    if carried is not None and not isinstance(carried, str):
        raise SpecError(f"lock {path}: 'metadata.custom_metadata.pip_requirements' must be text")
    pip_reqs = [
        parse_pip_requirement(ln, f"lock {path}: metadata.custom_metadata.pip_requirements")
        for ln in (carried or "").splitlines()
        if ln.strip()
    ]
    if platform not in platforms:
        raise SpecError(
            f"lock {path} is for {', '.join(map(str, platforms)) or 'no platform'}, not {platform}; refusing it",
            hints=[
                f"solve for this platform: conda unsloth solve --platform {platform} --lock FILE"
            ],
        )
    records, pip = [], []
    for i, pkg in enumerate(data["package"]):
        if not isinstance(pkg, dict):
            raise SpecError(f"lock {path}: package[{i}] is not a mapping")
        if not isinstance(pkg.get("platform"), str):
            raise SpecError(f"lock {path}: package[{i}] ({pkg.get('name')}) has no platform")
        if pkg.get("platform") != platform:
            continue
        url, hashes = pkg.get("url"), pkg.get("hash") or {}
        sha = hashes.get("sha256") if isinstance(hashes, dict) else None
        if not isinstance(url, str) or not isinstance(sha, str) or not _HEX64.match(sha):
            raise SpecError(
                f"lock {path}: package[{i}] ({pkg.get('name')}) has no url or no sha256"
            )
        md5 = hashes.get("md5")
        if md5 is not None and not (isinstance(md5, str) and _HEX32.match(md5)):
            raise SpecError(f"lock {path}: package[{i}] ({pkg.get('name')}) has a malformed md5")
        deps_map = pkg.get("dependencies") or {}
        if not isinstance(deps_map, dict):
            raise SpecError(f"lock {path}: package[{i}] 'dependencies' must be a mapping")
        _check_url(url, f"lock {path}: package[{i}] ({str(pkg.get('name'))[:40]})")
        if pkg.get("manager") == "pip":
            pip.append(
                pip_package(
                    pkg.get("name"), pkg.get("version"), url, sha, f"lock {path}: package[{i}]"
                )
            )
            continue
        try:
            deps = [f"{k} {v}".strip() for k, v in deps_map.items()]
            rec = record_from_url(
                url,
                sha,
                md5,
                name=str(pkg.get("name")),
                version=str(pkg.get("version")),
                depends=deps,
            )
        except ValueError:
            raise SpecError(f"lock {path}: package[{i}] url is not a package URL") from None
        records.append(rec)
    if not records:
        raise SpecError(f"lock {path}: no conda packages for {platform}")
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    locked = {canonicalize_name(p.name) for p in pip}
    unhashed = [r for r in pip_reqs if canonicalize_name(Requirement(r).name) not in locked]
    return _solved(path, platform, records, pip, unhashed)

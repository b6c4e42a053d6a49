"""The distributions installed in an env's site-packages, read from their metadata (nothing
imported): names, folders, requirements, and what ``pip check`` would report."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import InstallError


def norm(name: str) -> str:
    """PEP 503 normalized name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def site_packages(prefix: Path) -> Path:
    found = sorted((prefix / "lib").glob("python3*/site-packages"))
    if not found:
        raise InstallError(f"{prefix} has no lib/python3.X/site-packages: not a Python env")
    return found[-1]


def dist_dirs(site: Path) -> list[str]:
    try:
        return [p.name for p in site.iterdir() if p.name.endswith((".dist-info", ".egg-info"))]
    except OSError:
        return []


def dir_name(folder: str) -> str:
    """``torch-2.5.1.dist-info`` -> ``torch`` (names have no '-' in a dist-info folder)."""
    return folder.split("-", 1)[0]


def headers(path: Path, limit: int = 1024 * 1024) -> dict[str, list[str]]:
    """The header block of a METADATA/WHEEL/PKG-INFO file: name -> values (continuation lines
    folded), read up to the first blank line."""
    out: dict[str, list[str]] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read(limit)
    except OSError:
        return out
    key = None
    for line in text.splitlines():
        if not line.strip():
            break
        if line[0] in " \t" and key is not None:
            out[key][-1] += " " + line.strip()
            continue
        k, sep, v = line.partition(":")
        if not sep:
            continue
        key = k.strip()
        out.setdefault(key, []).append(v.strip())
    return out


@dataclass(frozen=True)
class Dist:
    name: str
    version: str
    requires: tuple[str, ...]
    folder: str


def read_dists(site: Path) -> list[Dist]:
    """Every distribution in ``site`` with its requirements (dist-info METADATA Requires-Dist;
    egg-info PKG-INFO and requires.txt), as pip's check reads them."""
    out = []
    for path in sorted(site.iterdir()):
        entry = path.name
        if entry.endswith(".dist-info"):
            h = headers(path / "METADATA")
            reqs = tuple(h.get("Requires-Dist", []))
        elif entry.endswith(".egg-info"):
            h = headers(path / "PKG-INFO" if path.is_dir() else path)
            reqs = tuple(_egg_requires(path / "requires.txt")) if path.is_dir() else ()
        else:
            continue
        if h.get("Name") and h.get("Version"):
            out.append(Dist(h["Name"][0], h["Version"][0], reqs, entry))
    return out


def _egg_requires(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    out: list[str] = []
    marker: str | None = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            extra, _, cond = section.partition(":")
            marker = None if extra else cond  # an extra's section is never wanted by a check
            continue
        if marker is None:
            continue
        out.append(f"{line}; {marker}" if marker else line)
    return out


_ONLY_EXTRA = re.compile(r""";\s*extra\s*==\s*['"][^'"]*['"]\s*$""")


def env_markers(prefix: Path, site: Path) -> dict[str, str]:
    """PEP 508 marker values for the env's python (this host, the env's version)."""
    from packaging.markers import default_environment

    env = {k: str(v) for k, v in default_environment().items()}
    short = site.parent.name.removeprefix("python")
    full = short
    for rec in (prefix / "conda-meta").glob("python-3*.json"):
        parts = rec.name[: -len(".json")].rsplit("-", 2)
        if len(parts) == 3 and parts[0] == "python":
            full = parts[1]
    env.update(python_version=short, python_full_version=full, implementation_version=full)
    return env


def dependency_problems(prefix: Path) -> list[str]:
    """What ``pip check`` reports, read from the metadata: every requirement (markers evaluated
    for the env's python, no extras) of every installed distribution is installed, in a version
    its specifier allows (pre-releases allowed), in pip's words."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.version import InvalidVersion, Version

    site = site_packages(prefix)
    dists = read_dists(site)
    have: dict[str, Dist] = {}
    for d in dists:
        have.setdefault(norm(d.name), d)
    markers: dict[str, str] | None = None
    problems = []
    for d in sorted(have.values(), key=lambda d: norm(d.name)):
        for line in d.requires:
            if _ONLY_EXTRA.search(line):
                continue
            try:
                req = Requirement(line)
            except InvalidRequirement:
                continue  # pip check skips what it cannot parse, too
            if req.marker is not None:
                if markers is None:
                    markers = env_markers(prefix, site)
                if not req.marker.evaluate({**markers, "extra": ""}):
                    continue
            dep = have.get(norm(req.name))
            if dep is None:
                problems.append(
                    f"{d.name} {d.version} requires {req.name}, which is not installed."
                )
                continue
            try:
                ok = req.specifier.contains(Version(dep.version), prereleases=True)
            except InvalidVersion:
                ok = True
            if not ok:
                problems.append(
                    f"{d.name} {d.version} has requirement {req}, but you have "
                    f"{dep.name} {dep.version}."
                )
    return problems

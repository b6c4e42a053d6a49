"""An installed environment read back as a SolvedEnv (its conda-meta records, its pip
distributions with the wheel URLs and hashes our marker recorded), for exports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..inventory import Inventory
    from ..solvers.base import PipPackage, Record, SolvedEnv
    from . import Format


def _subdir_of(data: dict[str, Any], url: str) -> str:
    subdir = data.get("subdir")
    if isinstance(subdir, str) and subdir:
        return subdir
    parts = url.rstrip("/").split("/")
    return parts[-2] if len(parts) >= 2 else ""


def record_from_meta(data: dict[str, Any]) -> Record:
    """A ``solvers.base.Record`` from a conda-meta JSON record (as conda writes it: url, md5,
    sha256, channel, subdir, depends, ...); credentials removed from url and channel."""
    from ..redact import redact_url
    from ..solvers.base import Record

    def text(key: str) -> str | None:
        v = data.get(key)
        return v if isinstance(v, str) and v else None

    def strings(key: str) -> tuple[str, ...]:
        v = data.get(key)
        return tuple(x for x in v if isinstance(x, str)) if isinstance(v, list) else ()

    def integer(key: str) -> int | None:
        v = data.get(key)
        return v if isinstance(v, int) and not isinstance(v, bool) else None

    url = redact_url(text("url") or "")
    subdir = _subdir_of(data, url)
    fn = text("fn") or (url.rsplit("/", 1)[-1] if url else "")
    channel = ""
    if url and f"/{subdir}/" in url:
        channel = url[: url.rindex(f"/{subdir}/")]
    elif text("channel"):
        channel = redact_url(str(text("channel"))).rstrip("/").removesuffix(f"/{subdir}")
    noarch = data.get("noarch")
    if isinstance(noarch, dict):  # old conda: {"type": "python"}
        noarch = noarch.get("type")
    return Record(
        name=str(data["name"]),
        version=str(data["version"]),
        build=str(data["build"]),
        build_number=integer("build_number") or 0,
        channel=channel,
        subdir=subdir,
        url=url,
        fn=fn,
        md5=text("md5"),
        sha256=text("sha256"),
        depends=strings("depends"),
        constrains=strings("constrains"),
        size=integer("size"),
        timestamp=integer("timestamp"),
        noarch=noarch if isinstance(noarch, str) else None,
        license=text("license"),
    )


def _direct_url(dist_path: Path) -> tuple[str | None, str | None]:
    """Wheel URL and sha256 from a dist-info's direct_url.json (PEP 610), when pip wrote one."""
    try:
        data = json.loads((dist_path / "direct_url.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, None
    if not isinstance(data, dict) or not isinstance(data.get("url"), str):
        return None, None
    info = data.get("archive_info")
    sha = None
    if isinstance(info, dict):
        hashes = info.get("hashes")
        if isinstance(hashes, dict) and isinstance(hashes.get("sha256"), str):
            sha = hashes["sha256"]
        elif isinstance(info.get("hash"), str) and info["hash"].startswith("sha256="):
            sha = info["hash"].removeprefix("sha256=")
    if info is None:  # a VCS or local directory install: no archive to lock
        return None, None
    return data["url"], sha


def pip_packages(inv: Inventory, marker_doc: dict[str, Any]) -> tuple[PipPackage, ...]:
    """The env's pip-installed distributions; wheel url + sha256 from the marker (what
    conda-unsloth installed) or the dist-info's direct_url.json, where known."""
    from ..knowledge.packages import normalize
    from ..redact import redact_url
    from ..solvers.base import PipPackage

    known: dict[tuple[str, str], tuple[str | None, str | None]] = {}
    for p in marker_doc.get("pip") or ():
        if isinstance(p, dict) and isinstance(p.get("name"), str):
            url = p.get("url") if isinstance(p.get("url"), str) else None
            sha = p.get("sha256") if isinstance(p.get("sha256"), str) else None
            known[(normalize(p["name"]), str(p.get("version")))] = (url, sha)
    out = []
    for d in sorted(inv.pip_dists(), key=lambda d: normalize(d.name)):
        url, sha = known.get((normalize(d.name), d.version), (None, None))
        if url is None and d.path.is_dir():
            url, sha = _direct_url(d.path)
        out.append(PipPackage(d.name, d.version, redact_url(url) if url else None, sha))
    return tuple(out)


def solved_from_prefix(prefix: Path) -> SolvedEnv:
    from .. import inventory, marker
    from ..host import conda_platform
    from ..redact import redact_url
    from ..solvers.base import SolvedEnv

    inv = inventory.read(prefix)
    records = [record_from_meta(rec.data) for rec in inv.records]  # parsed once, by inventory
    mark = marker.read(prefix) or {}
    target = mark.get("target") if isinstance(mark.get("target"), dict) else {}
    assert isinstance(target, dict)
    subdirs = sorted({r.subdir for r in records if r.subdir and r.subdir != "noarch"})
    platform = subdirs[0] if len(subdirs) == 1 else str(target.get("platform") or conda_platform())
    channels: list[str] = []
    for c in mark.get("channels") or ():
        if isinstance(c, str):
            channels.append(redact_url(c))
    for r in records:
        if r.channel and r.channel not in channels:
            channels.append(r.channel)
    vpkgs = target.get("virtual_packages")
    solver = mark.get("solver")
    return SolvedEnv(
        platform=platform,
        channels=tuple(channels),
        records=tuple(records),
        virtual_packages=tuple(v for v in vpkgs if isinstance(v, str))
        if isinstance(vpkgs, list)
        else (),
        solver=f"installed env; solved by {solver}"
        if isinstance(solver, str)
        else "installed env",
        pip=pip_packages(inv, mark),
    )


def _refuse_control_in_records(solved: SolvedEnv) -> None:
    """A record field with a control character (a newline in a url, a name) would start a new
    line in an explicit lock or a requirements line: refuse the env's record instead."""
    from ..errors import SpecError
    from ..outputs import control_char

    for r in solved.records:
        for field in (r.name, r.version, r.build, r.channel, r.subdir, r.url, r.fn):
            bad = control_char(field or "")
            if bad is not None:
                raise SpecError(
                    f"the conda record of {r.name[:60]!r} has {bad} in {field[:80]!r}; "
                    "refusing to export it"
                )
    for p in solved.pip:
        for field in (p.name, p.version, p.url or "", p.sha256 or ""):
            bad = control_char(field)
            if bad is not None:
                raise SpecError(
                    f"the pip package {p.name[:60]!r} has {bad} in {field[:80]!r}; "
                    "refusing to export it"
                )


def render_installed(solved: SolvedEnv, fmt: Format, env_prefix: Path) -> str:
    """The export text of an installed env in ``fmt`` (the export verb and conda's exporter
    hook)."""
    from .. import prefix as prefixmod
    from ..errors import SpecError, UsageError
    from ..redact import has_credentials
    from . import render

    _refuse_control_in_records(solved)
    if fmt.name != "environment":
        missing = [r for r in solved.records if not r.url]
        if missing:
            names = ", ".join(f"{r.name}-{r.version}-{r.build}" for r in missing[:3])
            raise SpecError(
                f"no download URL recorded for {names}"
                + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
                + f"; the {fmt.name} format needs one for every package",
                hints=["use --format environment (pins without URLs)"],
            )
    try:
        env_name: str | None = prefixmod.validate_name(env_prefix.name)
    except UsageError:
        env_name = None
    text = render(solved, fmt, sources=(str(env_prefix),), name=env_name)
    if has_credentials(text):  # defence in depth: the writers redact, this proves it
        raise SpecError("refusing to write an export that still contains credentials")
    return text

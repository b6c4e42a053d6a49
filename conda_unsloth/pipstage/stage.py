"""The pip stage itself: resolve (unless locked), refuse a clash with conda's distributions,
install with hashes, check that conda's distributions are unchanged, byte-compile what was
installed (see :mod:`conda_unsloth.pipstage`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InstallError
from ..solvers.base import PipPackage
from .bytecode import compile_installed
from .dists import dir_name, dist_dirs, norm, site_packages
from .installers import Installer, Say, quiet
from .pip_backend import PipStage
from .requirements import check_requirements, refuse_remote_urls
from .uv_backend import UvStage
from .wheelsources import Sources


@dataclass
class StageResult:
    installed: list[PipPackage]
    installer: Installer
    sources: Sources
    seconds: dict[str, float] = field(default_factory=dict)


def run_stage(
    prefix: Path,
    requirements: list[str],
    constraints: list[str],
    owned: dict[str, str],
    src: Sources,
    installer: Installer,
    locked: list[PipPackage] | None,
    require_hashes: bool,
    say: Say = quiet,
) -> StageResult:
    """Resolve (unless ``locked``) and install; conda's distributions ``owned`` are pinned and
    must come out unchanged. The caller checks the env afterwards (:func:`dependency_problems`)."""
    import tempfile
    import time

    check_requirements(requirements)
    if locked is not None:
        check_requirements([p.requirement() for p in locked])
    if src.offline:  # issue 16 #6 (h16b): also checked before anything is built
        refuse_remote_urls([*requirements, *(p.requirement() for p in locked or ())])
    own_urls = locked is not None and all(p.direct and p.url for p in locked)
    if not src.has_source and not own_urls:
        raise InstallError(
            "no wheel source for the pip stage: --offline (or PIP_NO_INDEX) and no "
            "--pip-find-links folder",
            hints=["give --pip-find-links DIR, a folder with the companions' wheels"],
        )
    pins = [f"{name}=={version}" for name, version in sorted(owned.items())]
    seconds: dict[str, float] = {}
    say(f"pip stage with {installer.label()} from {installer.where}: {src.describe()}")
    if src.ignored:
        say(
            "the pip stage ignores "
            + ", ".join(src.ignored)
            + " (only wheel sources and network settings apply)"
        )
    site = site_packages(prefix)
    before = dist_dirs(site)
    # the work files live inside the prefix: an interrupted create removes them with it
    with tempfile.TemporaryDirectory(prefix=".conda-unsloth-pip-", dir=prefix) as tmp:
        work = Path(tmp)
        cfile = work / "constraints.txt"
        cfile.write_text("\n".join(dict.fromkeys([*constraints, *pins])) + "\n")
        stage = (
            UvStage(prefix, installer, src, work, cfile)
            if installer.kind == "uv"
            else PipStage(prefix, installer, src, work, cfile)
        )
        t0 = time.perf_counter()
        if locked is None:
            locked = stage.resolve(requirements, owned)
            seconds["resolve"] = time.perf_counter() - t0
        clash = [p for p in locked if norm(p.name) in owned]
        if clash:
            p = clash[0]
            raise InstallError(
                f"pip would replace conda's {p.name} {owned[norm(p.name)]} with {p.name} "
                f"{p.version}; refusing (F12)",
                hints=[
                    "a pip requirement pins another build of a conda package; "
                    "check `conda unsloth env --json` for the companions"
                ],
            )
        if not locked:
            return StageResult([], installer, src, seconds)
        t0 = time.perf_counter()
        installed = stage.install(locked, require_hashes)
        seconds["install"] = time.perf_counter() - t0
    after = dist_dirs(site)
    new = sorted(set(after) - set(before))
    gone = sorted(set(before) - set(after))
    if gone or any(norm(dir_name(d)) in owned for d in new):
        from ..inventory import conda_dists

        now = conda_dists(prefix)
        changed = sorted(set(owned.items()) ^ set(now.items())) or gone
        raise InstallError(f"the pip stage changed conda's distributions: {changed[:3]} (F12)")
    t0 = time.perf_counter()
    compile_installed(prefix, site, new, src)
    seconds["compile"] = time.perf_counter() - t0
    return StageResult(installed, installer, src, seconds)

"""The stacks a knowledge base allows: every (pytorch, python, xformers, unsloth release)
that fits together for a profile and a CUDA, newest first, and each stack as the package set
the known-issue rules judge. Linear in the knowledge's size: the rows are sorted and indexed
once per profile, not once per candidate."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .model import (
    Knowledge,
    Profile,
    PytorchBuild,
    UnslothRelease,
    XformersBuild,
    version_key,
)

if TYPE_CHECKING:
    from .packages import Package

Stack = tuple[PytorchBuild, str, XformersBuild, UnslothRelease]


def pytorch_build(profile: Profile, python: str, cuda: str) -> str:
    """The build-string pin of the profile's pytorch for ``python`` and ``cuda``."""
    return profile.pytorch_build.format(python=python, cuda=cuda, cuda_nodot=cuda.replace(".", ""))


def xformers_build(profile: Profile, python: str, cuda: str, pytorch: str) -> str:
    """The build-string pin of the xformers made for ``pytorch`` on ``python`` and ``cuda``."""
    return profile.xformers_build.format(
        py_nodot=python.replace(".", ""),
        cuda_build=profile.xformers_cuda_builds.get(cuda, ""),
        cuda_nodot=cuda.replace(".", ""),
        pytorch=pytorch,
    )


_Index = tuple[tuple[PytorchBuild, ...], dict[str, tuple[XformersBuild, ...]]]
_INDEXES: dict[int, tuple[Profile, _Index]] = {}  # id(profile) -> (the profile, its index)


def _index(profile: Profile) -> _Index:
    """The profile's pytorch rows newest first, and its usable xformers rows per pytorch
    version, newest first: computed once per profile (kept with the profile, so that its id
    cannot be reused while the entry lives)."""
    known = _INDEXES.get(id(profile))
    if known is not None and known[0] is profile:
        return known[1]
    torches = tuple(sorted(profile.pytorch, key=lambda r: version_key(r.version), reverse=True))
    xfs = sorted(
        (x for x in profile.xformers if not x.known_issue),
        key=lambda x: version_key(x.version),
        reverse=True,
    )
    by_torch = {
        pt.version: tuple(x for x in xfs if x.matches_pytorch(pt.version)) for pt in torches
    }
    _INDEXES[id(profile)] = (profile, (torches, by_torch))
    return torches, by_torch


def _releases(
    kb: Knowledge, profile: Profile, release: UnslothRelease | None
) -> list[UnslothRelease]:
    if release is not None:
        return [release]
    default = kb.release(kb.default_release[profile.name])
    others = sorted(
        (r for r in kb.releases if profile.name in r.profiles and r is not default),
        key=lambda r: version_key(r.version),
        reverse=True,
    )
    return ([default] if default else []) + others


def candidates(
    profile: Profile, kb: Knowledge, cuda: str, release: UnslothRelease | None
) -> list[Stack]:
    """Every valid (pytorch, python, xformers, unsloth) for one CUDA, newest torch first (the
    profile's default release preferred, then the newest others)."""
    out: list[Stack] = []
    releases = _releases(kb, profile, release)
    torches, by_torch = _index(profile)
    for pt in torches:
        if cuda not in pt.cuda:
            continue
        for py in sorted(pt.python, key=version_key, reverse=True):
            for xf in by_torch[pt.version]:
                if py not in xf.python or (xf.cuda and cuda not in xf.cuda):
                    continue
                rel = next(
                    (
                        r
                        for r in releases
                        if release_accepts(kb, r, pt.version, py, xf.version)
                        and not pins_exclude(kb, r, py)
                    ),
                    None,
                )
                if rel is not None:
                    out.append((pt, py, xf, rel))
                    break
    return out


def release_accepts(
    kb: Knowledge, rel: UnslothRelease, torch: str, python: str, xformers: str
) -> bool:
    if rel.companion_python and python not in rel.companion_python:
        return False
    return (
        kb.satisfies(python, rel.python)
        and kb.satisfies(torch, rel.requires.get("torch", ""))
        and kb.satisfies(xformers, rel.requires.get("xformers", ""))
    )


def pins_exclude(kb: Knowledge, rel: UnslothRelease, python: str) -> list[str]:
    """The pins of ``rel`` (unsloth and its companions) whose Requires-Python excludes
    ``python``, as 'trl 1.15.0 requires Python >=3.11'."""
    return [
        f"{q.name} {q.version} requires Python {q.python}"
        for q in rel.requires_python
        if q.python and not kb.satisfies(python, q.python)
    ]


def planned_packages(
    profile: Profile, cuda: str, stack: tuple[PytorchBuild, str, XformersBuild, UnslothRelease]
) -> list[Package]:
    """A stack as a package set with representative build strings, for the rules."""
    from .packages import Package

    pt, python, xf, rel = stack
    pt_build = pytorch_build(profile, python, cuda).replace("_*", "_0").replace("*", "_0")
    xf_build = (
        xformers_build(profile, python, cuda, pt.version).replace("_*", "_0").replace("*", "_0")
    )
    ch = profile.channels[0]
    pkgs = [
        Package("python", python + ".0", channel="conda-forge"),
        Package("pytorch", pt.version, pt_build, ch),
        Package(
            "xformers", xf.version, xf_build, "xformers" if "xformers" in profile.channels else ch
        ),
        Package(profile.triton_package, pt.triton, channel=ch),
    ]
    if profile.cuda_package == "pytorch-cuda":
        pkgs.append(Package("pytorch-cuda", cuda, channel=ch))
        pkgs.append(Package("pytorch-mutex", "1.0", "cuda", ch))
    pkgs.append(Package("unsloth", rel.version, channel="pypi", installer="pip"))
    for name, ver in rel.companions.items():
        pkgs.append(Package(name, ver, channel="pypi", installer="pip"))
    return pkgs

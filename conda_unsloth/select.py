"""Request + target + knowledge -> one consistent Selection, or a refusal with the reason and
the nearest valid alternative.

Pure: no I/O except reading the (already loaded) knowledge base; the host is passed in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import SelectionError, UsageError
from .knowledge import (
    Knowledge,
    Profile,
    PytorchBuild,
    UnslothRelease,
    XformersBuild,
    arch_covered,
    version_key,
)
from .target import (
    DEFAULT_PROFILE,
    Target,
    check_platform,
    check_profile,
    parse_cuda,
    resolve_target,
    shown,
    split_archs,
)

if TYPE_CHECKING:
    from typing import Any

    from .host import Host
    from .rules import Package

# patterns, not compiled ones: re compiles (and caches) only those a command uses
_PY_RE = r"[0-9]\.[0-9]{1,2}"
_TORCH_RE = r"[0-9]+\.[0-9]+\.[0-9]+"


@dataclass(frozen=True)
class Request:
    profile: str | None = None
    cuda: str | None = None
    python: str | None = None
    torch: str | None = None
    xformers: str | None = None
    unsloth: str | None = None
    gpu_archs: tuple[str, ...] = ()
    platform: str | None = None


@dataclass(frozen=True)
class Choice:
    """One chosen package and why."""

    name: str
    version: str
    why: str
    build: str = ""
    channel: str = ""


@dataclass(frozen=True)
class Selection:
    profile: Profile
    target: Target
    python: str
    pytorch: PytorchBuild
    xformers: XformersBuild
    unsloth: UnslothRelease
    notices: tuple[str, ...] = field(default=())

    @property
    def cuda(self) -> str:
        return self.target.cuda

    @property
    def cuda_nodot(self) -> str:
        return self.cuda.replace(".", "")

    @property
    def pytorch_build(self) -> str:
        return self.profile.pytorch_build.format(
            python=self.python, cuda=self.cuda, cuda_nodot=self.cuda_nodot
        )

    @property
    def xformers_build(self) -> str:
        return self.profile.xformers_build.format(
            py_nodot=self.python.replace(".", ""),
            cuda_build=self.profile.xformers_cuda_builds.get(self.cuda, ""),
            cuda_nodot=self.cuda_nodot,
            pytorch=self.pytorch.version,
        )

    def conda_choices(self) -> list[Choice]:
        p = self.profile
        torch_channel = p.channels[0]
        out = [
            Choice(
                "python",
                self.python,
                f"allowed by pytorch {self.pytorch.version}, "
                f"xformers {self.xformers.version} and unsloth {self.unsloth.version}",
            ),
            Choice(
                "pytorch",
                self.pytorch.version,
                f"CUDA {self.cuda} build only (the build pin excludes every CPU build)",
                build=self.pytorch_build,
                channel=torch_channel,
            ),
        ]
        if p.cuda_package == "pytorch-cuda":
            out.append(
                Choice(
                    "pytorch-cuda",
                    self.cuda,
                    f"CUDA {self.cuda} runtime from the "
                    f"nvidia channel ({self.target.cuda_source})",
                    channel=torch_channel,
                )
            )
        else:
            out.append(
                Choice("cuda-version", self.cuda, f"CUDA {self.cuda} ({self.target.cuda_source})")
            )
        out.append(
            Choice(
                "xformers",
                self.xformers.version,
                f"the build made for exactly pytorch {self.pytorch.version}"
                + (f" and CUDA {self.cuda}" if p.cuda_package != "pytorch-cuda" else ""),
                build=self.xformers_build,
                channel="xformers" if "xformers" in p.channels else p.channels[0],
            )
        )
        out.append(
            Choice(
                p.triton_package,
                self.pytorch.triton,
                f"the triton pytorch {self.pytorch.version} pins",
                channel=torch_channel,
            )
        )
        if "torchvision" in self.unsloth.requires:
            out.append(
                Choice(
                    "torchvision",
                    "",
                    f"unsloth {self.unsloth.version} requires it; "
                    "the CUDA pytorch pin selects its CUDA build",
                    channel=torch_channel,
                )
            )
        return out

    def pip_choices(self) -> list[Choice]:
        out = [Choice("unsloth", self.unsloth.version, f"release for profile {self.profile.name}")]
        for name, ver in self.unsloth.companions.items():
            spec = self.unsloth.requires.get(name, "")
            why = (
                f"unsloth {self.unsloth.version} requires {name}{spec}"
                if spec
                else (f"companion of unsloth {self.unsloth.version}")
            )
            out.append(Choice(name, ver, why))
        return out

    def planned_packages(self) -> list[Package]:
        """The plan as a package set with representative build strings, for the rules."""
        from .rules import Package

        pt_build = self.pytorch_build.replace("_*", "_0").replace("*", "_0")
        xf_build = self.xformers_build.replace("_*", "_0").replace("*", "_0")
        ch = self.profile.channels[0]
        pkgs = [
            Package("python", self.python + ".0", channel="conda-forge"),
            Package("pytorch", self.pytorch.version, pt_build, ch),
            Package(
                "xformers",
                self.xformers.version,
                xf_build,
                "xformers" if "xformers" in self.profile.channels else ch,
            ),
            Package(self.profile.triton_package, self.pytorch.triton, channel=ch),
        ]
        if self.profile.cuda_package == "pytorch-cuda":
            pkgs.append(Package("pytorch-cuda", self.cuda, channel=ch))
            pkgs.append(Package("pytorch-mutex", "1.0", "cuda", ch))
        for c in self.pip_choices():
            pkgs.append(Package(c.name, c.version, channel="pypi", installer="pip"))
        return pkgs

    def to_json(self) -> dict[str, Any]:
        return {
            "profile": self.profile.name,
            "target": self.target.to_json(),
            "python": self.python,
            "conda": [
                {
                    "name": c.name,
                    "version": c.version,
                    "build": c.build,
                    "channel": c.channel,
                    "why": c.why,
                }
                for c in self.conda_choices()
            ],
            "pip": [
                {"name": c.name, "version": c.version, "why": c.why} for c in self.pip_choices()
            ],
            "notices": list(self.notices),
        }


# ----------------------------------------------------------------------------- validation


def _validate(req: Request, kb: Knowledge) -> None:
    if req.profile is not None:
        check_profile(req.profile, kb)
    if req.cuda is not None:
        parse_cuda(
            req.cuda,
            "--cuda",
            hints=("conda unsloth env --help lists the CUDA versions of each profile",),
        )
    if req.python is not None and not re.fullmatch(_PY_RE, req.python):
        raise UsageError(f"--python {shown(req.python)} is not a Python version like 3.11")
    if req.python is not None and version_key(req.python) < (3, 9):
        raise SelectionError(
            f"--python {req.python} is not supported: Unsloth needs Python >= 3.9; "
            "nearest valid: --python 3.11",
            hints=["conda unsloth env --python 3.11"],
        )
    if req.torch is not None and not re.fullmatch(_TORCH_RE, req.torch):
        raise UsageError(f"--torch {shown(req.torch)} is not a PyTorch version like 2.5.1")
    if req.xformers is not None and not re.fullmatch(r"0\.0\.[0-9]+(\.post[0-9]+)?", req.xformers):
        raise UsageError(
            f"--xformers {shown(req.xformers)} is not an xformers version like 0.0.28.post3"
        )
    if req.unsloth is not None and kb.release(req.unsloth) is None:
        known = ", ".join(r.version for r in kb.releases)
        raise SelectionError(
            f"--unsloth {shown(req.unsloth)} is not in the knowledge base; known releases: {known}"
        )
    check_platform(req.platform)


# ----------------------------------------------------------------------------- selection


def _candidates(
    profile: Profile, kb: Knowledge, cuda: str, release: UnslothRelease | None
) -> list[tuple[PytorchBuild, str, XformersBuild, UnslothRelease]]:
    """Every valid (pytorch, python, xformers, unsloth) for one CUDA, newest torch first."""
    out = []
    if release is not None:
        releases = [release]
    else:  # the profile's default release first, then the newest others
        default = kb.release(kb.default_release[profile.name])
        others = sorted(
            (r for r in kb.releases if profile.name in r.profiles and r is not default),
            key=lambda r: version_key(r.version),
            reverse=True,
        )
        releases = ([default] if default else []) + others
    for pt in sorted(profile.pytorch, key=lambda r: version_key(r.version), reverse=True):
        if cuda not in pt.cuda:
            continue
        for py in sorted(pt.python, key=version_key, reverse=True):
            for xf in sorted(profile.xformers, key=lambda x: version_key(x.version), reverse=True):
                if xf.known_issue or not xf.matches_pytorch(pt.version) or py not in xf.python:
                    continue
                if xf.cuda and cuda not in xf.cuda:
                    continue
                for rel in releases:
                    if _release_accepts(kb, rel, pt.version, py, xf.version):
                        out.append((pt, py, xf, rel))
                        break
                else:
                    continue
                break
    return out


def _release_accepts(
    kb: Knowledge, rel: UnslothRelease, torch: str, python: str, xformers: str
) -> bool:
    if rel.companion_python and python not in rel.companion_python:
        return False
    return (
        kb.satisfies(python, rel.python)
        and kb.satisfies(torch, rel.requires.get("torch", ""))
        and kb.satisfies(xformers, rel.requires.get("xformers", ""))
    )


def _flags(profile: str, cuda: str, python: str, torch: str, default_profile: str) -> str:
    parts = []
    if profile != default_profile:
        parts.append(f"--profile {profile}")
    parts += [f"--cuda {cuda}", f"--python {python}", f"--torch {torch}"]
    return " ".join(parts)


def _torch_distance_key(version: str) -> int:
    major, minor, patch = (*version_key(version), 0, 0, 0)[:3]
    return major * 10_000 + minor * 100 + patch


def _nearest(
    kb: Knowledge, req: Request, profile: Profile, cuda: str, max_cuda: str | None
) -> str | None:
    """The closest valid request, as flags, preferring to keep profile, then CUDA, then python."""
    order = [profile] + [p for p in kb.profiles.values() if p.name != profile.name]
    for prof in order:
        cudas = [cuda] + [c for c in reversed(prof.cudas) if c != cuda]
        for c in cudas:
            if c not in prof.cudas:
                continue
            if max_cuda is not None and version_key(c) > version_key(max_cuda):
                continue
            release = kb.release(req.unsloth) if req.unsloth else None
            if release is not None and prof.name not in release.profiles:
                release = None
            cands = _candidates(prof, kb, c, release)
            if req.torch:
                asked = _torch_distance_key(req.torch)
                same = [x for x in cands if x[0].version == req.torch]
                cands = same or sorted(
                    cands, key=lambda x: abs(_torch_distance_key(x[0].version) - asked)
                )
            if req.python:
                same_py = [x for x in cands if x[1] == req.python]
                cands = same_py or cands
            if cands:
                pt, py, _, _ = cands[0]
                return _flags(prof.name, c, py, pt.version, DEFAULT_PROFILE)
    return None


def arch_supported(kb: Knowledge, arch: str, cuda: str, arch_list: str) -> bool:
    """Kernels for ``arch`` in a build whose TORCH_CUDA_ARCH_LIST is ``arch_list``, made with
    CUDA ``cuda`` (whose own libraries must know the arch: Blackwell needs CUDA >= 12.8)."""
    known = kb.gpu_archs.get(arch)
    if known is not None and version_key(cuda) < version_key(known.min_cuda):
        return False
    return arch_covered(arch, arch_list)


def _check_archs(target: Target, profile: Profile, kb: Knowledge) -> None:
    arch_list = profile.arch_lists[target.cuda]
    for arch in target.archs:
        if arch_supported(kb, arch, target.cuda, arch_list):
            continue
        known = kb.gpu_archs.get(arch)
        name = known.name if known else f"sm_{arch.replace('.', '')}"
        # nearest: a (profile, cuda) whose builds cover this arch
        alt = None
        for prof in [profile, *[p for p in kb.profiles.values() if p.name != profile.name]]:
            for c in reversed(prof.cudas):
                if arch_supported(kb, arch, c, prof.arch_lists[c]) and (
                    target.driver_cuda is None or version_key(c) <= version_key(target.driver_cuda)
                ):
                    alt = (
                        f"--profile {prof.name} " if prof.name != profile.name else ""
                    ) + f"--cuda {c}"
                    break
            if alt:
                break
        why = f"profile {profile.name} CUDA {target.cuda} builds ship kernels for {arch_list}"
        if int(arch.split(".")[0]) >= 10 and profile.name == "pytorch":
            why = "the pytorch channel stopped at PyTorch 2.5.1, which has no Blackwell kernels"
        raise SelectionError(
            f"GPU sm_{arch.replace('.', '')} ({name}) is not supported: {why} (F6); "
            f"nearest valid: {alt or 'none in the knowledge base'}",
            hints=[f"conda unsloth env {alt}"] if alt else [],
        )


def select(req: Request, host: Host, kb: Knowledge) -> Selection:
    _validate(req, kb)
    profile = kb.profiles[req.profile or DEFAULT_PROFILE]
    target, notices = resolve_target(
        profile,
        host,
        kb,
        cuda=req.cuda,
        archs=split_archs(req.gpu_archs),
        platform=req.platform,
    )
    _check_archs(target, profile, kb)
    cuda = target.cuda
    release = kb.release(req.unsloth) if req.unsloth else None
    if release is not None and profile.name not in release.profiles:
        raise SelectionError(
            f"unsloth {release.version} is not paired with profile {profile.name} in the "
            f"knowledge base (it is with {', '.join(release.profiles)})",
            hints=[
                f"conda unsloth env --profile {release.profiles[0]} --unsloth {release.version}"
            ],
        )

    def refuse(msg: str, hints: list[str] | None = None) -> SelectionError:
        alt = _nearest(kb, req, profile, cuda, target.driver_cuda)
        text = f"{msg}; nearest valid: {alt}" if alt else msg
        return SelectionError(text, hints=hints or ([f"conda unsloth env {alt}"] if alt else []))

    if req.torch is not None:
        row = profile.pytorch_row(req.torch)
        if row is None:
            known = ", ".join(r.version for r in profile.pytorch)
            other = [p.name for p in kb.profiles.values() if p.pytorch_row(req.torch)]
            raise refuse(
                f"--torch {req.torch} is not built on profile {profile.name} "
                f"(it has {known})" + (f"; profile {other[0]} has it" if other else "")
            )
        if cuda not in row.cuda:
            raise refuse(
                f"pytorch {req.torch} has no CUDA {cuda} build on profile {profile.name} "
                f"(it has {', '.join(row.cuda)})"
            )
        xf_rows = [x for x in profile.xformers if x.matches_pytorch(req.torch)]
        if xf_rows and all(x.known_issue for x in xf_rows):
            bad = xf_rows[0]
            issue = kb.issues[bad.known_issue or ""]
            raise refuse(
                f"pytorch {req.torch} pairs only with xformers {bad.version}, which has known "
                f"issue {issue.id} ({issue.title}: {issue.symptom[:60]}...)"
            )
    if req.xformers is not None:
        xrow = next((x for x in profile.xformers if x.version == req.xformers), None)
        if xrow is None:
            raise refuse(
                f"--xformers {req.xformers} is not built on profile {profile.name} (it has "
                f"{', '.join(x.version for x in profile.xformers if not x.known_issue)})"
            )
        if xrow.known_issue:
            issue = kb.issues[xrow.known_issue]
            raise refuse(
                f"xformers {req.xformers} has known issue {issue.id}: {issue.title} "
                f"({issue.symptom[:70]}...)"
            )
    if req.python is not None:
        if req.python not in profile.pythons:
            raise refuse(
                f"python {req.python} is not built by profile {profile.name} "
                f"(it has {', '.join(profile.pythons)})"
            )
        xf_pys = {p for x in profile.xformers if not x.known_issue for p in x.python}
        if req.python not in xf_pys:
            raise refuse(
                f"profile {profile.name} has no xformers build for python {req.python} "
                f"(xformers builds exist for python {', '.join(sorted(xf_pys, key=version_key))}; F14)"
            )

    cands = _candidates(profile, kb, cuda, release)
    if req.torch:
        cands = [c for c in cands if c[0].version == req.torch]
    if req.xformers:
        cands = [c for c in cands if c[2].version == req.xformers]
    if req.python:
        cands = [c for c in cands if c[1] == req.python]
    elif cands:
        default_py = [c for c in cands if c[1] == profile.default_python]
        cands = default_py or cands
    if not cands:
        asked = ", ".join(
            f"{k} {v}"
            for k, v in (
                ("torch", req.torch),
                ("python", req.python),
                ("xformers", req.xformers),
                ("unsloth", req.unsloth),
            )
            if v
        )
        reason = ""
        if req.torch and not any(
            kb.satisfies(req.torch, r.requires.get("torch", ""))
            for r in kb.releases
            if profile.name in r.profiles
        ):
            reason = f": every unsloth release in the knowledge base for profile {profile.name} requires torch >= 2.4.0"
        raise refuse(
            f"no consistent stack on profile {profile.name} for CUDA {cuda}"
            + (f" with {asked}" if asked else "")
            + reason
        )
    pt, py, xf, rel = cands[0]
    return Selection(profile, target, py, pt, xf, rel, tuple(notices))


def knowledge_conflicts(kb: Knowledge) -> list[str]:
    """Every stack this knowledge base can select, run through its own known-issue rules (the
    package ones): a stack that trips one means the files contradict each other. The loader
    calls this once, so a plan never has to load the rules to refuse a known-bad env."""
    from .rules import evaluate

    problems = []
    seen: set[tuple[str, ...]] = set()
    for profile in kb.profiles.values():
        releases = [r for r in kb.releases if profile.name in r.profiles]
        for cuda in profile.cudas:
            target = Target("linux-64", cuda, why="knowledge check")
            for release in releases:
                for pt, py, xf, rel in _candidates(profile, kb, cuda, release):
                    key = (profile.name, cuda, pt.version, py, xf.version, rel.version)
                    if key in seen:
                        continue
                    seen.add(key)
                    sel = Selection(profile, target, py, pt, xf, rel)
                    for f in evaluate(sel.planned_packages(), kb):
                        if f.issue.scope == "packages":
                            problems.append(
                                f"{f.id} ({f.detail}) matches profile {profile.name} CUDA {cuda} "
                                f"with pytorch {pt.version}, python {py}, xformers {xf.version} "
                                f"and unsloth {rel.version}"
                            )
    return problems

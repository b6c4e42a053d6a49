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
from .knowledge.stacks import (
    Stack,
    candidates,
    pins_exclude,
    planned_packages,
    pytorch_build,
    xformers_build,
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
    from .knowledge import Evidence
    from .knowledge.packages import Package

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
    # planned builds no public record confirms (knowledge/evidence.yaml)
    unconfirmed: tuple[Evidence, ...] = field(default=())

    @property
    def cuda(self) -> str:
        return self.target.cuda

    @property
    def cuda_nodot(self) -> str:
        return self.cuda.replace(".", "")

    @property
    def pytorch_build(self) -> str:
        return pytorch_build(self.profile, self.python, self.cuda)

    @property
    def xformers_build(self) -> str:
        return xformers_build(self.profile, self.python, self.cuda, self.pytorch.version)

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
        return planned_packages(
            self.profile, self.cuda, (self.pytorch, self.python, self.xformers, self.unsloth)
        )

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
            "unconfirmed": [e.to_json() for e in self.unconfirmed],
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


def _fit_host(
    kb: Knowledge,
    profile: Profile,
    cuda: str,
    cands: list[Stack],
    archs: tuple[str, ...],
    notices: list[str] | None = None,
) -> list[Stack]:
    """``cands`` without the stacks that have a host-scope known issue on GPUs ``archs``
    (an xformers build without kernels for them, F6; Blackwell with an old xformers, F8).
    When the first choice was dropped for one, ``notices`` gets why."""
    if not archs:
        return cands
    kept, skipped = [], []
    for c in cands:
        hits = kb.host_issues(profile.name, cuda, c[0].version, c[2].version, archs)
        if not hits:
            kept.append(c)
        elif not kept:
            skipped.append(_host_why(c, hits))
    if kept and skipped and notices is not None:
        pt, _, xf, _ = kept[0]
        notices.append(
            f"chose pytorch {pt.version} + xformers {xf.version} for this GPU: "
            + "; ".join(dict.fromkeys(skipped))
        )
    return kept


def _host_why(c: Stack, hits: list[tuple[str, str]]) -> str:
    return f"pytorch {c[0].version} + xformers {c[2].version} has " + "; ".join(
        f"{i} ({detail})" for i, detail in hits
    )


def _requested(cands: list[Stack], req: Request) -> list[Stack]:
    """The stacks with the pytorch and xformers the request names (if it names them)."""
    keep = [c for c in cands if not req.torch or c[0].version == req.torch]
    return [c for c in keep if not req.xformers or c[2].version == req.xformers]


def _why_empty(
    kb: Knowledge,
    profile: Profile,
    cuda: str,
    release: UnslothRelease | None,
    req: Request,
    archs: tuple[str, ...],
) -> str:
    """Why ``req`` has no stack (': reason', or ''): a known issue of this host, a pin whose
    Requires-Python excludes the python, or a pytorch no xformers build is made for."""
    cands = _requested(candidates(profile, kb, cuda, release), req)
    if req.python:
        cands = [c for c in cands if c[1] == req.python]
    if cands and archs:
        hits = kb.host_issues(profile.name, cuda, cands[0][0].version, cands[0][2].version, archs)
        if hits:
            return ": " + _host_why(cands[0], hits)
    if req.python:
        releases = [release] if release else [r for r in kb.releases if profile.name in r.profiles]
        why = [w for rel in releases for w in pins_exclude(kb, rel, req.python)]
        if why:
            return f": {'; '.join(dict.fromkeys(why))} (PyPI metadata)"
    if req.torch and not any(x.matches_pytorch(req.torch) for x in profile.xformers):
        return f": no xformers build on profile {profile.name} is made for pytorch {req.torch}"
    return ""


def _with_evidence(sel: Selection, kb: Knowledge) -> Selection:
    """``sel`` with its pytorch and xformers builds looked up in evidence.yaml: a build no
    public record confirms is listed in ``unconfirmed`` and named in a notice."""
    from dataclasses import replace

    from .knowledge import Evidence

    p = sel.profile
    planned = [
        ("pytorch", p.channels[0], sel.pytorch.version, sel.cuda, None, sel.pytorch_build),
        (
            "xformers",
            "xformers" if "xformers" in p.channels else p.channels[0],
            sel.xformers.version,
            p.xformers_build_cuda(sel.cuda),
            sel.pytorch.version,
            sel.xformers_build,
        ),
    ]
    unconfirmed = []
    notices = list(sel.notices)
    for name, channel, version, cuda, pytorch, build in planned:
        e = kb.evidence_for(channel, name, version, cuda, sel.python, pytorch)
        if e is not None and e.status == "confirmed":
            continue
        if e is None:
            e = Evidence(
                name,
                version,
                build,
                channel,
                "linux-64",
                cuda,
                (sel.python,),
                pytorch or "",
                (),
                "",
                "unconfirmed",
                "no record of this build in evidence.yaml",
                "none",
            )
        unconfirmed.append(e)
        what = "recorded as never published" if e.status == "absent" else "unconfirmed"
        notices.append(f"{name} {version}={build} ({channel}) is {what}: {e.note}")
    return replace(sel, notices=tuple(notices), unconfirmed=tuple(unconfirmed))


def _flags(profile: str, cuda: str, python: str, torch: str, default_profile: str) -> str:
    parts = []
    if profile != default_profile:
        parts.append(f"--profile {profile}")
    parts += [f"--cuda {cuda}", f"--python {python}", f"--torch {torch}"]
    return " ".join(parts)


def _torch_distance_key(version: str) -> int:
    major, minor, patch = (*version_key(version), 0, 0, 0)[:3]
    return major * 10_000 + minor * 100 + patch


def _closest_cudas(cudas: tuple[str, ...], cuda: str) -> list[str]:
    """``cudas`` closest to ``cuda`` first: the same major first, then by distance, the older
    one on a tie (a driver that runs ``cuda`` runs it)."""
    want = version_key(cuda)

    def key(c: str) -> tuple[bool, int, tuple[int, ...]]:
        k = version_key(c)
        return k[0] != want[0], abs((k[0] - want[0]) * 100 + k[1] - want[1]), k

    return sorted(cudas, key=key)


def _ranked(cands: list[Stack], req: Request, default_python: str) -> list[Stack]:
    """``cands`` closest to the request first: the asked torch (or the nearest), then the
    asked python (or the nearest, the newer on a tie; unasked: the profile's default), then
    their own order (newest torch first)."""
    asked_torch = _torch_distance_key(req.torch) if req.torch else 0
    asked_py = version_key(req.python) if req.python else ()

    def distance(item: tuple[int, Stack]) -> tuple[int, int, int, int]:
        i, x = item
        t = abs(_torch_distance_key(x[0].version) - asked_torch) if req.torch else 0
        k = version_key(x[1])
        if asked_py:
            return t, abs(k[1] - asked_py[1]) + 100 * abs(k[0] - asked_py[0]), -k[1], i
        return t, 0 if x[1] == default_python else 1, 0, i

    return [x for _, x in sorted(enumerate(cands), key=distance)]


def _nearest(
    kb: Knowledge,
    req: Request,
    profile: Profile,
    cuda: str,
    max_cuda: str | None,
    archs: tuple[str, ...] = (),
) -> str | None:
    """The closest valid request, as flags, preferring to keep profile, then CUDA (the
    closest one the driver runs, never another major when this one has a fit), then torch,
    then python (the closest one); on GPUs ``archs``, only stacks free of host issues."""
    order = [profile] + [p for p in kb.profiles.values() if p.name != profile.name]
    for prof in order:
        for c in _closest_cudas(prof.cudas, cuda):
            if max_cuda is not None and version_key(c) > version_key(max_cuda):
                continue
            if not all(kb.arch_supported(a, c, prof.arch_lists[c]) for a in archs):
                continue
            release = kb.release(req.unsloth) if req.unsloth else None
            if release is not None and prof.name not in release.profiles:
                release = None
            cands = _fit_host(kb, prof, c, candidates(prof, kb, c, release), archs)
            ranked = _ranked(cands, req, prof.default_python)
            if ranked:
                pt, py, _, _ = ranked[0]
                return _flags(prof.name, c, py, pt.version, DEFAULT_PROFILE)
    return None


def arch_supported(kb: Knowledge, arch: str, cuda: str, arch_list: str) -> bool:
    """Kernels for ``arch`` in a build whose TORCH_CUDA_ARCH_LIST is ``arch_list``, made with
    CUDA ``cuda`` (whose own libraries must know the arch: Blackwell needs CUDA >= 12.8). An
    arch the knowledge base does not know is never supported: old PTX does not make it so."""
    known = kb.gpu_archs.get(arch)
    if known is None or version_key(cuda) < version_key(known.min_cuda):
        return False
    return arch_covered(arch, arch_list)


def _check_archs(target: Target, profile: Profile, kb: Knowledge) -> None:
    arch_list = profile.arch_lists[target.cuda]
    for arch in target.archs:
        sm = f"sm_{arch.replace('.', '')}"
        known = kb.gpu_archs.get(arch)
        if known is None:
            table = ", ".join(sorted(kb.gpu_archs, key=version_key))
            raise SelectionError(
                f"GPU {sm} is not in the knowledge base's architecture table ({table}): "
                "which builds have kernels for it is unknown, so it is not planned for (F6)",
                hints=[
                    "nvidia-smi --query-gpu=compute_cap --format=csv shows the GPU's; "
                    "add it to compat.yaml gpu_archs with its first CUDA and a source"
                ],
            )
        if arch_supported(kb, arch, target.cuda, arch_list):
            continue
        # nearest: the (profile, cuda) closest to the target whose builds serve every arch
        # (torch's, and an xformers' without a host issue)
        alt = None
        for prof in [profile, *[p for p in kb.profiles.values() if p.name != profile.name]]:
            for c in _closest_cudas(prof.cudas, target.cuda):
                if (
                    all(arch_supported(kb, a, c, prof.arch_lists[c]) for a in target.archs)
                    and (
                        target.driver_cuda is None
                        or version_key(c) <= version_key(target.driver_cuda)
                    )
                    and _fit_host(kb, prof, c, candidates(prof, kb, c, None), target.archs)
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
        if version_key(target.cuda) < version_key(known.min_cuda):
            why = f"it needs CUDA >= {known.min_cuda}; {why}"
        raise SelectionError(
            f"GPU {sm} ({known.name}) is not supported: {why} (F6); "
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
        alt = _nearest(kb, req, profile, cuda, target.driver_cuda, target.archs)
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

    cands = _requested(candidates(profile, kb, cuda, release), req)
    if req.python:
        cands = [c for c in cands if c[1] == req.python]
    elif cands:
        default_py = [c for c in cands if c[1] == profile.default_python]
        cands = default_py or cands
    cands = _fit_host(kb, profile, cuda, cands, target.archs, notices)
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
        reason = reason or _why_empty(kb, profile, cuda, release, req, target.archs)
        raise refuse(
            f"no consistent stack on profile {profile.name} for CUDA {cuda}"
            + (f" with {asked}" if asked else "")
            + reason
        )
    pt, py, xf, rel = cands[0]
    return _with_evidence(Selection(profile, target, py, pt, xf, rel, tuple(notices)), kb)

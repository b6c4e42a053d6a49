"""Known-issue rules evaluated on a set of packages: a plan, a solve, or an installed env.

The rows live in ``knowledge/known_issues.yaml``; each row's ``check.kind`` names one function
here. A rule returns evidence (the packages that triggered it) or nothing. Nothing here imports
or runs the packages: it reads names, versions, build strings and channels only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .model import Knowledge, KnownIssue, parse_arch
from .packages import (
    MUST_BE_INSTALLED,
    XFORMERS_CHANNEL_BUILD,
    HostFacts,
    Package,
    PackageSet,
    at_least,
    base_version,
    built_for_this_torch,
    is_cpu_torch,
    normalize,
    parse_version,
    provider,
    release_key,
    torch_cuda,
    torch_triton_pin,
    xformers_build,
    xformers_cuda_major,
    xformers_torch,
    xformers_torch_spec,
)

if TYPE_CHECKING:
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version


@dataclass(frozen=True)
class Finding:
    issue: KnownIssue
    detail: str
    evidence: tuple[str, ...] = ()
    packages: tuple[Package, ...] = ()  # the packages behind ``evidence``

    @property
    def id(self) -> str:
        return self.issue.id

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.issue.id,
            "title": self.issue.title,
            "severity": self.issue.severity,
            "detail": self.detail,
            "evidence": list(self.evidence),
            "symptom": self.issue.symptom,
            "fix": self.issue.fix,
            "fix_commands": list(self.issue.fix_commands),
            "source": self.issue.source,
        }


@dataclass(frozen=True)
class Hit:
    """What a rule returns when it fires: a one-line detail and the packages behind it."""

    detail: str
    packages: tuple[Package, ...] = ()


def _hit(detail: str, *packages: Package | None) -> Hit:
    return Hit(detail, tuple(dict.fromkeys(p for p in packages if p is not None)))


Rule = Callable[[PackageSet, dict[str, Any], Knowledge, "HostFacts | None"], "Hit | None"]


# a final release (no pre-release, dev or local part): for these, "pre-releases count" changes
# no PEP 440 answer, so the knowledge's specifier table answers as packaging does
_FINAL = re.compile(r"[0-9]+(?:\.[0-9]+)*(?:\.post[0-9]+)?", re.ASCII)


def _contains(spec: str, version: str, kb: Knowledge | None = None) -> bool | None:
    """Is ``version`` inside ``spec`` (pre-releases count)? None when either is unreadable.
    A final release the knowledge's specifier table holds (the pins a plan makes) is answered
    from it, without packaging."""
    if kb is not None and _FINAL.fullmatch(version):
        known = kb.specifier_table.get((spec, version))
        if known is not None:
            return known
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    v = parse_version(version)
    if v is None:
        return None
    try:
        return SpecifierSet(spec).contains(v, prereleases=True)
    except InvalidSpecifier:
        return None


def _version_in(
    ps: PackageSet, check: dict[str, Any], kb: Knowledge, host: HostFacts | None
) -> Hit | None:
    versions = {str(v) for v in check.get("versions", [])}
    for p in ps.all(str(check["package"])):
        if base_version(p.version) in versions:
            return _hit(
                f"{p.name} {p.version} is one of the affected versions "
                f"({', '.join(sorted(versions))})",
                p,
            )
    return None


def _xformers_for_another_torch(
    ps: PackageSet, kb: Knowledge
) -> tuple[Package, Package, SpecifierSet, Version] | None:
    """(xformers, torch, the torch spec xformers was built for, torch's version) when the
    installed torch is outside that spec; None when it is inside or either is unknown."""
    xf, torch = ps.get("xformers"), ps.torch()
    if xf is None or torch is None:
        return None
    text = xformers_torch_spec(xf, kb)
    if text is None or built_for_this_torch(text, torch.version):
        return None
    spec = xformers_torch(xf, kb)
    tv = parse_version(torch.version)
    if spec is None or tv is None or spec.contains(tv, prereleases=True):
        return None
    return xf, torch, spec, tv


def _xformers_torch_mismatch(
    ps: PackageSet, check: dict[str, Any], kb: Knowledge, host: HostFacts | None
) -> Hit | None:
    miss = _xformers_for_another_torch(ps, kb)
    if miss is None:
        return None
    from packaging.version import Version

    xf, torch, spec, tv = miss
    pinned = [Version(s.version.rstrip(".*")) for s in spec if s.operator == "=="]
    if pinned and pinned[0] > tv:
        return None  # F15 covers xformers newer than torch
    return _hit(
        f"xformers {xf.version} was built for torch {spec}, but torch is {torch.version}",
        xf,
        torch,
    )


def _xformers_newer_than_torch(
    ps: PackageSet, check: dict[str, Any], kb: Knowledge, host: HostFacts | None
) -> Hit | None:
    miss = _xformers_for_another_torch(ps, kb)
    if miss is None:
        return None
    from packaging.version import Version

    xf, torch, spec, tv = miss
    for s in spec:
        if s.operator in ("==", ">=") and Version(s.version.rstrip(".*")) > tv:
            return _hit(
                f"xformers {xf.version} needs torch {spec}; torch {torch.version} is older",
                xf,
                torch,
            )
    return None


def _cpu_pytorch(
    ps: PackageSet, check: dict[str, Any], kb: Knowledge, host: HostFacts | None
) -> Hit | None:
    for p in ps.all("pytorch") + ps.all("torch"):
        if is_cpu_torch(p):
            return _hit(f"{p} is a CPU-only build", p)
    mutex = ps.get("pytorch-mutex")
    if mutex is not None and mutex.build == "cpu":
        return _hit("pytorch-mutex 1.0 cpu is installed: the pytorch channel's CPU variant", mutex)
    cpuonly = ps.get("cpuonly")
    if cpuonly is not None:
        return _hit("cpuonly is installed: it forces the CPU variant of pytorch", cpuonly)
    return None


def _mkl_too_new(
    ps: PackageSet, check: dict[str, Any], kb: Knowledge, host: HostFacts | None
) -> Hit | None:
    torch = next((p for p in ps.all("pytorch") if provider(p) == "pytorch"), None)
    mkl = next((p for p in ps.all("mkl") if p.installer == "conda"), None)
    if torch is None or mkl is None:
        return None
    limit = str(check.get("max", "2024.1"))
    if at_least(mkl.version, limit):
        return _hit(
            f"mkl {mkl.version} is >= {limit} next to the pytorch-channel build "
            f"pytorch {torch.version} {torch.build}",
            mkl,
            torch,
        )
    return None


def _bnb_missing_cuda(
    ps: PackageSet, check: dict[str, Any], kb: Knowledge, host: HostFacts | None
) -> Hit | None:
    bnb, torch = ps.get("bitsandbytes"), ps.torch()
    if bnb is None or torch is None or bnb.installer != "pip":
        return None
    cuda = torch_cuda(torch)
    wheel = kb.bnb_wheel(base_version(bnb.version))
    if cuda is None or wheel is None:
        return None
    if wheel.lib_for(cuda) is not None:
        return None
    libs = ", ".join(map(str, wheel.cuda))
    if wheel.loader == "same-major":
        why = f"none of CUDA {cuda.split('.')[0]}.x"
    else:
        fallback = (
            "it falls back to its CPU library (no GPU ops)"
            if wheel.loader == "exact-or-cpu"
            else "it fails to load (every GPU op raises)"
        )
        why = (
            f"bitsandbytes < 0.50 loads only libbitsandbytes_cuda{cuda.replace('.', '')}, "
            f"so {fallback}"
        )
    return _hit(
        f"bitsandbytes {bnb.version} ships CUDA libraries {libs}; none for torch's CUDA "
        f"{cuda}: {why}",
        bnb,
        torch,
    )


def _duplicate_torch(
    ps: PackageSet, check: dict[str, Any], kb: Knowledge, host: HostFacts | None
) -> Hit | None:
    conda_torch = [p for p in ps.all("pytorch") if p.installer == "conda"]
    pip_torch = [p for p in ps.all("torch") if p.installer == "pip"]
    if conda_torch and pip_torch:
        if conda_torch[0].stale:
            return _hit(
                f"pip's torch {pip_torch[0].version} replaced the files of conda's "
                f"{conda_torch[0]}; Python imports pip's",
                conda_torch[0],
                pip_torch[0],
            )
        return _hit(
            f"conda's {conda_torch[0]} and pip's torch {pip_torch[0].version} are both installed",
            conda_torch[0],
            pip_torch[0],
        )
    if len(pip_torch) > 1:
        return _hit(
            "more than one torch distribution is installed: "
            + ", ".join(p.version for p in pip_torch),
            *pip_torch,
        )
    return None


def _mixed_providers(
    ps: PackageSet, check: dict[str, Any], kb: Knowledge, host: HostFacts | None
) -> Hit | None:
    seen: dict[str, Package] = {}
    for name in ("pytorch", "xformers", "pytorch-cuda", "torchtriton", "pytorch-mutex"):
        for p in ps.all(name):
            prov = provider(p)
            if prov is not None:
                seen.setdefault(prov, p)
    triton = next((p for p in ps.all("triton") if p.installer == "conda"), None)
    if triton is not None and "pytorch" in seen:
        seen.setdefault("conda-forge", triton)
    if "pytorch" in seen and "conda-forge" in seen:
        return _hit(
            f"{seen['conda-forge']} is from the conda-forge stack, "
            f"{seen['pytorch']} from the pytorch-channel stack",
            seen["conda-forge"],
            seen["pytorch"],
        )
    return None


def _python_xformers_channel(
    ps: PackageSet, check: dict[str, Any], kb: Knowledge, host: HostFacts | None
) -> Hit | None:
    xf, py = ps.get("xformers"), ps.python()
    if xf is None or py is None:
        return None
    m = XFORMERS_CHANNEL_BUILD.match(xf.build)
    if not m:
        return None
    built_for = f"{m.group(1)}.{m.group(2)}"
    row = (
        next(
            (x for x in kb.profiles["pytorch"].xformers if x.version == base_version(xf.version)),
            None,
        )
        if "pytorch" in kb.profiles
        else None
    )
    python = ps.get("python")
    if built_for != py:
        return _hit(
            f"xformers build {xf.build} is for python {built_for}, python is {py}", xf, python
        )
    if row is not None and py not in row.python:
        return _hit(
            f"xformers {xf.version} is built on the xformers channel for python "
            f"{', '.join(row.python)} only",
            xf,
            python,
        )
    return None


def _cuda_major_mismatch(
    ps: PackageSet, check: dict[str, Any], kb: Knowledge, host: HostFacts | None
) -> Hit | None:
    xf, torch = ps.get("xformers"), ps.torch()
    if xf is None or torch is None:
        return None
    tc = torch_cuda(torch)
    xc = xformers_cuda_major(xf, kb)
    if tc is None or xc is None:
        return None
    if int(tc.split(".")[0]) != xc:
        return _hit(
            f"xformers {xf.version} is a CUDA {xc} build, torch {torch.version} a CUDA {tc} build",
            xf,
            torch,
        )
    return None


@dataclass(frozen=True)
class Violation:
    """One requirement of the installed unsloth release that the env does not meet: a version
    outside its range, or (``installed`` None) not installed at all."""

    requirement: str  # a pip distribution name ("transformers") or "python"
    spec: str  # the release's range ("<4.45.0")
    installed: Package | None

    def __str__(self) -> str:
        if self.installed is None:
            return f"{self.requirement} is not installed (needs {self.requirement}{self.spec})"
        return f"{self.requirement} {self.installed.version} (needs {self.requirement}{self.spec})"


def unsloth_violations(packages: Iterable[Package] | PackageSet, kb: Knowledge) -> list[Violation]:
    """The installed unsloth's own requirement ranges (knowledge/unsloth.yaml) that the
    packages violate; empty when unsloth is absent or its release is not in the knowledge."""
    ps = packages if isinstance(packages, PackageSet) else PackageSet(list(packages))
    un = ps.get("unsloth")
    if un is None:
        return []
    rel = kb.release(base_version(un.version))
    if rel is None:
        return []
    out: list[Violation] = []
    python = ps.get("python")
    py = ps.python()
    if (
        python is not None
        and py is not None
        and rel.python
        and _contains(rel.python, py, kb) is False
    ):
        out.append(Violation("python", rel.python, python))
    for dist, spec in rel.requires.items():
        installed = ps.live(dist)
        if installed is None:
            # what the plan installs by name must be there: torch, xformers and the pinned
            # companions (unsloth_zoo, ...); the rest (triton, protobuf) comes in as their
            # dependency, which conda's solve and `pip check` cover
            if dist in rel.companions or dist in MUST_BE_INSTALLED:
                out.append(Violation(dist, spec, None))
            continue
        if spec and _contains(spec, installed.version, kb) is False:
            out.append(Violation(dist, spec, installed))
    return out


def _unsloth_requirements(
    ps: PackageSet, check: dict[str, Any], kb: Knowledge, host: HostFacts | None
) -> Hit | None:
    problems = unsloth_violations(ps, kb)
    if not problems:
        return None
    un = ps.get("unsloth")
    assert un is not None  # violations imply an unsloth
    missing = all(v.installed is None for v in problems)
    what = "packages that are not installed" if missing else "other versions"
    return _hit(
        f"unsloth {un.version} requires {what}: " + "; ".join(map(str, problems)),
        un,
        *(v.installed for v in problems),
    )


def _triton_mismatch(
    ps: PackageSet, check: dict[str, Any], kb: Knowledge, host: HostFacts | None
) -> Hit | None:
    torch, triton = ps.torch(), ps.triton()
    if torch is None or triton is None:
        return None
    pin = torch_triton_pin(torch, ps, kb)
    if pin is None or base_version(triton.version.strip()) == pin:
        return None
    have, want = parse_version(triton.version), parse_version(pin)
    if have is None or want is None or have == want:
        return None
    return _hit(
        f"torch {torch.version} pins triton {pin}, but Python imports {triton.name} "
        f"{triton.version} ({triton.installer})",
        triton,
        torch,
    )


def _cuda_newer_than_driver(
    ps: PackageSet, check: dict[str, Any], kb: Knowledge, host: HostFacts | None
) -> Hit | None:
    torch = ps.torch()
    if host is None or host.driver_cuda is None or torch is None:
        return None
    tc = torch_cuda(torch)
    build_v, driver_v = parse_version(tc), parse_version(host.driver_cuda)
    if tc is None or build_v is None or driver_v is None:
        return None  # unknown: not a version we can compare
    if build_v <= driver_v:
        return None
    detail = (
        f"torch {torch.version} is a CUDA {tc} build; the driver supports CUDA "
        f"{host.driver_cuda} at most"
    )
    if build_v.major == driver_v.major:
        # Strict on purpose: minor-version compatibility covers precompiled (SASS/cubin)
        # kernels, not PTX; Triton emits PTX for the build's CUDA and an older driver's JIT
        # rejects it ("PTX was compiled with an unsupported toolchain").
        detail += (
            f"; CUDA minor-version compatibility runs most kernels, but Triton-compiled "
            f"kernels (Unsloth's) need a driver that supports CUDA {tc}"
        )
    return _hit(detail, torch)


def _arch_not_covered(
    ps: PackageSet, check: dict[str, Any], kb: Knowledge, host: HostFacts | None
) -> Hit | None:
    if host is None or not host.archs:
        return None
    known = [a for a in host.archs if a in kb.gpu_archs]  # doctor notes the others
    torch = ps.torch()
    prov, tc = (provider(torch), torch_cuda(torch)) if torch is not None else (None, None)
    if torch is not None and prov in kb.profiles and tc is not None:
        archs = kb.profiles[prov].arch_lists.get(tc)
        missing = [a for a in known if archs and not kb.arch_supported(a, tc, archs)]
        if archs and missing:
            return _hit(
                f"torch {torch.version} ({prov}, CUDA {tc}) ships kernels for {archs}; "
                f"not for sm_{missing[0].replace('.', '')}",
                torch,
            )
    xf = ps.get("xformers")
    built = xformers_build(xf, kb) if xf is not None else None
    if xf is not None and built is not None:
        xc, archs = built
        missing = [a for a in known if not kb.arch_supported(a, xc, archs)]
        if missing:
            return _hit(
                f"xformers {xf.version} ({provider(xf)}, CUDA {xc}) ships kernels for "
                f"{archs}; not for sm_{missing[0].replace('.', '')}",
                xf,
            )
    return None


def _blackwell_old_xformers(
    ps: PackageSet, check: dict[str, Any], kb: Knowledge, host: HostFacts | None
) -> Hit | None:
    xf = ps.get("xformers")
    if host is None or xf is None:
        return None
    floor = parse_arch(str(check.get("min_arch", "10.0"))) or (10, 0)
    blackwell = [a for a in host.archs if (parse_arch(a) or (0, 0)) >= floor]
    if not blackwell:
        return None
    from packaging.version import Version

    v = parse_version(xf.version)
    if blackwell and v is not None and v <= Version(str(check.get("max_bad", "0.0.32.post2"))):
        return _hit(f"GPU sm_{blackwell[0].replace('.', '')} with xformers {xf.version}", xf)
    return None


def _glibc_too_old(
    ps: PackageSet, check: dict[str, Any], kb: Knowledge, host: HostFacts | None
) -> Hit | None:
    if host is None:
        return None
    floor = str(check.get("min", "2.28"))
    have, need = release_key(str(host.glibc).strip()), release_key(floor)
    if have is not None and need is not None and have >= need:
        return None  # the usual answer, without packaging
    from packaging.version import Version

    glibc = parse_version(host.glibc)
    if glibc is None or glibc >= Version(floor):
        return None
    for p in ps.packages:
        v = parse_version(p.version)
        if p.installer != "pip" or v is None:
            continue
        if (normalize(p.name) == "torch" and v >= Version("2.7")) or (
            normalize(p.name) == "xformers" and v >= Version("0.0.28")
        ):
            return _hit(
                f"pip {p.name} {p.version} is a manylinux_2_28 wheel; glibc is {host.glibc}", p
            )
    return None


def _runtime(
    ps: PackageSet, check: dict[str, Any], kb: Knowledge, host: HostFacts | None
) -> Hit | None:
    return None  # observable only by running code: see verify/probe.py


def _marker(
    ps: PackageSet, check: dict[str, Any], kb: Knowledge, host: HostFacts | None
) -> Hit | None:
    return None  # read from the env's marker by doctor.env_findings, not from packages


RULES: dict[str, Rule] = {
    "version_in": _version_in,
    "xformers_torch_mismatch": _xformers_torch_mismatch,
    "xformers_newer_than_torch": _xformers_newer_than_torch,
    "cpu_pytorch": _cpu_pytorch,
    "mkl_too_new": _mkl_too_new,
    "bnb_missing_cuda": _bnb_missing_cuda,
    "duplicate_torch": _duplicate_torch,
    "mixed_providers": _mixed_providers,
    "python_xformers_channel": _python_xformers_channel,
    "cuda_major_mismatch": _cuda_major_mismatch,
    "unsloth_requirements": _unsloth_requirements,
    "cuda_newer_than_driver": _cuda_newer_than_driver,
    "arch_not_covered": _arch_not_covered,
    "blackwell_old_xformers": _blackwell_old_xformers,
    "glibc_too_old": _glibc_too_old,
    "triton_mismatch": _triton_mismatch,
    "runtime": _runtime,
    "create_failed": _marker,
    "verification_failed": _marker,
}


def evaluate(
    packages: Iterable[Package],
    kb: Knowledge,
    host: HostFacts | None = None,
    only: Iterable[str] | None = None,
) -> list[Finding]:
    """Every known issue the package set (and host, when given) triggers, in knowledge order.

    Each finding's ``evidence`` names exactly the packages its rule looked at (``packages``
    holds them as objects)."""
    ps = PackageSet(list(packages))
    wanted = set(only) if only is not None else None
    findings = []
    for issue in kb.issues.values():
        if wanted is not None and issue.id not in wanted:
            continue
        rule = RULES[str(issue.check["kind"])]
        hit = rule(ps, issue.check, kb, host)
        if hit is not None:
            findings.append(
                Finding(
                    issue=issue,
                    detail=hit.detail,
                    evidence=tuple(str(p) for p in hit.packages),
                    packages=hit.packages,
                )
            )
    return findings

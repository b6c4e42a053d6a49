"""The knowledge base's data model: one frozen dataclass per kind of row, and the version
helpers the planner and the rules share."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ExtraSpec:
    spec: str
    why: str
    source: str


@dataclass(frozen=True)
class PytorchBuild:
    version: str
    cuda: tuple[str, ...]
    python: tuple[str, ...]
    triton: str
    source: str


@dataclass(frozen=True)
class XformersBuild:
    version: str
    pytorch: str  # an exact version (pytorch channel) or a "2.10.*" series (conda-forge)
    python: tuple[str, ...]
    archs: str
    source: str
    cuda: tuple[
        str, ...
    ] = ()  # conda-forge: CUDA variants built; pytorch channel: see cuda_builds
    known_issue: str | None = None

    def matches_pytorch(self, version: str) -> bool:
        if self.pytorch.endswith(".*"):
            return version.startswith(self.pytorch[:-1])
        return version == self.pytorch


@dataclass(frozen=True)
class Profile:
    name: str
    summary: str
    source: str
    channels: tuple[str, ...]
    cuda_package: str
    default_cuda: str
    default_python: str
    pytorch_build: str
    triton_package: str
    extra_specs: tuple[ExtraSpec, ...]
    arch_lists: dict[str, str]
    pytorch: tuple[PytorchBuild, ...]
    xformers_build: str
    xformers: tuple[XformersBuild, ...]
    xformers_cuda_builds: dict[str, str] = field(default_factory=dict)

    @property
    def cudas(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for row in self.pytorch:
            for c in row.cuda:
                seen[c] = None
        return tuple(sorted(seen, key=version_key))

    @property
    def pythons(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for row in self.pytorch:
            for p in row.python:
                seen[p] = None
        return tuple(sorted(seen, key=version_key))

    def pytorch_row(self, version: str) -> PytorchBuild | None:
        return next((r for r in self.pytorch if r.version == version), None)


@dataclass(frozen=True)
class GpuArch:
    arch: str
    name: str
    min_cuda: str
    source: str


@dataclass(frozen=True)
class CudaDriver:
    cuda: str
    min_driver: str
    family_floor: str
    source: str


@dataclass(frozen=True)
class XformersWheel:
    version: str
    torch: str
    build_torch: str
    cuda: int
    source: str


# How a bitsandbytes release picks its CUDA library (bitsandbytes/cextension.py per tag)
BNB_LOADERS = {
    # libbitsandbytes_cuda{MAJ}{MIN} of torch.version.cuda, else a warning and the CPU library
    "exact-or-cpu": "loads only the library of torch's exact CUDA; without it, the CPU library",
    # the same name, else RuntimeError at load (an error stub: every GPU op raises)
    "exact-or-error": "loads only the library of torch's exact CUDA; without it, none",
    # exact, else the nearest packaged library of the same CUDA major
    "same-major": "loads the library of torch's CUDA, else one of the same CUDA major",
}


@dataclass(frozen=True)
class BnbWheel:
    version: str
    cuda: tuple[int, ...]
    torch: str
    python: str
    source: str
    loader: str = "exact-or-cpu"  # a BNB_LOADERS key
    loader_source: str = ""

    def lib_for(self, cuda: str) -> int | None:
        """The CUDA library (121 = 12.1) this wheel loads next to a torch built for ``cuda``
        ('12.1'), None when it loads none (BNB_CUDA_VERSION unset). Exact match first; from
        0.50.0 the highest packaged one of the same major below, else the lowest above."""
        major, minor = (int(x) for x in cuda.split(".")[:2])
        want = major * 10 + minor
        if want in self.cuda:
            return want
        if self.loader != "same-major":
            return None
        same = [c for c in self.cuda if c // 10 == major]
        lower = [c for c in same if c < want]
        higher = [c for c in same if c > want]
        if lower:
            return max(lower)
        return min(higher) if higher else None


@dataclass(frozen=True)
class UnslothRelease:
    version: str
    python: str
    requires: dict[str, str]
    companions: dict[str, str]
    profiles: tuple[str, ...]
    resolved_with: str
    source: str
    companion_python: tuple[str, ...] = ()


@dataclass(frozen=True)
class KnownIssue:
    id: str
    title: str
    symptom: str
    severity: str
    scope: str
    check: dict[str, Any]
    fix: str
    fix_commands: tuple[str, ...]
    source: str


@dataclass(frozen=True)
class Knowledge:
    directory: str
    revision: str
    cuda_drivers: tuple[CudaDriver, ...]
    gpu_archs: dict[str, GpuArch]
    profiles: dict[str, Profile]
    xformers_pypi: tuple[XformersWheel, ...]
    bnb_pypi: tuple[BnbWheel, ...]
    releases: tuple[UnslothRelease, ...]
    default_release: dict[str, str]
    issues: dict[str, KnownIssue]
    # (specifier set, version) -> PEP 440 answer, for the specifiers of the releases and the
    # versions the profiles build: computed once at load, so a plan needs no `packaging`
    specifier_table: dict[tuple[str, str], bool] = field(default_factory=dict)

    def satisfies(self, version: str, spec: str) -> bool:
        """Is ``version`` in the PEP 440 specifier set ``spec`` ('' allows any version)?"""
        known = self.specifier_table.get((spec, version))
        return known if known is not None else pep440_contains(version, spec)

    def release(self, version: str) -> UnslothRelease | None:
        return next((r for r in self.releases if r.version == version), None)

    def driver(self, cuda: str) -> CudaDriver | None:
        return next((d for d in self.cuda_drivers if d.cuda == cuda), None)

    def xformers_wheel(self, version: str) -> XformersWheel | None:
        return next((w for w in self.xformers_pypi if w.version == version), None)

    def bnb_wheel(self, version: str) -> BnbWheel | None:
        return next((w for w in self.bnb_pypi if w.version == version), None)


@functools.lru_cache(maxsize=4096)
def version_key(v: str) -> tuple[int, ...]:
    """Sort key for dotted numeric versions like '12.1' or '3.10' (not PEP 440 in general)."""
    out = []
    for part in v.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


def pep440_contains(version: str, spec: str) -> bool:
    """``Version(version) in SpecifierSet(spec)``, with packaging imported only when asked."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    return Version(version) in SpecifierSet(spec)


def parse_arch(arch: str) -> tuple[int, int] | None:
    """A compute capability '8.9' as (8, 9); None when it is not one."""
    m = re.fullmatch(r"\s*(\d+)\.(\d+)\s*", arch)
    return (int(m.group(1)), int(m.group(2))) if m else None


def arch_covered(arch: str, arch_list: str) -> bool:
    """Is compute capability ``arch`` ('8.9') served by a TORCH_CUDA_ARCH_LIST string?

    SASS for X.y runs on X.z with z >= y (same major); PTX for A runs on any arch >= A.
    """
    parsed = parse_arch(arch)
    if parsed is None:
        return True  # not a compute capability: unknown, nothing to report
    major, minor = parsed
    for entry in arch_list.split():
        ptx = entry.endswith("+PTX")
        base = entry.removesuffix("+PTX")
        arch_specific = base.endswith(("a", "f"))  # sm_90a: runs on exactly sm_90
        emaj, emin = (int(x) for x in base.rstrip("af").split("."))
        if arch_specific:
            if (emaj, emin) == (major, minor):
                return True
            continue
        if emaj == major and emin <= minor:
            return True
        if ptx and (emaj, emin) <= (major, minor):
            return True
    return False

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
class ExtraXformersBuild:
    """Builds of an xformers release for a pytorch the profile does not offer (kept so a
    diagnosis of an older env knows them; never planned)."""

    pytorch: str
    cuda: tuple[str, ...]
    python: tuple[str, ...]
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
    # TORCH_CUDA_ARCH_LIST per CUDA of the xformers build ("11.8" for cu11.8.0) where it is
    # not ``archs`` (the xformers channel's cu11.8.0 and cu12.1.0 builds differ)
    archs_by_cuda: tuple[tuple[str, str], ...] = ()
    extra_builds: tuple[ExtraXformersBuild, ...] = ()

    def matches_pytorch(self, version: str) -> bool:
        if self.pytorch.endswith(".*"):
            return version.startswith(self.pytorch[:-1])
        return version == self.pytorch

    def built_for(self, pytorch: str) -> bool:
        """Was a build of this release made for ``pytorch`` (the planned one or an extra)?"""
        return self.matches_pytorch(pytorch) or any(
            b.pytorch == pytorch for b in self.extra_builds
        )

    def archs_for(self, build_cuda: str) -> str:
        """The arch list of the build made with CUDA ``build_cuda`` ("12.1" for cu12.1.0)."""
        return dict(self.archs_by_cuda).get(build_cuda, self.archs)


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

    def xformers_row(self, version: str) -> XformersBuild | None:
        return next((x for x in self.xformers if x.version == version), None)

    def xformers_build_cuda(self, cuda: str) -> str:
        """The CUDA (major.minor) of the xformers build planned for target ``cuda``: the
        xformers channel builds cu12.1.0 for CUDA 12.1 and 12.4; conda-forge builds each."""
        build = self.xformers_cuda_builds.get(cuda)
        return ".".join(build.split(".")[:2]) if build else cuda


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
class PythonRequirement:
    """A pinned distribution's Requires-Python (PyPI metadata of that exact version)."""

    name: str
    version: str
    python: str  # a PEP 440 specifier set, '' when the upload declares none
    source: str


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
    requires_python: tuple[PythonRequirement, ...] = ()


@dataclass(frozen=True)
class Evidence:
    """A public record (or its absence) of one conda build the planner can emit."""

    name: str
    version: str
    build: str  # the exact build string when a record shows it, else the known pattern
    channel: str
    subdir: str
    cuda: str
    python: tuple[str, ...]  # the pythons it serves ("3.10".. for an abi3 build)
    pytorch: str  # xformers: the pytorch series its depends pin ("2.10", "2.5.1"); else ''
    depends: tuple[str, ...]
    url: str
    status: str  # confirmed | unconfirmed | absent
    note: str
    source: str

    def serves(self, python: str, pytorch: str | None = None) -> bool:
        if python not in self.python:
            return False
        if pytorch is None or not self.pytorch:
            return True
        return pytorch == self.pytorch or pytorch.startswith(self.pytorch + ".")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "build": self.build,
            "channel": self.channel,
            "status": self.status,
            "note": self.note,
            "source": self.source,
        }


EVIDENCE_STATUSES = ("confirmed", "unconfirmed", "absent")


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
    evidence: tuple[Evidence, ...] = ()
    # (profile, cuda, pytorch, xformers, arch) -> the host-scope known issues that stack has on
    # that GPU arch, as (issue id, detail): the rules run once per stack and known arch at load
    host_table: dict[tuple[str, str, str, str, str], tuple[tuple[str, str], ...]] = field(
        default_factory=dict
    )

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

    def arch_supported(self, arch: str, cuda: str, arch_list: str) -> bool:
        """Kernels for GPU ``arch`` in a build made with CUDA ``cuda`` whose arch list is
        ``arch_list``. An arch the table does not know is never supported (old PTX does not
        make it so); nor is one newer than the CUDA that built it (its libraries, cuBLAS and
        cuDNN, have no kernels for it even where PTX could be JIT-compiled)."""
        known = self.gpu_archs.get(arch)
        if known is None or version_key(cuda) < version_key(known.min_cuda):
            return False
        return arch_covered(arch, arch_list)

    def host_issues(
        self, profile: str, cuda: str, pytorch: str, xformers: str, archs: tuple[str, ...]
    ) -> list[tuple[str, str]]:
        """The host-scope known issues (id, detail) of a stack on GPUs ``archs`` (from the
        table computed at load)."""
        out: list[tuple[str, str]] = []
        for arch in archs:
            for hit in self.host_table.get((profile, cuda, pytorch, xformers, arch), ()):
                if hit not in out:
                    out.append(hit)
        return out

    def evidence_for(
        self,
        channel: str,
        name: str,
        version: str,
        cuda: str,
        python: str,
        pytorch: str | None = None,
    ) -> Evidence | None:
        """The best record of a planned build: a confirmed one, else any; None when
        evidence.yaml has none."""
        found = [
            e
            for e in self.evidence
            if e.channel == channel
            and e.name == name
            and e.version == version
            and e.cuda == cuda
            and e.serves(python, pytorch)
        ]
        order = {s: i for i, s in enumerate(EVIDENCE_STATUSES)}
        return min(found, key=lambda e: order.get(e.status, 9)) if found else None

    def nearest_cuda(
        self, profile: str, cuda: str, max_cuda: str | None = None
    ) -> tuple[str, str] | None:
        """(profile, CUDA) closest to ``cuda`` that the driver (``max_cuda``) can run: the same
        profile and CUDA major first, then another profile of that major, then the same
        profile at all; within each, the smallest distance, the older one on a tie."""
        want = version_key(cuda)

        def fits(c: str) -> bool:
            return max_cuda is None or version_key(c) <= version_key(max_cuda)

        def closest(cudas: list[str]) -> str | None:
            ok = [c for c in cudas if fits(c)]
            if not ok:
                return None

            def distance(c: str) -> tuple[int, tuple[int, ...]]:
                k = version_key(c)
                return abs(k[0] * 100 + k[1] - (want[0] * 100 + want[1])), k

            return min(ok, key=distance)

        own = self.profiles.get(profile)
        others = [p for p in self.profiles.values() if p.name != profile]
        tiers: list[tuple[str, list[str]]] = []
        if own is not None:
            tiers.append((own.name, [c for c in own.cudas if version_key(c)[0] == want[0]]))
        tiers += [(p.name, [c for c in p.cudas if version_key(c)[0] == want[0]]) for p in others]
        if own is not None:
            tiers.append((own.name, list(own.cudas)))
        for name, cudas in tiers:
            best = closest(cudas)
            if best is not None:
                return name, best
        return None

    def nearest_cuda_flags(self, profile: str, cuda: str, max_cuda: str | None = None) -> str:
        """:meth:`nearest_cuda` as flags: '--cuda X.Y', with '--profile P' when another
        profile has it (the first CUDA of ``profile`` when none fits the driver)."""
        near = self.nearest_cuda(profile, cuda, max_cuda)
        if near is None:
            return f"--cuda {self.profiles[profile].cudas[0]}"
        name, c = near
        return f"--cuda {c}" if name == profile else f"--profile {name} --cuda {c}"


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

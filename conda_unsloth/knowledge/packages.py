"""Package facts the known-issue rules read: what a package is (name, version, build,
channel, installer), which conda packages provide a Python distribution, and what a build
string says about its CUDA, its pytorch and its provider. Names, versions and build strings
only: nothing is imported or run."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .model import Knowledge, Profile

if TYPE_CHECKING:  # packaging is imported when a question needs it, not by a solve's checks
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

# pip distribution name -> the conda package names that provide it
PROVIDERS: dict[str, tuple[str, ...]] = {
    "torch": ("pytorch", "torch"),
    "triton": ("torchtriton", "triton"),
    "xformers": ("xformers",),
    "bitsandbytes": ("bitsandbytes",),
    "torchvision": ("torchvision",),
    "numpy": ("numpy",),
}

# requirements of unsloth whose absence is a finding even when they are not pip companions
MUST_BE_INSTALLED = frozenset({"torch", "xformers"})

_PYTORCH_CHANNEL_BUILD = re.compile(r"^py([0-9]+\.[0-9]+)_(cuda([0-9]+\.[0-9]+)|cpu)_")
_CONDA_FORGE_BUILD = re.compile(r"^(cuda_?([0-9]+)|cpu)")
XFORMERS_CHANNEL_BUILD = re.compile(
    r"^py([0-9])([0-9]+)_cu([0-9]+\.[0-9]+)(?:\.[0-9]+)?_pyt([0-9]+\.[0-9]+\.[0-9]+)$"
)
_LOCAL_CUDA = re.compile(r"\+cu([0-9]+)$")


@dataclass(frozen=True)
class Package:
    """One installed or planned package. ``installer`` is ``conda`` or ``pip``.

    ``stale``: a conda record whose Python files another installer replaced (pip uninstalled
    its metadata and put its own distribution there): conda still lists it, Python imports the
    other one. ``requires``: what the package itself says it needs (a conda record's
    ``depends``, a distribution's ``Requires-Dist``), when known."""

    name: str
    version: str
    build: str = ""
    channel: str = ""
    installer: str = "conda"
    stale: bool = False
    requires: tuple[str, ...] = field(default=(), compare=False)  # metadata, not identity

    def __str__(self) -> str:
        where = self.channel or self.installer
        build = f" {self.build}" if self.build else ""
        gone = ", replaced" if self.stale else ""
        return f"{self.name} {self.version}{build} ({where}{gone})"


@dataclass(frozen=True)
class HostFacts:
    """What the GPU host offers; every field may be unknown (None / empty)."""

    driver_cuda: str | None = None
    archs: tuple[str, ...] = ()
    glibc: str | None = None


@dataclass
class PackageSet:
    packages: list[Package]
    by_name: dict[str, list[Package]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for p in self.packages:
            self.by_name.setdefault(normalize(p.name), []).append(p)
        for found in self.by_name.values():
            found.sort(key=lambda p: p.stale)  # what Python imports first

    def get(self, name: str) -> Package | None:
        found = self.by_name.get(normalize(name))
        return found[0] if found else None

    def all(self, name: str) -> list[Package]:
        return self.by_name.get(normalize(name), [])

    def live(self, dist: str) -> Package | None:
        """The package that provides Python distribution ``dist`` ("torch", "triton") as
        Python imports it: a conda package whose files are still its own first, else a pip
        distribution, else a conda record whose files pip replaced."""
        found = [p for n in PROVIDERS.get(dist, (dist,)) for p in self.all(n)]
        pip = [p for p in self.all(dist) if p.installer == "pip"]
        conda = [p for p in found if p.installer == "conda"]
        for p in (*[c for c in conda if not c.stale], *pip, *conda):
            return p
        return None

    def torch(self) -> Package | None:
        """The torch Python imports: conda's pytorch, unless pip replaced its files."""
        return self.live("torch")

    def triton(self) -> Package | None:
        return self.live("triton")

    def python(self) -> str | None:
        py = self.get("python")
        return ".".join(py.version.split(".")[:2]) if py else None


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def base_version(v: str) -> str:
    return v.split("+", 1)[0]


def _ver(v: str) -> Version | None:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(base_version(v))
    except InvalidVersion:
        return None


def parse_version(v: object) -> Version | None:
    """``v`` as a Version, None when it is not one (a host value like ``CONDA_OVERRIDE_CUDA=abc``
    or a tampered record is unknown, never an exception)."""
    if not isinstance(v, str):
        return None
    return _ver(v.strip())


_RELEASE = re.compile(r"[0-9]+(?:\.[0-9]+)*", re.ASCII)


def release_key(version: str) -> tuple[int, ...] | None:
    """A version made of release numbers only ('2023.2.0') as PEP 440 orders it (trailing
    zeros do not count: 2024.1 == 2024.1.0), else None."""
    if not _RELEASE.fullmatch(version):
        return None
    parts = [int(p) for p in version.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def at_least(version: str, limit: str) -> bool:
    """``Version(version) >= Version(limit)``; False when ``version`` is no version. Release
    numbers are compared as numbers (as packaging does, without importing it for a solve's
    checks); anything else is asked of packaging."""
    a, b = release_key(version.strip()), release_key(limit)
    if a is not None and b is not None:
        return a >= b
    from packaging.version import Version

    v = parse_version(version)
    return v is not None and v >= Version(limit)


def _cuda_digits(digits: str) -> str | None:
    """'121' -> '12.1'; None for fewer than two digits (no major.minor to read)."""
    return f"{digits[:-1]}.{digits[-1]}" if len(digits) >= 2 else None


def torch_cuda(pkg: Package) -> str | None:
    """The CUDA version a torch build targets ('12.1'), None for CPU or unknown."""
    m = _PYTORCH_CHANNEL_BUILD.match(pkg.build)
    if m:
        return m.group(3)
    m = _CONDA_FORGE_BUILD.match(pkg.build)
    if m and m.group(2):
        return _cuda_digits(m.group(2))
    m = _LOCAL_CUDA.search(pkg.version)
    if m:
        return _cuda_digits(m.group(1))
    return None


def is_cpu_torch(pkg: Package) -> bool:
    build = pkg.build
    if build.startswith("cpu") or re.match(r"^py[0-9]+\.[0-9]+_cpu", build):
        return True
    return pkg.version.endswith("+cpu")


def provider(pkg: Package) -> str | None:
    """'pytorch' (pytorch/xformers channels) or 'conda-forge' for conda builds, else None."""
    if pkg.installer != "conda":
        return None
    if pkg.name == "pytorch":
        if _PYTORCH_CHANNEL_BUILD.match(pkg.build):
            return "pytorch"
        if _CONDA_FORGE_BUILD.match(pkg.build):
            return "conda-forge"
    if pkg.name == "xformers":
        if "_pyt" in pkg.build:
            return "pytorch"
        if _CONDA_FORGE_BUILD.match(pkg.build):
            return "conda-forge"
    if pkg.name in ("pytorch-cuda", "torchtriton", "pytorch-mutex"):
        return "pytorch"
    if pkg.channel.split("/")[0] in ("pytorch", "xformers", "nvidia"):
        return "pytorch"
    return None


def xformers_torch(pkg: Package, kb: Knowledge) -> SpecifierSet | None:
    """The torch versions an xformers build was made for."""
    from packaging.specifiers import SpecifierSet

    text = xformers_torch_spec(pkg, kb)
    return SpecifierSet(text) if text is not None else None


def built_for_this_torch(spec: str, torch_version: str) -> bool:
    """Is ``spec`` (from :func:`xformers_torch_spec`) exactly ``==`` this torch's version
    (its local label aside)? Then the torch is the one the build was made for, and no PEP 440
    question is left to ask: a solve's checks of a planned stack import no packaging."""
    return spec == f"=={base_version(torch_version.strip())}"


def xformers_torch_spec(pkg: Package, kb: Knowledge) -> str | None:
    """The torch versions an xformers build was made for, as a PEP 440 specifier set."""
    m = XFORMERS_CHANNEL_BUILD.match(pkg.build)
    if m:
        return f"=={m.group(4)}"
    if pkg.installer == "pip" or not pkg.build:
        wheel = kb.xformers_wheel(base_version(pkg.version))
        if wheel is not None:
            return wheel.torch
        return None
    if _CONDA_FORGE_BUILD.match(pkg.build) and "conda-forge" in kb.profiles:
        row = next(
            (
                x
                for x in kb.profiles["conda-forge"].xformers
                if x.version == base_version(pkg.version)
            ),
            None,
        )
        if row is not None:
            return f"=={row.pytorch}"
    return None


def xformers_cuda_major(pkg: Package, kb: Knowledge) -> int | None:
    m = XFORMERS_CHANNEL_BUILD.match(pkg.build)
    if m:
        return int(m.group(3).split(".")[0])
    m2 = _CONDA_FORGE_BUILD.match(pkg.build)
    if m2 and len(m2.group(2) or "") >= 2:
        return int(m2.group(2)[:-1])
    local = _LOCAL_CUDA.search(pkg.version)
    if local and len(local.group(1)) >= 2:
        return int(local.group(1)[:-1])
    if pkg.installer == "pip":
        wheel = kb.xformers_wheel(base_version(pkg.version))
        if wheel is not None:
            return wheel.cuda // 100
    return None


# ----------------------------------------------------------------------------- the rules


def torch_triton_pin(torch: Package, ps: PackageSet, kb: Knowledge) -> str | None:
    """The triton version the torch Python imports pins: its own requirement (a conda
    record's ``depends`` on triton/torchtriton, a wheel's ``Requires-Dist: triton==``), else
    the knowledge base's row for that conda build."""
    py = ps.python()
    for req in torch.requires:
        pin = _triton_requirement(req, py)
        if pin is not None:
            return pin
    if torch.installer != "conda":
        return None
    prov = provider(torch)
    profile = kb.profiles.get(prov or "")
    row = profile.pytorch_row(base_version(torch.version)) if profile else None
    if row is None or (profile and not _row_has_cuda(profile, row.cuda, torch)):
        return None
    return row.triton


def xformers_build(pkg: Package, kb: Knowledge) -> tuple[str, str] | None:
    """(CUDA of the build, its arch list) of a conda xformers build the knowledge base lists;
    None for a pip wheel or an unknown build."""
    prov = provider(pkg)
    profile = kb.profiles.get(prov or "")
    row = profile.xformers_row(base_version(pkg.version)) if profile else None
    if row is None:
        return None
    m = XFORMERS_CHANNEL_BUILD.match(pkg.build)
    if m:
        cuda: str | None = m.group(3)
    else:
        m2 = _CONDA_FORGE_BUILD.match(pkg.build)
        cuda = _cuda_digits(m2.group(2)) if m2 and m2.group(2) else None
    if cuda is None:
        return None
    return cuda, row.archs_for(cuda)


def _row_has_cuda(profile: Profile, cudas: tuple[str, ...], torch: Package) -> bool:
    tc = torch_cuda(torch)
    return tc is None or tc in cudas


_CONDA_EXACT = re.compile(r"^(torchtriton|triton)\s+(==)?\s*([0-9][0-9A-Za-z.+]*?)(\.\*)?(\s|$)")


def _triton_requirement(req: str, python: str | None) -> str | None:
    """'3.1.0' from 'torchtriton 3.1.0', 'triton 3.2.0.*', 'triton ==3.4.0' (conda) or
    'triton==3.0.0; platform_system == "Linux" ...' (a wheel, markers evaluated for this
    linux-64 env); None for anything else."""
    m = _CONDA_EXACT.match(req.strip())
    if m:
        return m.group(3)
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        r = Requirement(req)
    except InvalidRequirement:
        return None
    if normalize(r.name) != "triton":
        return None
    if r.marker is not None:
        env = {"platform_system": "Linux", "platform_machine": "x86_64", "sys_platform": "linux"}
        if python:
            env["python_version"] = python
        if not r.marker.evaluate(env):
            return None
    pins = [s.version for s in r.specifier if s.operator in ("==", "===")]
    return pins[0] if pins else None

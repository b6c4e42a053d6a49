"""Known-issue rules evaluated on a set of packages: a plan, a solve, or an installed env.

The rows live in ``knowledge/known_issues.yaml``; each row's ``check.kind`` names one function
here. A rule returns evidence (the packages that triggered it) or nothing. Nothing here imports
or runs the packages: it reads names, versions, build strings and channels only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from .knowledge import Knowledge, KnownIssue

# pip distribution name -> the conda package names that provide it
PROVIDERS: dict[str, tuple[str, ...]] = {
    "torch": ("pytorch", "torch"),
    "triton": ("torchtriton", "triton"),
    "xformers": ("xformers",),
    "bitsandbytes": ("bitsandbytes",),
    "torchvision": ("torchvision",),
    "numpy": ("numpy",),
}

_PYTORCH_CHANNEL_BUILD = re.compile(r"^py(\d+\.\d+)_(cuda(\d+\.\d+)|cpu)_")
_CONDA_FORGE_BUILD = re.compile(r"^(cuda_?(\d+)|cpu)")
_XFORMERS_CHANNEL_BUILD = re.compile(r"^py(\d)(\d+)_cu(\d+\.\d+)(?:\.\d+)?_pyt(\d+\.\d+\.\d+)$")
_LOCAL_CUDA = re.compile(r"\+cu(\d+)$")


@dataclass(frozen=True)
class Package:
    """One installed or planned package. ``installer`` is ``conda`` or ``pip``."""

    name: str
    version: str
    build: str = ""
    channel: str = ""
    installer: str = "conda"

    def __str__(self) -> str:
        where = self.channel or self.installer
        build = f" {self.build}" if self.build else ""
        return f"{self.name} {self.version}{build} ({where})"


@dataclass(frozen=True)
class HostFacts:
    """What the GPU host offers; every field may be unknown (None / empty)."""

    driver_cuda: str | None = None
    archs: tuple[str, ...] = ()
    glibc: str | None = None


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


@dataclass
class PackageSet:
    packages: list[Package]
    by_name: dict[str, list[Package]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for p in self.packages:
            self.by_name.setdefault(normalize(p.name), []).append(p)

    def get(self, name: str) -> Package | None:
        found = self.by_name.get(normalize(name))
        return found[0] if found else None

    def all(self, name: str) -> list[Package]:
        return self.by_name.get(normalize(name), [])

    def torch(self) -> Package | None:
        """The torch provider: conda's pytorch first, else a pip torch."""
        return self.get("pytorch") or self.get("torch")

    def python(self) -> Hit | None:
        py = self.get("python")
        return ".".join(py.version.split(".")[:2]) if py else None


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def base_version(v: str) -> str:
    return v.split("+", 1)[0]


def _ver(v: str) -> Version | None:
    try:
        return Version(base_version(v))
    except InvalidVersion:
        return None


def torch_cuda(pkg: Package) -> Hit | None:
    """The CUDA version a torch build targets ('12.1'), None for CPU or unknown."""
    m = _PYTORCH_CHANNEL_BUILD.match(pkg.build)
    if m:
        return m.group(3)
    m = _CONDA_FORGE_BUILD.match(pkg.build)
    if m and m.group(2):
        digits = m.group(2)
        return f"{digits[:-1]}.{digits[-1]}"
    m = _LOCAL_CUDA.search(pkg.version)
    if m:
        digits = m.group(1)
        return f"{digits[:-1]}.{digits[-1]}"
    return None


def is_cpu_torch(pkg: Package) -> bool:
    build = pkg.build
    if build.startswith("cpu") or re.match(r"^py\d+\.\d+_cpu", build):
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
    m = _XFORMERS_CHANNEL_BUILD.match(pkg.build)
    if m:
        return SpecifierSet(f"=={m.group(4)}")
    if pkg.installer == "pip" or not pkg.build:
        wheel = kb.xformers_wheel(base_version(pkg.version))
        if wheel is not None:
            return SpecifierSet(wheel.torch)
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
            return SpecifierSet(f"=={row.pytorch}")
    return None


def xformers_cuda_major(pkg: Package, kb: Knowledge) -> int | None:
    m = _XFORMERS_CHANNEL_BUILD.match(pkg.build)
    if m:
        return int(m.group(3).split(".")[0])
    m2 = _CONDA_FORGE_BUILD.match(pkg.build)
    if m2 and m2.group(2):
        return int(m2.group(2)[:-1])
    local = _LOCAL_CUDA.search(pkg.version)
    if local:
        return int(local.group(1)[:-1])
    if pkg.installer == "pip":
        wheel = kb.xformers_wheel(base_version(pkg.version))
        if wheel is not None:
            return wheel.cuda // 100
    return None



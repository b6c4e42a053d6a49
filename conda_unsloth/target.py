"""The target: what an environment is built for (platform, CUDA, GPU archs, the virtual
packages a solver sees), decided in one place.

A target comes from the command line and the host (:func:`resolve_target`), or from an
environment file's own pins plus the command line (:func:`target_from_spec`, which reads the
file's pins once). Both solver backends take the :class:`Target` as it is: its
:meth:`Target.virtual_packages` are structured, never a string to parse back.

Every CUDA version we are given (``--cuda``, ``CONDA_OVERRIDE_CUDA``, ``nvidia-smi``, a file's
pin, a marker) goes through :func:`parse_cuda`: ASCII digits ``MAJOR.MINOR``, and an error that
names where the value came from.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .errors import HostError, SelectionError, SpecError, UsageError

if TYPE_CHECKING:
    from .host import Host
    from .knowledge import Knowledge, Profile
    from .spec import EnvSpec

DEFAULT_PLATFORM = "linux-64"
DEFAULT_PROFILE = "pytorch"
PLATFORMS = ("linux-64",)
# ASCII digits only: `\d` also matches "１２" (full-width) and other scripts' digits
_CUDA = re.compile(r"([0-9]{1,2})\.([0-9]{1,2})")
_ARCH = re.compile(r"(?:sm_?)?([0-9]{1,2})\.?([0-9])", re.IGNORECASE)
BASELINE_GLIBC = "2.28"
BASELINE_LINUX = "5.15"


def shown(value: str) -> str:
    """A user value quoted for a one-line message (control characters escaped)."""
    return f"'{value}'" if value.isprintable() else repr(value)


def is_cuda(value: object) -> bool:
    return isinstance(value, str) and _CUDA.fullmatch(value) is not None


def parse_cuda(
    value: str, where: str, hints: tuple[str, ...] = (), *, what: str = "a CUDA version like 12.1"
) -> str:
    """``value`` as a CUDA version ``MAJOR.MINOR`` (surrounding blanks dropped, ``12.01`` ->
    ``12.1``); a UsageError naming ``where`` otherwise: a flag ("--cuda '12'") or an
    environment variable ("CONDA_OVERRIDE_CUDA='12'")."""
    m = _CUDA.fullmatch(value.strip()) if isinstance(value, str) else None
    if m is None:
        sep = "=" if where.isupper() else " "
        raise UsageError(f"{where}{sep}{shown(str(value))} is not {what}", hints=hints)
    return f"{int(m.group(1))}.{int(m.group(2))}"


def cuda_key(cuda: str) -> tuple[int, int]:
    major, minor = cuda.split(".")
    return int(major), int(minor)


def normalize_arch(value: str) -> str:
    """A compute capability in any usual spelling (``8.0``, ``80``, ``sm_80``, ``sm80``) as
    ``8.0``; UsageError otherwise."""
    m = _ARCH.fullmatch(value.strip()) if value.isprintable() else None
    if not m:
        raise UsageError(
            f"--gpu-arch {shown(value)} is not a compute capability like 8.0, 9.0 or sm_90",
            hints=["nvidia-smi --query-gpu=compute_cap --format=csv shows yours"],
        )
    return f"{int(m.group(1))}.{m.group(2)}"


def split_archs(values: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``--gpu-arch`` values (repeatable, each may be a comma-separated list), normalized and
    de-duplicated in order."""
    out: dict[str, None] = {}
    for value in values:
        for item in value.split(","):
            if not item.strip():  # `--gpu-arch ,` or `8.0,,9.0`: a list with a hole in it
                raise UsageError(
                    f"--gpu-arch {value!r} has an empty item: give compute capabilities like "
                    "8.0 or 8.0,9.0",
                    hints=["nvidia-smi --query-gpu=compute_cap --format=csv shows yours"],
                )
            out[normalize_arch(item)] = None
    return tuple(out)


class CudaFrom(enum.Enum):
    """Where the target CUDA came from."""

    FLAG = "--cuda"
    FILE = "a pin in the file"
    DRIVER = "the driver"
    DEFAULT = "the profile default"
    SOLVE = "the solved pytorch"


@dataclass(frozen=True)
class VirtualPackage:
    """A virtual package as a solver sees it (``__cuda=12.1=0``)."""

    name: str
    version: str
    build: str = "0"

    def __str__(self) -> str:
        return f"{self.name}={self.version}={self.build}"


@dataclass(frozen=True)
class Target:
    platform: str
    cuda: str
    archs: tuple[str, ...] = ()
    driver_cuda: str | None = None  # the driver's maximum CUDA (None: no driver known)
    glibc: str | None = None
    cuda_from: CudaFrom = CudaFrom.FLAG
    why: str = ""  # how the CUDA was chosen, for people ("driver supports CUDA 12.4")
    # CUDA versions the solved pytorch may have when ``cuda_from`` is SOLVE (the file pins a
    # range, or nothing): the profile's, up to the driver's (or the assumed) CUDA
    cuda_allowed: tuple[str, ...] = ()

    @property
    def cuda_source(self) -> str:
        return self.why or self.cuda_from.value

    @property
    def solver_cuda(self) -> str:
        """The ``__cuda`` version the solver sees: the driver's, else the target's."""
        return self.driver_cuda or self.cuda

    def virtual_packages(self) -> tuple[VirtualPackage, ...]:
        out = [VirtualPackage("__cuda", self.solver_cuda)]
        if self.platform.startswith("linux"):
            out += [
                VirtualPackage("__linux", BASELINE_LINUX),
                VirtualPackage("__glibc", self.glibc or BASELINE_GLIBC),
                VirtualPackage("__unix", "0"),
            ]
        return tuple(out)

    def with_solved_cuda(self, cuda: str) -> Target:
        """The target once the solve decided the CUDA (``cuda_from`` SOLVE)."""
        return replace(self, cuda=cuda, why=f"{self.why or 'no pin'}; solved: CUDA {cuda}")

    def to_json(self) -> dict[str, Any]:
        return {
            "platform": self.platform,
            "cuda": self.cuda,
            "gpu_archs": list(self.archs),
            "driver_cuda": self.driver_cuda,
            "glibc": self.glibc,
            "cuda_source": self.cuda_source,
            "virtual_packages": [str(vp) for vp in self.virtual_packages()],
        }


def check_profile(name: str, kb: Knowledge) -> str:
    if name not in kb.profiles:
        raise UsageError(
            f"--profile {shown(name)} is not a profile; choose one of {', '.join(kb.profiles)}"
        )
    return name


def check_platform(platform: str | None) -> str:
    if platform is None:
        return DEFAULT_PLATFORM
    if platform not in PLATFORMS:
        raise SelectionError(
            f"--platform {shown(platform)}: Unsloth GPU environments are built for linux-64 only",
            hints=["use --platform linux-64"],
        )
    return platform


def resolve_target(
    profile: Profile,
    host: Host,
    kb: Knowledge,
    *,
    cuda: str | None = None,
    archs: tuple[str, ...] = (),
    platform: str | None = None,
    cuda_from: CudaFrom = CudaFrom.FLAG,
    why: str = "",
) -> tuple[Target, list[str]]:
    """The target for ``profile`` on ``host``: ``cuda`` when given (from ``cuda_from``), else
    what the driver can run, else the profile default. Refused: a CUDA the profile does not
    build, or one newer than the driver supports."""
    notices = list(host.notes)
    driver_cuda = host.driver_cuda
    if driver_cuda is not None and not is_cuda(driver_cuda):
        raise UsageError(
            f"the driver's CUDA version {shown(driver_cuda)} (from {host.source}) is not a CUDA "
            "version like 12.4"
        )
    if cuda is not None:
        cuda = parse_cuda(cuda, "--cuda")
    elif driver_cuda is not None:
        fitting = [c for c in profile.cudas if cuda_key(c) <= cuda_key(driver_cuda)]
        if profile.default_cuda in fitting:
            cuda = profile.default_cuda
        elif fitting:
            cuda = fitting[-1]
        else:
            cuda = profile.default_cuda  # refused below with the driver's numbers
        cuda_from, why = CudaFrom.DRIVER, f"driver supports CUDA {driver_cuda}"
    else:
        cuda, cuda_from = profile.default_cuda, CudaFrom.DEFAULT
        notices.append(
            f"no NVIDIA driver found: targeting CUDA {cuda}, the {profile.name} profile's "
            "default (use --cuda X.Y or CONDA_OVERRIDE_CUDA to choose)"
        )
    if cuda not in profile.cudas:
        other = [p.name for p in kb.profiles.values() if cuda in p.cudas]
        alt = (
            f"--profile {other[0]} --cuda {cuda}"
            if other
            else kb.nearest_cuda_flags(profile.name, cuda, driver_cuda)
        )
        raise SelectionError(
            f"CUDA {cuda} is not offered by profile {profile.name} "
            f"(it has {', '.join(profile.cudas)}); nearest valid: {alt}",
            hints=[f"conda unsloth env {alt}"],
        )
    if driver_cuda is not None and cuda_key(cuda) > cuda_key(driver_cuda):
        fitting = [c for c in profile.cudas if cuda_key(c) <= cuda_key(driver_cuda)]
        driver = f"driver {host.driver_version}" if host.driver_version else "the driver"
        alt = f"--cuda {fitting[-1]}" if fitting else "a newer NVIDIA driver"
        need = kb.driver(cuda)
        raise HostError(
            f"CUDA {cuda} is newer than {driver} supports (CUDA {driver_cuda} at most; "
            f"CUDA {cuda} needs driver >= {need.min_driver if need else '?'}); "
            f"nearest valid: {alt}",
            hints=[f"conda unsloth env {alt}" if fitting else "update the NVIDIA driver"],
        )
    archs = archs or host.archs
    if not archs:
        notices.append("no GPU architecture known: kernels not checked (use --gpu-arch 8.0)")
    target = Target(
        platform=check_platform(platform),
        cuda=cuda,
        archs=archs,
        driver_cuda=driver_cuda,
        glibc=host.glibc,
        cuda_from=cuda_from,
        why=why,
    )
    return target, notices


# ----------------------------------------------------------------------------- a file's pins


@dataclass(frozen=True)
class MatchSpec:
    """The parts of a conda match spec that decide a target: ``[channel[/subdir]::]name``,
    then a version and a build, written ``name=1.2=b``, ``name==1.2``, ``name 1.2 b``,
    ``name>=1.2,<2`` or ``name[version='>=1.2']``."""

    name: str
    version: str = ""
    build: str = ""
    channel: str = ""
    subdir: str = ""


_SPEC = re.compile(
    r"(?:(?P<chan>[^\s:]+?)(?:/(?P<sub>[a-z0-9]+-[a-z0-9_]+|noarch))?::)?"
    r"(?P<name>[A-Za-z0-9_][A-Za-z0-9_.-]*)"
    r"(?:\[(?P<brackets>[^\]]*)\])?"
    r"\s*(?P<rest>.*)"
)
_BRACKET = re.compile(r"(\w+)\s*=\s*['\"]?([^'\",]*)['\"]?")


def parse_spec(spec: str) -> MatchSpec | None:
    """The :class:`MatchSpec` of ``spec``, or None when it is not one we can read."""
    m = _SPEC.fullmatch(spec.strip())
    if m is None:
        return None
    version, build = "", ""
    rest = m.group("rest").strip()
    if rest.startswith("==") or (rest and rest[0] in "<>!~"):
        version, _, build = rest.partition(" ")  # name==1.2 / name>=1.2,<2 [build]
        version = version.removeprefix("==")
    elif rest.startswith("="):
        version, _, build = rest[1:].partition("=")  # name=1.2 / name=1.2=build
    elif rest:
        version, _, build = rest.partition(" ")  # name 1.2 [build]
    version, build = version.strip(), build.strip()
    for key, value in _BRACKET.findall(m.group("brackets") or ""):
        if key == "version":
            version = value
        elif key == "build":
            build = value
    return MatchSpec(m.group("name"), version, build, m.group("chan") or "", m.group("sub") or "")


def exact_version(version: str) -> str | None:
    """``12.1`` for ``12.1``, ``==12.1``, ``12.1.*``, ``12.1.0``; None for a range."""
    v = version.removeprefix("==").removesuffix(".*")
    m = re.fullmatch(r"([0-9]+\.[0-9]+)(?:\.0)?", v)
    return m.group(1) if m else None


CUDA_PACKAGES = {"pytorch-cuda": "pytorch", "cuda-version": "conda-forge"}


@dataclass(frozen=True)
class FilePins:
    """What an environment file itself says about its target."""

    profile: str | None  # from its CUDA package (pytorch-cuda -> pytorch, cuda-version -> cf)
    cuda: str | None  # an exact CUDA pin
    cuda_spec: str  # the pin as written ("cuda-version>=12.6,<13"), "" when none
    python: str | None  # an exact python minor version


def file_pins(spec: EnvSpec, path: str, platform: str) -> FilePins:
    """Read the pins of ``spec`` (from file ``path``) once. A spec qualified for another
    platform (``conda-forge/osx-arm64::x``) is a SpecError."""
    profile = cuda = python = None
    cuda_spec = ""
    for text in spec.conda_specs():
        ms = parse_spec(text)
        if ms is None:
            continue
        if ms.subdir and ms.subdir not in (platform, "noarch"):
            raise SpecError(
                f"environment file {path}: '{text}' is for platform {ms.subdir}, the target is "
                f"{platform}",
                hints=["Unsloth GPU environments are built for linux-64 only"],
            )
        if ms.name in CUDA_PACKAGES and profile is None:
            profile, cuda_spec = CUDA_PACKAGES[ms.name], text
            exact = exact_version(ms.version)
            cuda = parse_cuda(exact, f"environment file {path}: '{text}' pins") if exact else None
        elif ms.name == "python" and python is None:
            m = re.fullmatch(r"(?:==?)?(3\.[0-9]{1,2})(?:\.\*|\.[0-9]+)?", ms.version)
            python = m.group(1) if m else None
    return FilePins(profile, cuda, cuda_spec, python)


def target_from_spec(
    spec: EnvSpec,
    path: str,
    host: Host,
    kb: Knowledge,
    *,
    profile: str | None = None,
    cuda: str | None = None,
    archs: tuple[str, ...] = (),
    platform: str | None = None,
) -> tuple[Target, str, FilePins, list[str]]:
    """The target of an environment file: ``cuda`` (--cuda) when given, else the file's exact
    CUDA pin, else the solve decides (within the profile's CUDAs the driver can run). Returns
    (target, profile name, the file's pins, notices)."""
    plat = check_platform(platform)
    pins = file_pins(spec, path, plat)
    chosen = profile or pins.profile or _profile_of_channels(spec) or DEFAULT_PROFILE
    prof = kb.profiles[check_profile(chosen, kb)]
    if cuda is not None or pins.cuda is not None:
        from_flag = cuda is not None
        target, notices = resolve_target(
            prof,
            host,
            kb,
            cuda=cuda if from_flag else pins.cuda,
            archs=archs,
            platform=plat,
            cuda_from=CudaFrom.FLAG if from_flag else CudaFrom.FILE,
            why="" if from_flag else f"'{pins.cuda_spec}' in {path}",
        )
        return target, prof.name, pins, notices
    target, notices = resolve_target(prof, host, kb, archs=archs, platform=plat)
    allowed = tuple(c for c in prof.cudas if cuda_key(c) <= cuda_key(target.solver_cuda))
    why = f"'{pins.cuda_spec}' in {path}" if pins.cuda_spec else f"no CUDA pin in {path}"
    target = replace(target, cuda_from=CudaFrom.SOLVE, why=why, cuda_allowed=allowed)
    return target, prof.name, pins, notices


def _profile_of_channels(spec: EnvSpec) -> str | None:
    return "conda-forge" if spec.channels[:1] == ["conda-forge"] else None

"""What GPU host we are on: NVIDIA driver, the highest CUDA it supports, GPUs and their compute
capability, glibc, platform.

Sources, in order: NVML through the driver's own ``libnvidia-ml.so.1`` (ctypes; no binding
package needed), then ``nvidia-smi``. ``CONDA_OVERRIDE_CUDA`` overrides the driver's CUDA the way
it overrides conda's ``__cuda`` virtual package (an empty value means "no CUDA driver"), and
``CONDA_OVERRIDE_GLIBC`` the glibc version the same way (empty: unknown); a malformed value of
either is a one-line ``UsageError`` (exit 2) when the host is detected.
``CONDA_UNSLOTH_NVML=0`` skips NVML and ``CONDA_UNSLOTH_NVIDIA_SMI`` names the ``nvidia-smi`` to
run (empty: none) — for hosts where it is not on PATH, and for tests that stand in for a GPU.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import UsageError

if TYPE_CHECKING:
    from typing import Any

NVIDIA_SMI_TIMEOUT_S = 15
# versions we can compare: CUDA 12.4 (as select.resolve_target needs), glibc 2.17 / 2.28.1
_GLIBC_OVERRIDE = r"[0-9]+\.[0-9]+(\.[0-9]+)?"


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    arch: str  # compute capability, "9.0"

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "compute_capability": self.arch}


@dataclass(frozen=True)
class Host:
    platform: str
    driver_version: str | None = None
    driver_cuda: str | None = None  # the driver's maximum CUDA ("12.4")
    gpus: tuple[Gpu, ...] = ()
    glibc: str | None = None
    source: str = "none"  # nvml | nvidia-smi | CONDA_OVERRIDE_CUDA | none
    notes: tuple[str, ...] = field(default=())

    @property
    def archs(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(g.arch for g in self.gpus))

    def to_json(self) -> dict[str, Any]:
        return {
            "platform": self.platform,
            "driver_version": self.driver_version,
            "driver_cuda": self.driver_cuda,
            "gpus": [g.to_json() for g in self.gpus],
            "glibc": self.glibc,
            "source": self.source,
            "notes": list(self.notes),
        }


def conda_platform() -> str:
    if hasattr(os, "uname"):  # what platform.system()/machine() read, without importing it
        uname = os.uname()
        system, machine = uname.sysname, uname.machine.lower()
    else:
        import platform

        system, machine = platform.system(), platform.machine().lower()
    arch = {"x86_64": "64", "amd64": "64", "aarch64": "aarch64", "arm64": "arm64"}.get(
        machine, machine
    )
    if system == "Linux":
        return f"linux-{arch}"
    if system == "Darwin":
        return f"osx-{arch}"
    if system == "Windows":
        return "win-64"
    return f"{system.lower()}-{arch}"


def glibc_version() -> str | None:
    try:
        value = os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):
        return None
    if value and value.startswith("glibc "):
        return value.split()[1]
    return None


def _cuda_from_int(v: int) -> str:
    return f"{v // 1000}.{(v % 1000) // 10}"


# NVML reaches the kernel driver through one of these device nodes (/dev/dxg on WSL2): without
# them it cannot initialise, and a host without a driver need not load ctypes (2 ms) to learn it
DRIVER_NODES = ("/dev/nvidiactl", "/dev/dxg")


def _nvml() -> tuple[str, str, tuple[Gpu, ...]] | None:
    """Driver version, driver CUDA and GPUs from NVML, or None when NVML is not there."""
    if not any(os.path.exists(node) for node in DRIVER_NODES):
        return None
    import ctypes

    try:
        lib = ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return None
    try:
        if lib.nvmlInit_v2() != 0:
            return None
        try:
            buf = ctypes.create_string_buffer(96)
            if lib.nvmlSystemGetDriverVersion(buf, 96) != 0:
                return None
            driver = buf.value.decode()
            cuda = ctypes.c_int()
            if lib.nvmlSystemGetCudaDriverVersion_v2(ctypes.byref(cuda)) != 0:
                return None
            count = ctypes.c_uint()
            if lib.nvmlDeviceGetCount_v2(ctypes.byref(count)) != 0:
                return None
            gpus = []
            for i in range(count.value):
                handle = ctypes.c_void_p()
                if lib.nvmlDeviceGetHandleByIndex_v2(i, ctypes.byref(handle)) != 0:
                    continue
                name = ctypes.create_string_buffer(96)
                lib.nvmlDeviceGetName(handle, name, 96)
                major, minor = ctypes.c_int(), ctypes.c_int()
                lib.nvmlDeviceGetCudaComputeCapability(
                    handle, ctypes.byref(major), ctypes.byref(minor)
                )
                gpus.append(Gpu(i, name.value.decode(), f"{major.value}.{minor.value}"))
            return driver, _cuda_from_int(cuda.value), tuple(gpus)
        finally:
            lib.nvmlShutdown()
    except AttributeError:  # a driver library without these symbols
        return None


def _nvidia_smi() -> tuple[str, str | None, tuple[Gpu, ...]] | None:
    exe = os.environ.get("CONDA_UNSLOTH_NVIDIA_SMI")
    if exe is None:
        import shutil

        exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    import subprocess

    try:
        query = subprocess.run(
            [exe, "--query-gpu=index,name,driver_version,compute_cap", "--format=csv,noheader"],
            capture_output=True,
            encoding="utf-8",
            errors="replace",  # a driver's bytes that are not UTF-8 are not our crash
            timeout=NVIDIA_SMI_TIMEOUT_S,
            check=False,
        )
        banner = subprocess.run(
            [exe],
            capture_output=True,
            encoding="utf-8",
            errors="replace",
            timeout=NVIDIA_SMI_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if query.returncode != 0:
        return None
    gpus = []
    driver = None
    for line in query.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 4 or not re.fullmatch(r"[0-9]+\.[0-9]+", parts[3]):
            continue
        gpus.append(Gpu(int(parts[0]), parts[1], parts[3]))
        driver = parts[2]
    if driver is None:
        return None
    m = re.search(r"CUDA Version:\s*([0-9]+\.[0-9]+)", banner.stdout)
    return driver, (m.group(1) if m else None), tuple(gpus)


def override(name: str, pattern: str, what: str, example: str) -> str | None:
    """The value of the ``CONDA_OVERRIDE_*`` variable ``name`` (stripped; ``""`` when set but
    empty, None when unset). A value that is not a version raises :class:`UsageError`."""
    raw = os.environ.get(name)
    if raw is None:
        return None
    value = raw.strip()
    if value and not re.fullmatch(pattern, value):
        raise UsageError(
            f"{name}='{raw}' is not a {what} version like {example}",
            hints=[f"export {name}={example}, or unset {name}"],
        )
    return value


def cuda_override() -> str | None:
    """``CONDA_OVERRIDE_CUDA``: None when unset, "" when set but empty (no CUDA driver), else
    the version (target.parse_cuda: ASCII MAJOR.MINOR)."""
    from .target import parse_cuda

    raw = os.environ.get("CONDA_OVERRIDE_CUDA")
    if raw is None or not raw.strip():
        return None if raw is None else ""
    try:
        return parse_cuda(raw, "CONDA_OVERRIDE_CUDA", what="a CUDA version like 12.4")
    except UsageError as exc:
        raise UsageError(
            exc.message, hints=["export CONDA_OVERRIDE_CUDA=12.4, or unset CONDA_OVERRIDE_CUDA"]
        ) from None


def glibc_override() -> str | None:
    return override("CONDA_OVERRIDE_GLIBC", _GLIBC_OVERRIDE, "glibc", "2.28")


def detect() -> Host:
    """Detect the host. Unknown facts stay None; raises only :class:`UsageError` for a
    malformed ``CONDA_OVERRIDE_CUDA`` / ``CONDA_OVERRIDE_GLIBC``."""
    cuda_env, glibc_env = cuda_override(), glibc_override()
    plat = conda_platform()
    notes: list[str] = []
    glibc = glibc_version() if plat.startswith("linux") else None
    if glibc_env is not None:
        glibc = glibc_env or None
        notes.append(
            f"CONDA_OVERRIDE_GLIBC={glibc_env} overrides this host's glibc"
            if glibc_env
            else "CONDA_OVERRIDE_GLIBC is empty: this host's glibc is not used"
        )
    found: tuple[str, str | None, tuple[Gpu, ...]] | None = None
    source = "none"
    if os.environ.get("CONDA_UNSLOTH_NVML", "1") != "0":
        found = _nvml()
        source = "nvml" if found else source
    if found is None:
        found = _nvidia_smi()
        source = "nvidia-smi" if found else source
    driver, cuda, gpus = found if found else (None, None, ())
    if cuda_env is not None:
        if cuda_env == "":
            cuda = None
            notes.append(
                "CONDA_OVERRIDE_CUDA is empty: treating the host as having no CUDA driver"
            )
        else:
            cuda = cuda_env
            notes.append(f"CONDA_OVERRIDE_CUDA={cuda} overrides the driver's CUDA version")
        source = "CONDA_OVERRIDE_CUDA"
    return Host(
        platform=plat,
        driver_version=driver,
        driver_cuda=cuda,
        gpus=gpus,
        glibc=glibc,
        source=source,
        notes=tuple(notes),
    )

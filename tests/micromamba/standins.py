"""An offline mirror of the channels every ``envs/*.yml`` names (``pytorch``, ``nvidia``,
``xformers``, ``conda-forge``), made of small stand-in packages with the real names, versions,
build strings and the depends that decide which builds go together, for every (profile, CUDA)
the knowledge base supports; a wheelhouse per Unsloth release; and a ``trap`` channel that no
file lists.

Each stand-in stack is installable and runs its pip stage: python is this machine's CPython
(``tests.envbuild``). The conda-forge profile pins python 3.12, which this machine does not
have: its ``python 3.12.0`` stand-in is the same 3.11 interpreter with the same
``lib/python3.11`` layout (the stand-ins of that profile put their dist-info there too), so
every tool sees python 3.12 in the solve and a working python at the pip stage.

Traps, so that a tool reading a file differently picks something else:
- ``pytorch 2.5.1.1`` / ``2.10.0.1`` with the very build strings of the pinned ones: admitted by
  micromamba's reading of ``pytorch=2.5.1=BUILD`` (``2.5.1.*``), not by ``pytorch 2.5.1 BUILD``;
- CPU builds of pytorch and torchvision with higher build numbers (the build pins exclude them);
- ``mkl 2024.1.0`` (excluded by ``mkl<2024.1``);
- channel ``trap``: ``mkl 2023.9.0`` and ``torchvision 9.9.9``, higher than the listed
  channels' and admitted by the files' specs: only a tool that reads a channel the file does
  not list (a ``.condarc`` channel), without strict priority, can pick them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from conda_unsloth import knowledge
from conda_unsloth.host import Host
from conda_unsloth.select import Request, Selection, select
from tests import envbuild
from tests.channels import Pkg, write_channel, zstd_available

CHANNELS = ("pytorch", "nvidia", "xformers", "conda-forge")
TRAP = "trap"
PY = envbuild.PY  # this machine's python (3.11)
PY_STANDIN = "3.12"  # the conda-forge profile's


@dataclass(frozen=True)
class Mirror:
    root: Path  # root/<channel>: a file:// channel_alias makes the names resolve here
    wheels: dict[str, Path]  # unsloth release -> wheelhouse

    @property
    def alias(self) -> str:
        return self.root.as_uri()

    def url(self, channel: str) -> str:
        return (self.root / channel).as_uri()

    def channel_args(self, channels: list[str]) -> list[str]:
        """``-c URL`` for each named channel (``conda-unsloth create`` replaces the file's)."""
        out = []
        for c in channels:
            if c != "nodefaults":
                out += ["-c", self.url(c)]
        return out


def pairs() -> list[tuple[str, str]]:
    kb = knowledge.load()
    return [(p.name, c) for p in kb.profiles.values() for c in p.cudas]


def selection(profile: str, cuda: str) -> Selection:
    return select(Request(profile=profile, cuda=cuda), Host(platform="linux-64"), knowledge.load())


def _dist(name: str, version: str) -> dict[str, bytes]:
    return envbuild._dist(name, version, {f"{name}/__init__.py": f"__version__ = '{version}'\n"})


def _concrete(pattern: str, tail: str) -> str:
    """A build string matching the glob ``pattern`` (``cuda129*`` -> ``cuda129_<tail>``)."""
    return pattern.replace("_*", f"_{tail}").replace("*", f"_{tail}")


def _pytorch_profile(cudas: list[str]) -> dict[str, list[Pkg]]:
    out: dict[str, list[Pkg]] = {c: [] for c in CHANNELS}
    where = {
        "pytorch": "pytorch",
        "pytorch-mutex": "pytorch",
        "torchtriton": "pytorch",
        "pytorch-cuda": "pytorch",
        "cuda-cudart": "nvidia",
        "xformers": "xformers",
        "mkl": "conda-forge",
    }
    for cuda in cudas:
        sel = selection("pytorch", cuda)
        torch, triton = sel.pytorch.version, sel.pytorch.triton
        stack = envbuild.gpu_stack(torch, cuda, triton, sel.xformers.version)
        # xformers: the build the file pins (12.4 uses the cu12.1.0 build, which requires
        # pytorch-cuda >=12.0,<13.0; the cu11.8.0 build requires 11.8)
        xf_cuda = sel.xformers_build.split("_cu", 1)[1].split("_", 1)[0].removesuffix(".0")
        xf_dep = (
            "pytorch-cuda >=12.0,<13.0"
            if xf_cuda.startswith("12.")
            else f"pytorch-cuda >={xf_cuda},<{xf_cuda}.999"
        )
        stack = [
            replace(p, build=sel.xformers_build, depends=(*p.depends[:2], xf_dep))
            if p.name == "xformers"
            else p
            for p in stack
        ]
        real = next(p for p in stack if p.name == "pytorch" and "cuda" in p.build)
        stack.append(replace(real, version=f"{torch}.1"))  # trap: `=2.5.1=BUILD` in micromamba
        for p in stack:
            out[where[p.name]].append(p)
    out["conda-forge"].append(Pkg("mkl", "2024.1.0", "h_standin_0"))  # trap: mkl<2024.1
    return out


def _conda_forge_profile(cudas: list[str]) -> list[Pkg]:
    nodot = PY_STANDIN.replace(".", "")
    pyd = f"python >={PY_STANDIN},<{PY_STANDIN}.999"
    out: list[Pkg] = []
    seen_triton: set[str] = set()
    for cuda in cudas:
        sel = selection("conda-forge", cuda)
        torch, triton, xf = sel.pytorch.version, sel.pytorch.triton, sel.xformers.version
        major = cuda.split(".")[0]
        cudep = f"cuda-version >={cuda},<{int(major) + 1}"
        build = _concrete(sel.pytorch_build, f"mkl_py{nodot}_hstandin_300")
        pt = Pkg(
            "pytorch",
            torch,
            build,
            build_number=300,
            depends=(pyd, cudep, f"triton {triton}.*", f"__cuda >={major}"),
            files=_dist("torch", torch),
        )
        out += [pt, replace(pt, version=f"{torch}.1")]  # trap: `=VER=BUILD` in micromamba
        out.append(
            Pkg(
                "pytorch",
                torch,
                f"cpu_mkl_py{nodot}_hstandin_301",
                build_number=301,
                depends=(pyd,),
                files=_dist("torch", torch),
            )
        )
        out.append(
            Pkg(
                "xformers",
                xf,
                _concrete(sel.xformers_build, f"py{nodot}_hstandin_0"),
                depends=(pyd, f"pytorch {torch}.* cuda*", cudep),
                files=_dist("xformers", xf),
            )
        )
        if triton not in seen_triton:
            seen_triton.add(triton)
            out.append(
                Pkg(
                    "triton",
                    triton,
                    f"py{nodot}_hstandin_0",
                    depends=(pyd,),
                    files=_dist("triton", triton),
                )
            )
        out.append(
            Pkg(
                "cuda-version",
                cuda,
                "h_standin_0",
                subdir="noarch",
                noarch="generic",
                constrains=(f"__cuda >={major}",),
            )
        )
    out.append(
        Pkg(
            "torchvision", "0.25.0", f"cuda_py{nodot}_hstandin_0", depends=(pyd, "pytorch * cuda*")
        )
    )
    out.append(
        Pkg(
            "torchvision",
            "0.25.0",
            f"cpu_py{nodot}_hstandin_1",
            build_number=1,
            depends=(pyd, "pytorch * cpu*"),
        )
    )
    return out


def _pythons() -> list[Pkg]:
    fmt = "conda" if zstd_available() else "tar.bz2"
    python = replace(envbuild.python_package(), fmt=fmt)
    pip = envbuild.pip_package()
    standin = replace(python, version=f"{PY_STANDIN}.0", build="h_standin_0_cpython")
    pip_standin = replace(
        pip, build="py_standin_0", depends=(f"python >={PY_STANDIN},<{PY_STANDIN}.999",)
    )
    return [python, pip, standin, pip_standin]


def build(root: Path) -> Mirror:
    """``root/<channel>`` for every channel the envs/ files name, ``root/trap``, and
    ``root/wheels-<release>``."""
    by_profile: dict[str, list[str]] = {}
    for profile, cuda in pairs():
        by_profile.setdefault(profile, []).append(cuda)
    chans = _pytorch_profile(by_profile.get("pytorch", []))
    chans["conda-forge"] += _pythons() + _conda_forge_profile(by_profile.get("conda-forge", []))
    for name, pkgs in chans.items():
        unique = {(p.subdir, p.fn): p for p in pkgs}
        write_channel(root / name, unique.values())
    write_channel(
        root / TRAP,
        [
            Pkg("mkl", "2023.9.0", "h_trap_0"),
            Pkg("torchvision", "9.9.9", "cuda_trap_0", subdir="noarch", noarch="generic"),
        ],
    )
    wheels = {}
    for profile, cuda in pairs():
        release = selection(profile, cuda).unsloth.version
        if release not in wheels:
            wheels[release] = envbuild.wheelhouse(root / f"wheels-{release}", release)
    return Mirror(root, wheels)

"""Build what an end-to-end `create` needs, offline, from this machine:

- a conda package of this machine's own CPython (CPython finds its stdlib relative to its
  executable, so copying ``bin/python3.X`` and ``lib/python3.X`` works; the interpreter keeps
  loading the host's ``libpython`` through its RUNPATH, fine on the same machine),
- a ``pip`` conda package made from the pip that runs these tests,
- small stand-ins for the GPU stack with the real names, versions, build strings and depends
  (``pytorch 2.5.1 py3.11_cuda12.1_*`` registers a ``torch`` distribution, as the real one does),
- a wheelhouse of tiny wheels for Unsloth's pip companions with their real Requires-Dist.
"""

from __future__ import annotations

import base64
import hashlib
import io
import sys
import sysconfig
import zipfile
from pathlib import Path

from conda_unsloth import knowledge
from tests.channels import Pkg, write_channel

PY = f"{sys.version_info.major}.{sys.version_info.minor}"
PY_FULL = ".".join(map(str, sys.version_info[:3]))
SITE = f"lib/python{PY}/site-packages"
SKIP_DIRS = {
    "test",
    "tests",
    "site-packages",
    "idlelib",
    "tkinter",
    "turtledemo",
    "lib2to3",
    "__pycache__",
    "ensurepip",
    "distutils",
    "unittest",
}


def _stdlib_files() -> dict[str, bytes]:
    """The stdlib, with its bytecode as a conda-forge python ships it (unchecked-hash .pyc:
    valid whatever mtime the extracted .py gets), so a new env does not compile its stdlib on
    first use and the demo measures what users get."""
    import importlib.util
    import py_compile
    import tempfile

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    out: dict[str, bytes] = {}
    tag = sys.implementation.cache_tag
    with tempfile.TemporaryDirectory() as tmp:
        cfile = Path(tmp) / "x.pyc"
        for path in stdlib.rglob("*"):
            rel = path.relative_to(stdlib)
            if any(part in SKIP_DIRS or part.startswith("config-") for part in rel.parts):
                continue
            if rel.name == "EXTERNALLY-MANAGED":  # Debian's PEP 668 marker: not in a conda env
                continue
            if not path.is_file() or path.is_symlink():
                continue
            dest = f"lib/python{PY}/{rel.as_posix()}"
            out[dest] = path.read_bytes()
            if path.suffix != ".py":
                continue
            try:
                py_compile.compile(
                    str(path),
                    cfile=str(cfile),
                    doraise=True,
                    invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
                )
            except py_compile.PyCompileError:  # a test data file that is not valid Python
                continue
            pyc = Path(importlib.util.cache_from_source(dest)).as_posix()
            assert tag in pyc
            out[pyc] = cfile.read_bytes()
    return out


# Debian's python (/usr/bin/python3) patches site.py and sysconfig.py: outside a venv it looks
# for packages only in .../dist-packages and pip installs into PREFIX/local/lib/.../dist-packages.
# A conda env's python is upstream CPython: PREFIX/lib/python3.X/site-packages for both. The
# demo's copy of a Debian interpreter gets that layout back through this sitecustomize (a
# no-op on python.org / pyenv / conda builds, which have no Debian schemes).
DEBIAN_SITECUSTOMIZE = """\
# conda-unsloth demo: make a copied Debian interpreter use PREFIX/lib/pythonX.Y/site-packages
import site
import sys
import sysconfig

if "deb_system" in getattr(sysconfig, "_INSTALL_SCHEMES", {}):
    _lib = f"{sys.prefix}/lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages"
    if _lib not in sys.path:
        site.addsitedir(_lib)

    def _upstream_schemes():
        return {"prefix": "posix_prefix", "home": "posix_home", "user": "posix_user"}

    sysconfig._get_preferred_schemes = _upstream_schemes
"""


def python_package() -> Pkg:
    exe = Path(sys.base_exec_prefix) / "bin" / f"python{PY}"
    binary = exe.read_bytes()
    files = _stdlib_files()
    files.update({f"bin/python{PY}": binary, "bin/python3": binary, "bin/python": binary})
    files[f"lib/python{PY}/sitecustomize.py"] = DEBIAN_SITECUSTOMIZE.encode()
    return Pkg("python", PY_FULL, "h_local_0_cpython", depends=(), files=files)


def pip_package() -> Pkg:
    import pip

    root = Path(pip.__file__).parent
    files: dict[str, bytes] = {}
    for path in root.rglob("*"):
        if "__pycache__" in path.parts or not path.is_file():
            continue
        files[f"{SITE}/pip/{path.relative_to(root).as_posix()}"] = path.read_bytes()
    info = f"{SITE}/pip-{pip.__version__}.dist-info"
    files[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: pip\nVersion: {pip.__version__}\n".encode()
    )
    files[f"{info}/INSTALLER"] = b"conda\n"
    files[f"{info}/RECORD"] = b""
    # bin/pip, as every conda pip has: without it `conda run -p ENV pip` (conda-lock install)
    # would find the host's pip on PATH and install into the host
    files["bin/pip"] = b'#!/bin/sh\nexec "$(dirname "$0")/python" -m pip "$@"\n'
    return Pkg(
        "pip", pip.__version__, "py_local_0", depends=(f"python >={PY},<{PY}.999",), files=files
    )


def _dist(name: str, version: str, modules: dict[str, str]) -> dict[str, bytes]:
    files = {f"{SITE}/{m}": body.encode() for m, body in modules.items()}
    info = f"{SITE}/{name}-{version}.dist-info"
    files[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    )
    files[f"{info}/INSTALLER"] = b"conda\n"
    files[f"{info}/RECORD"] = b""
    return files


def gpu_stack(
    torch: str = "2.5.1", cuda: str = "12.1", triton: str = "3.1.0", xformers: str = "0.0.28.post3"
) -> list[Pkg]:
    """The pytorch-channel stack as small packages with the real metadata (facts: compat.md 2a/3a)."""
    nodot = PY.replace(".", "")
    pyd = f"python >={PY},<{PY}.999"
    return [
        Pkg(
            "pytorch",
            torch,
            f"py{PY}_cuda{cuda}_cudnn9.1.0_0",
            depends=(
                pyd,
                f"pytorch-cuda >={cuda},<{cuda}.999",
                "pytorch-mutex 1.0 cuda",
                f"torchtriton {triton}",
                "mkl >=2018",
            ),
            files=_dist(
                "torch",
                torch,
                {
                    "torch/__init__.py": f"__version__ = '{torch}'\nclass version:\n    cuda = '{cuda}'\n"
                },
            ),
        ),
        Pkg(
            "pytorch",
            torch,
            f"py{PY}_cpu_0",
            build_number=10,
            depends=(pyd, "pytorch-mutex 1.0 cpu"),
            files=_dist("torch", torch, {"torch/__init__.py": f"__version__ = '{torch}'\n"}),
        ),
        Pkg("pytorch-mutex", "1.0", "cuda", build_number=100, subdir="noarch", noarch="generic"),
        Pkg("pytorch-mutex", "1.0", "cpu", subdir="noarch", noarch="generic"),
        Pkg("pytorch-cuda", cuda, "ha16c6d3_5", depends=(f"cuda-cudart >={cuda},<{cuda}.999",)),
        Pkg("cuda-cudart", f"{cuda}.105", "0"),
        Pkg(
            "torchtriton",
            triton,
            f"py{nodot}",
            depends=(pyd,),
            files=_dist("triton", triton, {"triton/__init__.py": f"__version__ = '{triton}'\n"}),
        ),
        Pkg(
            "xformers",
            xformers,
            f"py{nodot}_cu{cuda}.0_pyt{torch}",
            depends=(pyd, f"pytorch {torch}.*", "pytorch-cuda >=12.0,<13.0"),
            files=_dist(
                "xformers", xformers, {"xformers/__init__.py": f"__version__ = '{xformers}'\n"}
            ),
        ),
        Pkg("mkl", "2023.1.0", "h213fc3f_46344"),
    ]


def build_channel(root: Path) -> Path:
    """One local channel holding python, pip and the stand-in GPU stack."""
    return write_channel(root, [python_package(), pip_package(), *gpu_stack()])


# ----------------------------------------------------------------------------- wheels


def wheel(directory: Path, name: str, version: str, requires: list[str]) -> Path:
    """Write a minimal but valid pure-Python wheel (METADATA with Requires-Dist, RECORD)."""
    norm = name.replace("-", "_")
    files = {
        f"{norm}/__init__.py": f"__version__ = '{version}'\n".encode(),
        f"{norm}-{version}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
            + "".join(f"Requires-Dist: {r}\n" for r in requires)
        ).encode(),
        f"{norm}-{version}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record_name = f"{norm}-{version}.dist-info/RECORD"
    lines = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        lines.append(f"{path},sha256={digest},{len(data)}")
    lines.append(f"{record_name},,")
    files[record_name] = ("\n".join(lines) + "\n").encode()
    out = directory / f"{norm}-{version}-py3-none-any.whl"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path, data in files.items():
            zf.writestr(zipfile.ZipInfo(path, date_time=(2024, 1, 1, 0, 0, 0)), data)
    out.write_bytes(buf.getvalue())
    return out


def wheelhouse(directory: Path, release: str = "2024.12.12") -> Path:
    """Wheels for the release's companions, each requiring what the real one requires of the
    stack (from knowledge/unsloth.yaml), plus a shared dependency pulled in transitively."""
    directory.mkdir(parents=True, exist_ok=True)
    rel = knowledge.load().release(release)
    assert rel is not None
    requires = [f"{n}{s}" for n, s in rel.requires.items() if n in ("torch", "xformers", "triton")]
    companions = [f"{n}=={v}" for n, v in rel.companions.items()]
    wheel(directory, "unsloth", rel.version, [*requires, *companions, "tqdm-standin"])
    for name, version in rel.companions.items():
        wheel(directory, name, version, ["tqdm-standin"])
    wheel(directory, "tqdm-standin", "1.0", [])
    return directory


def build_demo(root: Path) -> Path:
    """``root/channel`` and ``root/wheels``: everything an offline create needs."""
    build_channel(root / "channel")
    wheelhouse(root / "wheels")
    return root


def create_args(demo: Path, prefix: Path, *extra: str, wheels: Path | None = None) -> list[str]:
    """`create` arguments for an offline run against ``build_demo(demo)``."""
    return [
        "create",
        "-p",
        str(prefix),
        "-c",
        (demo / "channel").as_uri(),
        "--offline",
        "--pip-find-links",
        str(wheels or demo / "wheels"),
        "--yes",
        "--cuda",
        "12.1",
        *extra,
    ]


def main(argv: list[str] | None = None) -> int:
    """`python -m tests.envbuild DIR`: build DIR/channel and DIR/wheels for an offline demo."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m tests.envbuild", description=main.__doc__)
    ap.add_argument("dir", type=Path)
    args = ap.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    chan = build_channel(args.dir / "channel")
    wheels = wheelhouse(args.dir / "wheels")
    print(f"channel: {chan.as_uri()}\nwheels:  {wheels}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

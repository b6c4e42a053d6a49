"""Build real local conda channels for tests: ``repodata.json`` plus tiny but real ``.tar.bz2``
and ``.conda`` artifacts (``info/index.json``, ``info/paths.json``, ``info/files``, payload
files) whose md5 / sha256 / size in the repodata are those of the bytes on disk.

A channel built here works as a ``file://`` channel for py-rattler (solve and install) and for
conda. Typical use::

    from tests.channels import Pkg, write_channel

    chan = write_channel(
        tmp_path / "pytorch",
        [
            Pkg("pytorch", "2.5.1", "py3.11_cuda12.1_cudnn9.1.0_0",
                depends=("python >=3.11,<3.12.0a0", "pytorch-cuda >=12.1,<12.2")),
            Pkg("pytorch-mutex", "1.0", "cuda", subdir="noarch", noarch="generic"),
        ],
    )
    chan.as_uri()  # file:///.../pytorch

``Pkg`` describes one record; ``write_channel`` writes every subdir it needs (always
``noarch`` and ``linux-64``, empty when unused) and returns the channel directory.
``noarch_python`` makes the record of a ``noarch: python`` package with a module file in
``site-packages``. ``.conda`` artifacts need a zstd compressor (``zstandard``, or
``compression.zstd`` on Python >= 3.14); ``zstd_available()`` tells whether one is present.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import tarfile
import threading
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

TIMESTAMP_MS = 1_714_000_000_000  # a fixed build time (2024-04-24) so artifacts are reproducible
SUBDIRS = ("linux-64", "noarch")


@dataclass(frozen=True)
class Pkg:
    """One package record. ``fmt`` is ``"tar.bz2"`` or ``"conda"``."""

    name: str
    version: str
    build: str = "0"
    build_number: int = 0
    depends: tuple[str, ...] = ()
    constrains: tuple[str, ...] = ()
    subdir: str = "linux-64"
    noarch: str | None = None
    fmt: str = "tar.bz2"
    track_features: str = ""
    license: str = "BSD-3-Clause"
    timestamp: int = TIMESTAMP_MS
    # payload: path inside the prefix -> bytes; default: one small text file
    files: Mapping[str, bytes] = field(default_factory=dict)

    @property
    def stem(self) -> str:
        return f"{self.name}-{self.version}-{self.build}"

    @property
    def fn(self) -> str:
        return f"{self.stem}.{self.fmt}"

    def payload(self) -> dict[str, bytes]:
        if self.files:
            return dict(self.files)
        return {f"share/{self.name}/{self.stem}.txt": f"{self.stem}\n".encode()}

    def index_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "build": self.build,
            "build_number": self.build_number,
            "depends": list(self.depends),
            "constrains": list(self.constrains),
            "license": self.license,
            "subdir": self.subdir,
            "timestamp": self.timestamp,
        }
        if self.noarch:
            doc["noarch"] = self.noarch
        if self.track_features:
            doc["track_features"] = self.track_features
        return doc


def noarch_python(
    name: str,
    version: str,
    module: str | None = None,
    depends: Iterable[str] = ("python >=3.9",),
    build: str = "pyhd8ed1ab_0",
    fmt: str = "tar.bz2",
    source: str | None = None,
) -> Pkg:
    """A ``noarch: python`` package whose payload is ``site-packages/<module>/__init__.py``
    (conda relocates ``site-packages/`` into the env's python at install time)."""
    mod = module or name.replace("-", "_")
    text = source if source is not None else f'__version__ = "{version}"\n'
    return Pkg(
        name,
        version,
        build,
        depends=tuple(depends),
        subdir="noarch",
        noarch="python",
        fmt=fmt,
        files={f"site-packages/{mod}/__init__.py": text.encode()},
    )


# ----------------------------------------------------------------------------- artifacts


def zstd_available() -> bool:
    return _zstd_compress(b"") is not None


def _zstd_compress(data: bytes) -> bytes | None:
    try:
        from compression import zstd  # type: ignore[import-not-found]  # Python >= 3.14

        out: bytes = zstd.compress(data)
        return out
    except ImportError:
        pass
    try:
        import zstandard
    except ImportError:
        return None
    return zstandard.ZstdCompressor(level=3).compress(data)


def _info_files(pkg: Pkg) -> dict[str, bytes]:
    payload = pkg.payload()
    paths = {
        "paths": [
            {
                "_path": p,
                "path_type": "hardlink",
                "sha256": hashlib.sha256(data).hexdigest(),
                "size_in_bytes": len(data),
            }
            for p, data in sorted(payload.items())
        ],
        "paths_version": 1,
    }
    return {
        "info/index.json": json.dumps(pkg.index_json(), indent=2, sort_keys=True).encode(),
        "info/paths.json": json.dumps(paths, indent=2).encode(),
        "info/files": "".join(f"{p}\n" for p in sorted(payload)).encode(),
    }


def _tar(members: Mapping[str, bytes], mtime: int, mode: Literal["w", "w:bz2"]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for arc, data in sorted(members.items()):
            ti = tarfile.TarInfo(arc)
            ti.size = len(data)
            ti.mtime = mtime
            ti.mode = 0o755 if arc.startswith("bin/") else 0o644  # executables in bin/
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def build_artifact(pkg: Pkg) -> bytes:
    """The bytes of ``pkg``'s artifact (``.tar.bz2`` or ``.conda``, per ``pkg.fmt``)."""
    mtime = pkg.timestamp // 1000
    info = _info_files(pkg)
    if pkg.fmt == "tar.bz2":
        return _tar({**info, **pkg.payload()}, mtime, "w:bz2")
    if pkg.fmt != "conda":
        raise ValueError(f"unknown package format {pkg.fmt!r}")
    info_tar = _zstd_compress(_tar(info, mtime, "w"))
    pkg_tar = _zstd_compress(_tar(pkg.payload(), mtime, "w"))
    if info_tar is None or pkg_tar is None:
        raise RuntimeError(".conda artifacts need zstandard (pip install zstandard)")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("metadata.json", json.dumps({"conda_pkg_format_version": 2}))
        zf.writestr(f"pkg-{pkg.stem}.tar.zst", pkg_tar)
        zf.writestr(f"info-{pkg.stem}.tar.zst", info_tar)
    return buf.getvalue()


def repodata_entry(pkg: Pkg, data: bytes) -> dict[str, Any]:
    entry = pkg.index_json()
    entry.update(
        md5=hashlib.md5(data).hexdigest(),
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
    )
    return entry


def write_channel(
    root: Path,
    packages: Iterable[Pkg],
    subdirs: Iterable[str] = SUBDIRS,
    *,
    artifacts: bool = True,
) -> Path:
    """Write a channel at ``root`` (created if needed) and return ``root``.

    Each package's artifact is built and written to ``root/<subdir>/<fn>`` and its record (with
    the artifact's md5, sha256 and size) to ``root/<subdir>/repodata.json``. Every subdir in
    ``subdirs`` gets a ``repodata.json``, empty when it has no package. ``artifacts=False``
    writes only repodata (records still carry real hashes of the bytes that would be written).
    """
    by_subdir: dict[str, dict[str, dict[str, dict[str, Any]]]] = {
        s: {"packages": {}, "packages.conda": {}} for s in subdirs
    }
    for pkg in packages:
        data = build_artifact(pkg)
        section = "packages.conda" if pkg.fmt == "conda" else "packages"
        by_subdir.setdefault(pkg.subdir, {"packages": {}, "packages.conda": {}})
        by_subdir[pkg.subdir][section][pkg.fn] = repodata_entry(pkg, data)
        if artifacts:
            (root / pkg.subdir).mkdir(parents=True, exist_ok=True)
            (root / pkg.subdir / pkg.fn).write_bytes(data)
    for subdir, sections in by_subdir.items():
        (root / subdir).mkdir(parents=True, exist_ok=True)
        doc = {
            "info": {"subdir": subdir},
            "packages": sections["packages"],
            "packages.conda": sections["packages.conda"],
            "removed": [],
            "repodata_version": 1,
        }
        (root / subdir / "repodata.json").write_text(json.dumps(doc, indent=1, sort_keys=True))
    return root


# ----------------------------------------------------------------------------- GPU stacks
# Small channels that reproduce the real metadata of the two channel profiles (build strings,
# depends, constrains, track_features and build numbers from the pytorch/nvidia/xformers/
# conda-forge channels: shared/reference/compat.md 2a, 2b, 3a, 3b and shared/data/real-channels).
# Dependencies outside the GPU stack are cut down so the channels stay tiny.

PYTORCH_CUDA = {  # CUDA -> (pytorch-cuda build, cuda-runtime version, cuda-cudart version)
    "11.8": ("h7e8668a_5", "11.8.0", "11.8.89"),
    "12.1": ("ha16c6d3_6", "12.1.0", "12.1.105"),
    "12.4": ("hc786d27_7", "12.4.1", "12.4.127"),
}
# CUDA -> the xformers-channel CUDA build and its pytorch-cuda run requirement
XFORMERS_CU = {
    "11.8": ("11.8.0", "pytorch-cuda >=11.7,<11.9"),
    "12.1": ("12.1.0", "pytorch-cuda >=12.0,<13.0"),
    "12.4": ("12.1.0", "pytorch-cuda >=12.0,<13.0"),
}


def _upper(cuda: str) -> str:
    major, minor = cuda.split(".")
    return f"{major}.{int(minor) + 1}" if cuda != "11.8" else "12.0"


def pytorch_channel_builds(
    version: str = "2.5.1",
    python: str = "3.11",
    cudas: Iterable[str] = ("11.8", "12.1", "12.4"),
    triton: str = "3.1.0",
    cudnn: str = "9.1.0",
    cpu_build_number: int = 1,
) -> list[Pkg]:
    """pytorch-channel records: one CUDA build per CUDA, the CPU build (with a *higher* build
    number than the CUDA builds: the trap), both pytorch-mutex builds, torchtriton and
    pytorch-cuda per CUDA."""
    py_pin = f"python >={python},<{python.split('.')[0]}.{int(python.split('.')[1]) + 1}.0a0"
    common = (
        "blas * mkl",
        "filelock",
        "jinja2",
        "mkl >=2018",
        py_pin,
        "sympy",
        "typing_extensions",
    )
    pkgs = []
    for cuda in cudas:
        pkgs.append(
            Pkg(
                "pytorch",
                version,
                f"py{python}_cuda{cuda}_cudnn{cudnn}_0",
                depends=(
                    *common,
                    f"pytorch-cuda >={cuda},<{_upper(cuda) if cuda != '11.8' else '11.9'}",
                    "pytorch-mutex 1.0 cuda",
                    f"torchtriton {triton}",
                ),
                constrains=("cpuonly <0",),
            )
        )
        build = PYTORCH_CUDA[cuda][0]
        pkgs.append(
            Pkg(
                "pytorch-cuda",
                cuda,
                build,
                build_number=int(build.rsplit("_", 1)[1]),
                depends=(
                    f"cuda-cudart >={cuda},<{_upper(cuda)}",
                    f"cuda-runtime >={cuda},<{_upper(cuda)}",
                ),
            )
        )
    pkgs += [
        Pkg(
            "pytorch",
            version,
            f"py{python}_cpu_{cpu_build_number}",
            build_number=cpu_build_number,
            depends=(*common, "pytorch-mutex 1.0 cpu"),
            constrains=("cpuonly",),
        ),
        Pkg("pytorch-mutex", "1.0", "cuda", build_number=100, subdir="noarch", noarch="generic"),
        Pkg(
            "pytorch-mutex",
            "1.0",
            "cpu",
            subdir="noarch",
            noarch="generic",
            track_features="pytorch-mutex",
        ),
        Pkg(
            "cpuonly",
            "2.0",
            "0",
            subdir="noarch",
            noarch="generic",
            depends=("pytorch-mutex 1.0 cpu",),
            track_features="cpuonly",
        ),
        Pkg(
            "torchtriton",
            triton,
            f"py{python.replace('.', '')}",
            depends=("filelock", py_pin, "pytorch"),
        ),
    ]
    return pkgs


def nvidia_builds(cudas: Iterable[str] = ("11.8", "12.1", "12.4")) -> list[Pkg]:
    out = []
    for cuda in cudas:
        _build, runtime, cudart = PYTORCH_CUDA[cuda]
        out.append(Pkg("cuda-cudart", cudart, "0"))
        out.append(Pkg("cuda-runtime", runtime, "0", depends=(f"cuda-cudart >={cuda}",)))
    return out


def xformers_channel_builds(
    version: str = "0.0.28.post3",
    pytorch: str = "2.5.1",
    pythons: Iterable[str] = ("3.10", "3.11"),
    cudas: Iterable[str] = ("11.8", "12.1"),
) -> list[Pkg]:
    """xformers-channel builds ``py{py}_cu{cuda_build}_pyt{pytorch}`` (recipe facts: run
    requirement ``pytorch {pytorch}.*`` and the pytorch-cuda range of its CUDA build)."""
    out = []
    seen = set()
    for py in pythons:
        major, minor = py.split(".")
        for cuda in cudas:
            cu, cuda_dep = XFORMERS_CU[cuda]
            build = f"py{major}{minor}_cu{cu}_pyt{pytorch}"
            if build in seen:
                continue
            seen.add(build)
            out.append(
                Pkg(
                    "xformers",
                    version,
                    build,
                    depends=(
                        f"python >={py},<{major}.{int(minor) + 1}.0a0",
                        f"pytorch {pytorch}.*",
                        cuda_dep,
                    ),
                )
            )
    return out


def conda_forge_base(pythons: Iterable[str] = ("3.10", "3.11", "3.12")) -> list[Pkg]:
    builds = {
        "3.10": ("3.10.14", "hd12c33a_0_cpython"),
        "3.11": ("3.11.9", "hb806964_0_cpython"),
        "3.12": ("3.12.5", "h2ad013b_0_cpython"),
    }
    out = [Pkg("python", *builds[p], build_number=0, fmt="conda") for p in pythons if p in builds]
    out += [
        noarch_python("pip", "24.2", depends=("python >=3.8",), build="pyh8b19718_1"),
        noarch_python("filelock", "3.15.4", build="pyhd8ed1ab_0"),
        noarch_python("jinja2", "3.1.4", build="pyhd8ed1ab_0"),
        noarch_python("sympy", "1.13.0", build="pyh04b8f61_3"),
        noarch_python("typing_extensions", "4.12.2", build="pyha770c72_0"),
        Pkg("mkl", "2023.2.0", "h84fe81f_50496", build_number=50496),
        Pkg("mkl", "2024.2.0", "ha957f24_665", build_number=665),
        Pkg("blas", "1.0", "mkl", depends=("mkl",)),
    ]
    return out


def write_pytorch_profile(
    root: Path,
    pythons: Iterable[str] = ("3.11", "3.12"),
    extra_conda_forge: Iterable[Pkg] = (),
    **kw: Any,
) -> list[str]:
    """Channels ``pytorch``, ``nvidia``, ``xformers``, ``conda-forge`` under ``root`` (each a
    directory named like the real channel, so ``pytorch::`` specs follow it): pytorch 2.5.1
    builds for ``pythons``, xformers 0.0.28.post3 for python 3.10/3.11 only (as on the real
    xformers channel), plus ``extra_conda_forge`` in conda-forge. Returns the ``file://`` URLs in
    profile priority order. ``kw`` goes to :func:`pytorch_channel_builds`."""
    pythons = tuple(pythons)
    torch_builds = [p for py in pythons for p in pytorch_channel_builds(python=py, **kw)]
    unique = list({(p.subdir, p.fn): p for p in torch_builds}.values())
    chans = {
        "pytorch": unique,
        "nvidia": nvidia_builds(),
        "xformers": xformers_channel_builds(pythons=("3.10", "3.11")),
        "conda-forge": [
            *conda_forge_base(sorted({"3.10", "3.11", *pythons})),
            *extra_conda_forge,
        ],
    }
    return [write_channel(root / name, pkgs).as_uri() for name, pkgs in chans.items()]


def conda_forge_gpu_builds(python: str = "3.12", cuda: str = "12.9") -> list[Pkg]:
    """conda-forge pytorch 2.10.0 (CUDA build, build number 300, depends on ``__cuda`` and
    ``cuda-version``), a CPU build of a *newer* pytorch (the trap), triton, xformers 0.0.34
    (``pytorch >=2.10,<2.11.0a0`` + ``pytorch * cuda*``) and torchvision 0.25.0."""
    nodot = cuda.replace(".", "")
    py = python.replace(".", "")
    py_pin = f"python >={python},<{python.split('.')[0]}.{int(python.split('.')[1]) + 1}.0a0"
    cuda_pin = f"cuda-version >={cuda},<{int(cuda.split('.')[0]) + 1}"
    return [
        Pkg(
            "pytorch",
            "2.10.0",
            f"cuda{nodot}_mkl_py{py}_h8f3b5e1_300",
            build_number=300,
            depends=("__cuda", cuda_pin, "filelock", py_pin, "triton ==3.6.0", "sympy"),
            constrains=("pytorch-cpu <0.0a0",),
        ),
        Pkg(
            "pytorch",
            "2.11.0",
            f"cpu_mkl_py{py}_h1c2d3e4_101",
            build_number=101,
            depends=("filelock", py_pin, "sympy"),
            constrains=("pytorch-gpu <0.0a0",),
        ),
        Pkg("cuda-version", cuda, "h4f385c5_3", build_number=3, subdir="noarch", noarch="generic"),
        Pkg("triton", "3.6.0", f"cuda{nodot}py{py}h5b1c2a3_0", depends=(py_pin, cuda_pin)),
        Pkg(
            "xformers",
            "0.0.34",
            f"cuda_{nodot}py310hf55b5f2_0",
            depends=(
                "__cuda",
                cuda_pin,
                "python >=3.10",
                "pytorch >=2.10,<2.11.0a0",
                "pytorch * cuda*",
            ),
        ),
        Pkg(
            "torchvision",
            "0.25.0",
            f"cuda_{nodot}_py{py}_h3a4b5c6_0",
            depends=(py_pin, "pytorch >=2.10,<2.11.0a0", "pytorch * cuda*"),
        ),
    ]


def write_conda_forge_profile(root: Path, python: str = "3.12", cuda: str = "12.9") -> list[str]:
    """One ``conda-forge`` channel with the GPU stack and the base packages; returns its URL."""
    pkgs = conda_forge_gpu_builds(python, cuda) + conda_forge_base((python,))
    return [write_channel(root / "conda-forge", pkgs).as_uri()]


@contextmanager
def serve(root: Path) -> Iterator[str]:
    """``root`` over HTTP on 127.0.0.1 (a network channel that is really there)."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

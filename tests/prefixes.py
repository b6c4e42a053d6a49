"""Write fake-but-realistic conda prefixes for doctor/inventory tests.

A prefix gets what conda (and pip) would leave on disk, and nothing else:

* ``conda-meta/<name>-<version>-<build>.json`` records shaped like conda's own (name, version,
  build, build_number, channel URL with subdir, subdir, fn, url, depends, files, paths_data,
  requested_spec, link), listing the files the package put into the prefix;
* the conda package's Python metadata in site-packages, owned by its record: an
  ``.egg-info`` folder for pytorch-channel builds (pytorch/builder runs ``python setup.py
  install``) and a ``.dist-info`` with ``INSTALLER`` = ``conda`` for conda-forge builds;
* pip-installed distributions: ``<name>-<version>.dist-info`` with ``METADATA``,
  ``INSTALLER`` (``pip``), ``RECORD`` and ``REQUESTED``, owned by no record.

Package facts (names, versions, build strings, channels, dependencies) come from real
channel data: the pytorch-channel and conda-forge records in shared/data/real-channels (pixi
lock files; e.g. ``pytorch-2.3.1-py3.11_cuda12.1_cudnn8.9.2_0``, ``pytorch-cuda-12.1-ha16c6d3_5``,
``mkl-2023.0.0-h84fe81f_26648``, ``python-3.11.9-hb806964_0_cpython``), the xformers channel's
build-string scheme ``py{py}_cu{cuda}_pyt{torch}`` (facebookresearch/xformers packaging/
build_conda.py; ``py311_cu12.1.0_pyt2.5.1`` is 0.0.28.post3 on anaconda.org/xformers), and the
seed report (unslothai/unsloth#1126: torch 2.3.1 + xformers 0.0.27, unsloth 2024.9.post4,
transformers 4.45.1, trl 0.11.1).
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Rec:
    """A conda package as it sits in conda-meta (plus the Python metadata it ships)."""

    name: str
    version: str
    build: str
    channel: str
    subdir: str = "linux-64"
    depends: tuple[str, ...] = ()
    dist: str | None = None  # the Python distribution name it ships ("torch"), if any
    requested: bool = False

    @property
    def record_name(self) -> str:
        return f"{self.name}-{self.version}-{self.build}.json"


@dataclass(frozen=True)
class Wheel:
    """A Python distribution installed by a Python installer (pip unless said otherwise).

    ``requires``: its METADATA ``Requires-Dist`` lines. ``replaces``: the conda package whose
    Python distribution pip uninstalled first (``Attempting uninstall: torch``): that
    record's metadata folder and module files go, its conda-meta record stays (conda never
    hears of it), as after ``pip install torch==X`` in a conda env."""

    name: str
    version: str
    installer: str = "pip"
    requires: tuple[str, ...] = ()
    replaces: str | None = None


# ----------------------------------------------------------------------------- stacks

PY311 = Rec(
    "python",
    "3.11.9",
    "hb806964_0_cpython",
    "conda-forge",
    depends=("bzip2 >=1.0.8,<2.0a0", "libffi >=3.4,<4.0a0", "openssl >=3.3.0,<4.0a0"),
    requested=True,
)
PY310 = Rec("python", "3.10.14", "hd12c33a_0_cpython", "conda-forge", requested=True)
PY312 = Rec("python", "3.12.6", "hc5c86c4_1_cpython", "conda-forge", requested=True)
MKL_2023 = Rec(
    "mkl",
    "2023.0.0",
    "h84fe81f_26648",
    "conda-forge",
    depends=("llvm-openmp >=15.0.6", "tbb 2021.*"),
)
MKL_2024 = Rec(
    "mkl", "2024.2.2", "ha957f24_16", "conda-forge", depends=("llvm-openmp >=19.1.2", "tbb 2021.*")
)
PYTORCH_CUDA_121 = Rec(
    "pytorch-cuda",
    "12.1",
    "ha16c6d3_5",
    "pytorch",
    depends=(
        "cuda-cudart >=12.1,<12.2",
        "cuda-runtime >=12.1,<12.2",
        "libcublas >=12.1.0.26,<12.1.3.1",
    ),
)
PYTORCH_CUDA_118 = Rec(
    "pytorch-cuda",
    "11.8",
    "h7e8668a_5",
    "pytorch",
    depends=("cuda-cudart >=11.8,<12.0", "cuda-runtime >=11.8,<12.0"),
)
MUTEX_CUDA = Rec("pytorch-mutex", "1.0", "cuda", "pytorch", subdir="noarch")
MUTEX_CPU = Rec("pytorch-mutex", "1.0", "cpu", "pytorch", subdir="noarch")


def pytorch(
    version: str, py: str, cuda: str | None, cudnn: str = "9.1.0", triton: str | None = None
) -> Rec:
    """A pytorch-channel pytorch build (py3.11_cuda12.1_cudnn9.1.0_0 / py3.11_cpu_0); with
    ``triton``, its record depends on that torchtriton, as the real ones do
    (``torchtriton 2.0.0`` in shared/data/real-channels' pytorch 2.0.0 records)."""
    build = f"py{py}_cuda{cuda}_cudnn{cudnn}_0" if cuda else f"py{py}_cpu_0"
    nxt = f"{py.split('.')[0]}.{int(py.split('.')[1]) + 1}"
    depends = [
        "blas * mkl",
        "filelock",
        "jinja2",
        "mkl >=2018",
        "networkx",
        f"python >={py},<{nxt}.0a0",
    ]
    if cuda:
        major, minor = cuda.split(".")
        depends += [f"pytorch-cuda >={cuda},<{major}.{int(minor) + 1}", "pytorch-mutex 1.0 cuda"]
    else:
        depends += ["pytorch-mutex 1.0 cpu"]
    if triton:
        depends.append(f"torchtriton {triton}")
    return Rec(
        "pytorch", version, build, "pytorch", depends=tuple(depends), dist="torch", requested=True
    )


def torchtriton(version: str, py: str) -> Rec:
    return Rec(
        "torchtriton",
        version,
        f"py{py.replace('.', '')}",
        "pytorch",
        depends=("filelock", "pytorch"),
        dist="triton",
    )


def xformers_channel(version: str, py: str, cuda_build: str, torch: str) -> Rec:
    """An xformers-channel build: py{py}_cu{cuda}_pyt{torch}, run-pinned to that pytorch."""
    return Rec(
        "xformers",
        version,
        f"py{py.replace('.', '')}_cu{cuda_build}_pyt{torch}",
        "xformers",
        depends=(f"pytorch {torch}.*", "pytorch-cuda >=12.0,<13.0", "python"),
        dist="xformers",
        requested=True,
    )


def seed_pip() -> tuple[list[Rec], list[Wheel]]:
    """The seed env: pytorch 2.3.1 from the pytorch channel, pip xformers 0.0.27 and unsloth
    2024.9.post4 with transformers 4.45.1 / trl 0.11.1 (unslothai/unsloth#1126)."""
    return (
        [
            PY311,
            MKL_2023,
            pytorch("2.3.1", "3.11", "12.1", cudnn="8.9.2"),
            PYTORCH_CUDA_121,
            MUTEX_CUDA,
            torchtriton("2.3.1", "3.11"),
        ],
        [
            Wheel("xformers", "0.0.27"),
            Wheel("unsloth", "2024.9.post4"),
            Wheel("transformers", "4.45.1"),
            Wheel("trl", "0.11.1"),
            Wheel("peft", "0.12.0"),
            Wheel("accelerate", "0.34.2"),
            Wheel("bitsandbytes", "0.43.3"),
        ],
    )


def seed_xformers_channel() -> tuple[list[Rec], list[Wheel]]:
    """The seed on conda: python 3.10 (the xformers channel built 0.0.27 for 3.9/3.10 only)."""
    return (
        [
            PY310,
            MKL_2023,
            pytorch("2.3.1", "3.10", "12.1", cudnn="8.9.2"),
            PYTORCH_CUDA_121,
            MUTEX_CUDA,
            torchtriton("2.3.1", "3.10"),
            xformers_channel("0.0.27", "3.10", "12.1.0", "2.3.1"),
        ],
        [
            Wheel("unsloth", "2024.9.post4"),
            Wheel("transformers", "4.45.1"),
            Wheel("trl", "0.11.1"),
            Wheel("peft", "0.12.0"),
            Wheel("accelerate", "0.34.2"),
            Wheel("bitsandbytes", "0.43.3"),
        ],
    )


def healthy() -> tuple[list[Rec], list[Wheel]]:
    """What the planner picks for CUDA 12.1 on profile pytorch: pytorch 2.5.1 py3.11 cuda12.1,
    xformers 0.0.28.post3 for it, unsloth 2024.12.12 and its companions (unsloth.yaml)."""
    return (
        [
            PY311,
            MKL_2023,
            pytorch("2.5.1", "3.11", "12.1", triton="3.1.0"),
            PYTORCH_CUDA_121,
            MUTEX_CUDA,
            torchtriton("3.1.0", "3.11"),
            xformers_channel("0.0.28.post3", "3.11", "12.1.0", "2.5.1"),
        ],
        [
            Wheel("unsloth", "2024.12.12"),
            Wheel("unsloth_zoo", "2024.12.7"),
            Wheel("transformers", "4.46.3"),
            Wheel("trl", "0.12.2"),
            Wheel("peft", "0.14.0"),
            Wheel("accelerate", "1.2.1"),
            Wheel("bitsandbytes", "0.45.0"),
        ],
    )


def swap(
    stack: tuple[list[Rec], list[Wheel]],
    *,
    drop: Iterable[str] = (),
    conda: Iterable[Rec] = (),
    pip: Iterable[Wheel] = (),
) -> tuple[list[Rec], list[Wheel]]:
    """``stack`` with the named packages dropped (conda and pip) and others added."""
    gone = set(drop)
    recs, wheels = stack
    new_recs = list(conda)
    new_wheels = list(pip)
    gone |= {r.name for r in new_recs} | {w.name for w in new_wheels}
    return (
        [r for r in recs if r.name not in gone] + new_recs,
        [w for w in wheels if w.name not in gone] + new_wheels,
    )


# ----------------------------------------------------------------------------- writing


def _sp(prefix: Path, python: str | None) -> str:
    return f"lib/python{python}/site-packages" if python else "lib/python3/site-packages"


def _metadata(name: str, version: str, requires: tuple[str, ...] = ()) -> str:
    deps = "".join(f"Requires-Dist: {r}\n" for r in requires)
    return (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: {name}\n{deps}\n"
        f"{name} long description\n"
    )


def _build_number(build: str) -> int:
    m = re.search(r"_(\d+)$", build)
    return int(m.group(1)) if m else 0


def write_record(prefix: Path, rec: Rec, python: str | None) -> Path:
    """Write ``rec``'s conda-meta record and the files it lists (its Python metadata)."""
    files: list[str] = []
    sp = _sp(prefix, python)
    if rec.dist is not None:
        if rec.channel == "conda-forge":
            folder = f"{sp}/{rec.dist}-{rec.version}.dist-info"
            meta = {"METADATA": _metadata(rec.dist, rec.version), "INSTALLER": "conda\n"}
        else:
            folder = f"{sp}/{rec.dist}-{rec.version}-py{python}.egg-info"
            meta = {"PKG-INFO": _metadata(rec.dist, rec.version), "SOURCES.txt": "setup.py\n"}
        for fname, text in meta.items():
            path = prefix / folder / fname
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            files.append(f"{folder}/{fname}")
        init = prefix / sp / rec.dist / "__init__.py"
        init.parent.mkdir(parents=True, exist_ok=True)
        init.write_text("", encoding="utf-8")
        files.append(f"{sp}/{rec.dist}/__init__.py")
    if rec.name == "python":  # CPython's package ships site-packages/README.txt
        readme = prefix / sp / "README.txt"
        readme.parent.mkdir(parents=True, exist_ok=True)
        readme.write_text("This directory exists so that 3rd party packages can be installed\n")
        files.append(f"{sp}/README.txt")
    ext = ".conda" if rec.channel == "conda-forge" else ".tar.bz2"
    fn = f"{rec.name}-{rec.version}-{rec.build}{ext}"
    channel_url = f"https://conda.anaconda.org/{rec.channel}"
    doc = {
        "build": rec.build,
        "build_number": _build_number(rec.build),
        "channel": f"{channel_url}/{rec.subdir}",
        "constrains": [],
        "depends": list(rec.depends),
        "files": files,
        "fn": fn,
        "license": "BSD-3-Clause",
        "link": {"source": f"/opt/conda/pkgs/{fn.removesuffix(ext)}", "type": 1},
        "name": rec.name,
        "paths_data": {
            "paths": [{"_path": f, "path_type": "hardlink", "size_in_bytes": 0} for f in files],
            "paths_version": 1,
        },
        "requested_spec": f"{rec.name}={rec.version}" if rec.requested else "",
        "subdir": rec.subdir,
        "url": f"{channel_url}/{rec.subdir}/{fn}",
        "version": rec.version,
    }
    path = prefix / "conda-meta" / rec.record_name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, sort_keys=True), encoding="utf-8")
    return path


def write_wheel(prefix: Path, wheel: Wheel, python: str | None) -> Path:
    """A pip-installed distribution: dist-info with METADATA, INSTALLER, RECORD, REQUESTED."""
    sp = prefix / _sp(prefix, python)
    folder = sp / f"{wheel.name.replace('-', '_')}-{wheel.version}.dist-info"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "METADATA").write_text(
        _metadata(wheel.name, wheel.version, wheel.requires), encoding="utf-8"
    )
    (folder / "INSTALLER").write_text(wheel.installer + "\n", encoding="utf-8")
    (folder / "REQUESTED").write_text("", encoding="utf-8")
    (folder / "RECORD").write_text(
        f"{folder.name}/METADATA,,\n{folder.name}/INSTALLER,,\n{folder.name}/RECORD,,\n",
        encoding="utf-8",
    )
    return folder


def write_prefix(prefix: Path, stack: tuple[list[Rec], list[Wheel]]) -> Path:
    """Write a whole prefix (conda-meta/history too, as conda does) and return it."""
    recs, wheels = stack
    py = next((r for r in recs if r.name == "python"), None)
    python = ".".join(py.version.split(".")[:2]) if py else None
    (prefix / "conda-meta").mkdir(parents=True, exist_ok=True)
    (prefix / "conda-meta" / "history").write_text(
        "==> 2024-10-10 12:00:00 <==\n# cmd: conda create -n unsloth_env\n", encoding="utf-8"
    )
    for r in recs:
        write_record(prefix, r, python)
    for w in wheels:
        if w.replaces is not None:
            pip_uninstall(prefix, next(r for r in recs if r.name == w.replaces), python)
        write_wheel(prefix, w, python)
    return prefix


def pip_uninstall(prefix: Path, rec: Rec, python: str | None) -> None:
    """What pip's uninstall of a conda package's Python distribution leaves: its metadata
    folder and module files gone, its conda-meta record untouched."""
    record = json.loads((prefix / "conda-meta" / rec.record_name).read_text(encoding="utf-8"))
    for f in record["files"]:
        if f.startswith(_sp(prefix, python) + "/"):
            (prefix / f).unlink(missing_ok=True)
    sp = prefix / _sp(prefix, python)
    for folder in list(sp.glob(f"{rec.dist}-*.egg-info")) + list(
        sp.glob(f"{rec.dist}-*.dist-info")
    ):
        for child in folder.iterdir():
            child.unlink()
        folder.rmdir()


# ----------------------------------------------------------------------------- hostile files


def make_fifo(path: Path) -> Path:
    """A named pipe at ``path`` (replacing a file there): opening it for reading blocks until a
    writer comes, so code that opens it unchecked hangs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        path.unlink()
    os.mkfifo(path)
    return path


def _unblock(fifos: Iterable[Path]) -> None:
    """Open each FIFO for writing (non-blocking) and close it: a reader stuck in open()
    wakes up and sees end-of-file."""
    for f in fifos:
        try:
            fd = os.open(f, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # no reader waiting on this one
            continue
        os.close(fd)


def call_or_unhang(fn: Callable[[], T], fifos: Iterable[Path], grace: float = 60.0) -> T:
    """``fn()``, failing (instead of hanging the test run) when it is still blocked after
    ``grace`` seconds: then the FIFOs are opened for writing so the stuck reader returns, and
    the test fails with a message. A hang detector, not a timing target."""
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # re-raised in the test's thread
            error.append(exc)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(grace)
    hung = worker.is_alive()
    if hung:
        fifos = list(fifos)
        for _ in range(50):
            _unblock(fifos)
            worker.join(0.2)
            if not worker.is_alive():
                break
    if hung:
        raise AssertionError(f"blocked on a FIFO for {grace:.0f}s (it opened a named pipe)")
    if error:
        raise error[0]
    return result[0]


__all__ = [
    "MKL_2023",
    "MKL_2024",
    "MUTEX_CPU",
    "MUTEX_CUDA",
    "PY310",
    "PY311",
    "PY312",
    "PYTORCH_CUDA_118",
    "PYTORCH_CUDA_121",
    "Rec",
    "Wheel",
    "call_or_unhang",
    "healthy",
    "make_fifo",
    "pytorch",
    "seed_pip",
    "seed_xformers_channel",
    "swap",
    "torchtriton",
    "write_prefix",
    "write_record",
    "write_wheel",
    "xformers_channel",
]

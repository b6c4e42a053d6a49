"""A solved env with token-bearing URLs, built from real records, for every export test."""

from __future__ import annotations

import pytest

from conda_unsloth.solvers.base import PipPackage, Record, SolvedEnv
from conda_unsloth.spec import Dep, EnvSpec

TOKEN_BASE = "https://conda.anaconda.org/t/xx-0123456789-yy"
AUTH_BASE = "https://alice:pa55@mirror.example.org"


def _rec(
    base: str,
    channel: str,
    subdir: str,
    name: str,
    version: str,
    build: str,
    md5: str,
    sha: str,
    depends: tuple[str, ...] = (),
    fmt: str = "tar.bz2",
) -> Record:
    fn = f"{name}-{version}-{build}.{fmt}"
    return Record(
        name,
        version,
        build,
        0,
        f"{base}/{channel}",
        subdir,
        f"{base}/{channel}/{subdir}/{fn}",
        fn,
        md5=md5,
        sha256=sha,
        depends=depends,
        size=1000,
        timestamp=1714000000000,
    )


@pytest.fixture
def solved_env() -> SolvedEnv:
    records = (
        _rec(
            TOKEN_BASE,
            "pytorch",
            "linux-64",
            "pytorch",
            "2.5.1",
            "py3.11_cuda12.1_cudnn9.1.0_0",
            "a" * 32,
            "b" * 64,
            (
                "python >=3.11,<3.12.0a0",
                "pytorch-cuda >=12.1,<12.2",
                "pytorch-mutex 1.0 cuda",
                "torchtriton 3.1.0",
                "mkl >=2018",
            ),
        ),
        _rec(TOKEN_BASE, "pytorch", "noarch", "pytorch-mutex", "1.0", "cuda", "c" * 32, "d" * 64),
        _rec(
            TOKEN_BASE,
            "pytorch",
            "linux-64",
            "torchtriton",
            "3.1.0",
            "py311",
            "e" * 32,
            "f" * 64,
            ("python >=3.11,<3.12.0a0", "pytorch"),
        ),
        _rec(
            TOKEN_BASE,
            "pytorch",
            "linux-64",
            "pytorch-cuda",
            "12.1",
            "ha16c6d3_6",
            "1" * 32,
            "2" * 64,
            ("cuda-runtime >=12.1,<12.2",),
        ),
        _rec(AUTH_BASE, "nvidia", "linux-64", "cuda-runtime", "12.1.0", "0", "3" * 32, "4" * 64),
        _rec(
            AUTH_BASE,
            "conda-forge",
            "linux-64",
            "python",
            "3.11.9",
            "hb806964_0_cpython",
            "5" * 32,
            "6" * 64,
            fmt="conda",
        ),
        _rec(
            AUTH_BASE,
            "conda-forge",
            "linux-64",
            "mkl",
            "2023.2.0",
            "h84fe81f_50496",
            "7" * 32,
            "8" * 64,
        ),
    )
    spec = EnvSpec(
        "unsloth",
        ["pytorch", "nvidia", "conda-forge"],
        [Dep("python=3.11"), Dep("pytorch=2.5.1=py3.11_cuda12.1_*")],
    )
    return SolvedEnv(
        platform="linux-64",
        channels=(f"{TOKEN_BASE}/pytorch", f"{AUTH_BASE}/nvidia", f"{AUTH_BASE}/conda-forge"),
        records=tuple(sorted(records, key=lambda r: r.name)),
        virtual_packages=("__cuda=12.1=0", "__glibc=2.36=0"),
        solver="rattler 0.28.0",
        pip=(
            PipPackage("unsloth", "2024.12.12"),
            PipPackage(
                "peft",
                "0.14.0",
                "https://files.pythonhosted.org/packages/88/05/peft-0.14.0-py3-none-any.whl",
                "9" * 64,
            ),
        ),
        spec=spec,
    )

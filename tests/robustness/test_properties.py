"""Property-based tests: whatever the input, parsing and selection either succeed with the
invariants intact or fail with an UnslothError — never another exception."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conda_unsloth import knowledge, spec
from conda_unsloth.errors import SpecError, UnslothError
from conda_unsloth.exports.lockread import read_lock
from conda_unsloth.host import Gpu, Host
from conda_unsloth.knowledge.model import arch_covered
from conda_unsloth.knowledge.packages import Package
from conda_unsloth.knowledge.rules import evaluate
from conda_unsloth.select import Request, select
from conda_unsloth.target import normalize_arch
from tests.selection import check_invariants

KB = knowledge.load()
PROFILES = list(KB.profiles)
CUDAS = sorted({c for p in KB.profiles.values() for c in p.cudas})
PYTHONS = sorted({v for p in KB.profiles.values() for v in p.pythons})
TORCHES = sorted({r.version for p in KB.profiles.values() for r in p.pytorch})
XFORMERS = sorted({x.version for p in KB.profiles.values() for x in p.xformers})
ARCHS = sorted(KB.gpu_archs)
junk = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)


def maybe(values: list[str]) -> st.SearchStrategy[str | None]:
    return st.one_of(st.none(), st.sampled_from(values), junk)


@settings(max_examples=300, deadline=None)
@given(
    profile=st.one_of(st.none(), st.sampled_from(PROFILES)),
    cuda=maybe(CUDAS),
    python=maybe(PYTHONS),
    torch=maybe(TORCHES),
    xformers=maybe(XFORMERS),
    archs=st.lists(st.one_of(st.sampled_from(ARCHS), junk), max_size=2),
    driver=st.one_of(st.none(), st.sampled_from(CUDAS)),
)
def test_select_is_total(
    profile: str | None,
    cuda: str | None,
    python: str | None,
    torch: str | None,
    xformers: str | None,
    archs: list[str],
    driver: str | None,
) -> None:
    host = Host(
        platform="linux-64",
        driver_cuda=driver,
        gpus=tuple(Gpu(i, "g", a) for i, a in enumerate(archs) if a in ARCHS),
    )
    req = Request(
        profile=profile,
        cuda=cuda,
        python=python,
        torch=torch,
        xformers=xformers,
        gpu_archs=tuple(archs),
    )
    try:
        sel = select(req, host, KB)
    except UnslothError as exc:
        assert exc.message and "\n" not in exc.message
        return
    check_invariants(sel)
    if driver is not None:
        assert tuple(map(int, sel.cuda.split("."))) <= tuple(map(int, driver.split(".")))
    for a in sel.target.archs:
        assert arch_covered(a, sel.profile.arch_lists[sel.cuda])


@given(
    major=st.integers(1, 12),
    minor=st.integers(0, 9),
    form=st.sampled_from(["{}.{}", "sm_{}{}", "sm{}{}", "{}{}"]),
)
def test_normalize_arch_accepts_every_spelling(major: int, minor: int, form: str) -> None:
    assert normalize_arch(form.format(major, minor)) == f"{major}.{minor}"


@given(major=st.integers(3, 12), built=st.integers(0, 9), newer=st.integers(0, 9))
def test_sass_covers_newer_minor_of_the_same_major(major: int, built: int, newer: int) -> None:
    covered = arch_covered(f"{major}.{max(built, newer)}", f"{major}.{built}")
    assert covered
    assert not arch_covered(f"{major + 1}.0", f"{major}.{built}"), (
        "SASS never covers a newer major"
    )


names = st.sampled_from(
    [
        "pytorch",
        "torch",
        "xformers",
        "python",
        "unsloth",
        "mkl",
        "bitsandbytes",
        "pytorch-mutex",
        "torchtriton",
        "triton",
        "cpuonly",
        "transformers",
    ]
)
versions = st.one_of(
    st.sampled_from(TORCHES + XFORMERS + ["3.11.7", "2024.9.post4", "2024.1", "1.0"]), junk
)
builds = st.one_of(
    st.sampled_from(
        [
            "",
            "cpu",
            "cuda",
            "py3.11_cuda12.1_cudnn8.9.2_0",
            "py3.11_cpu_0",
            "py311_cu12.1.0_pyt2.5.1",
            "cuda129_mkl_py312_h0_300",
            "cuda_130py310h0_0",
        ]
    ),
    junk,
)
packages = st.builds(
    Package,
    name=names,
    version=versions,
    build=builds,
    channel=st.sampled_from(["pytorch", "conda-forge", "xformers", "pypi", ""]),
    installer=st.sampled_from(["conda", "pip"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(packages, max_size=8))
def test_rules_never_crash(pkgs: list[Package]) -> None:
    for f in evaluate(pkgs, KB):
        assert f.issue.id in KB.issues and f.detail


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=400))
def test_env_file_reader_is_total(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "environment.yml"
        p.write_bytes(data)
        with contextlib.suppress(SpecError):
            spec.read(p)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=400), st.text(max_size=400).map(lambda t: ("@EXPLICIT\n" + t).encode())
    )
)
def test_lock_reader_is_total(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "lock.txt"
        p.write_bytes(data)
        with contextlib.suppress(SpecError):
            read_lock(p, "linux-64")

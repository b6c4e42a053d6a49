"""Post-solve validation on records with real build strings and depends (compat.md 2a, 2b,
3a, 3b): every way a solution can miss the intended stack is refused, naming the record."""

from __future__ import annotations

import dataclasses

import pytest

from conda_unsloth import knowledge
from conda_unsloth.errors import SolveError, UnsolvableError
from conda_unsloth.solvers.base import PipPackage, Record, SolvedEnv
from conda_unsloth.spec import Dep, EnvSpec
from conda_unsloth.target import Target
from conda_unsloth.validate import (
    ValidationError,
    conda_version_matches,
    dep_admits,
    explain_unsolvable,
    unsolvable_hints,
    validate,
    version_matches,
    violations,
)

KB = knowledge.load()
T121 = Target("linux-64", "12.1", glibc="2.36")
T129 = Target("linux-64", "12.9", glibc="2.36")


def rec(
    name: str, version: str, build: str, channel: str = "pytorch", depends: tuple[str, ...] = ()
) -> Record:
    base = f"https://conda.anaconda.org/{channel}"
    fn = f"{name}-{version}-{build}.tar.bz2"
    return Record(
        name, version, build, 0, base, "linux-64", f"{base}/linux-64/{fn}", fn, depends=depends
    )


PT = rec(
    "pytorch",
    "2.5.1",
    "py3.11_cuda12.1_cudnn9.1.0_0",
    depends=(
        "python >=3.11,<3.12.0a0",
        "pytorch-cuda >=12.1,<12.2",
        "pytorch-mutex 1.0 cuda",
        "torchtriton 3.1.0",
    ),
)
XF = rec(
    "xformers",
    "0.0.28.post3",
    "py311_cu12.1.0_pyt2.5.1",
    "xformers",
    ("python >=3.11,<3.12.0a0", "pytorch 2.5.1.*", "pytorch-cuda >=12.0,<13.0"),
)
GOOD = (
    rec("python", "3.11.9", "hb806964_0_cpython", "conda-forge"),
    PT,
    XF,
    rec("pytorch-cuda", "12.1", "ha16c6d3_6"),
    rec("pytorch-mutex", "1.0", "cuda"),
    rec("torchtriton", "3.1.0", "py311", depends=("pytorch",)),
)


def solved(
    records: tuple[Record, ...], spec: EnvSpec | None = None, pip: tuple[PipPackage, ...] = ()
) -> SolvedEnv:
    return SolvedEnv("linux-64", (), records, ("__cuda=12.1=0",), "test", pip=pip, spec=spec)


def replace(records: tuple[Record, ...], new: Record) -> tuple[Record, ...]:
    return tuple(new if r.name == new.name else r for r in records)


def test_intended_stack_passes() -> None:
    assert violations(solved(GOOD), KB, T121) == []
    validate(solved(GOOD), KB, T121)


@pytest.mark.parametrize(
    ("records", "message"),
    [
        (
            replace(
                GOOD,
                dataclasses.replace(PT, build="py3.11_cpu_0", depends=("pytorch-mutex 1.0 cpu",)),
            ),
            "pytorch 2.5.1 py3.11_cpu_0 (pytorch) is a CPU build; the target is CUDA 12.1",
        ),
        (
            replace(GOOD, dataclasses.replace(PT, build="py3.11_cuda11.8_cudnn9.1.0_0")),
            "pytorch 2.5.1 py3.11_cuda11.8_cudnn9.1.0_0 (pytorch) is a CUDA 11.8 build; the target is CUDA 12.1",
        ),
        (
            replace(GOOD, rec("pytorch-mutex", "1.0", "cpu")),
            "pytorch-mutex 1.0 cpu (pytorch) selects the CPU variant of pytorch",
        ),
        (
            (*GOOD, rec("cpuonly", "2.0", "0")),
            "cpuonly 2.0 0 (pytorch) forces the CPU variant of pytorch",
        ),
        (
            replace(
                GOOD,
                dataclasses.replace(
                    XF, build="py311_cu12.1.0_pyt2.5.0", depends=("pytorch 2.5.0.*",)
                ),
            ),
            "xformers 0.0.28.post3 py311_cu12.1.0_pyt2.5.0 (xformers) was built for pytorch 2.5.0, but the solved pytorch is pytorch 2.5.1",
        ),
        (
            replace(GOOD, rec("torchtriton", "3.0.0", "py311")),
            "pins 'torchtriton 3.1.0', but the solution has torchtriton 3.0.0 py311 (pytorch)",
        ),
        (
            tuple(r for r in GOOD if r.name != "torchtriton"),
            "pins 'torchtriton 3.1.0', but the solution has no torchtriton",
        ),
        (
            tuple(r for r in GOOD if r.name != "pytorch"),
            "the solution has no pytorch (target: a CUDA 12.1 build)",
        ),
    ],
    ids=[
        "cpu-build",
        "other-cuda",
        "cpu-mutex",
        "cpuonly",
        "xformers-other-torch",
        "triton-mismatch",
        "triton-missing",
        "no-pytorch",
    ],
)
def test_violation_names_the_record(records: tuple[Record, ...], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate(solved(records), KB, T121)
    assert message in info.value.message
    assert isinstance(info.value, SolveError) and info.value.return_code == 1
    assert "nothing was written" in info.value.hints[0]


def test_known_issue_rule_is_a_violation() -> None:
    """torch 2.3.1 + xformers 0.0.27 (its own build) passes the build checks but is F1."""
    pt = dataclasses.replace(
        PT, version="2.3.1", build="py3.10_cuda12.1_cudnn8.9.2_0", depends=("torchtriton 2.3.1",)
    )
    xf = rec("xformers", "0.0.27", "py310_cu12.1.0_pyt2.3.1", "xformers", ("pytorch 2.3.1.*",))
    records = (
        rec("python", "3.10.14", "hd12c33a_0_cpython", "conda-forge"),
        pt,
        xf,
        rec("torchtriton", "2.3.1", "py310"),
    )
    found = violations(solved(records), KB, T121)
    assert [v.split(" ", 1)[0] for v in found] == ["F1"]


CF_PT = rec(
    "pytorch",
    "2.10.0",
    "cuda129_mkl_py312_h8f3b5e1_300",
    "conda-forge",
    ("__cuda", "python >=3.12,<3.13.0a0", "triton ==3.6.0"),
)
CF_XF = rec(
    "xformers",
    "0.0.34",
    "cuda_129py310hf55b5f2_0",
    "conda-forge",
    ("pytorch >=2.10,<2.11.0a0", "pytorch * cuda*"),
)
CF = (
    rec("python", "3.12.5", "h2ad013b_0_cpython", "conda-forge"),
    CF_PT,
    CF_XF,
    rec("triton", "3.6.0", "cuda129py312h5b1c2a3_0", "conda-forge"),
)


def test_conda_forge_stack_passes() -> None:
    assert violations(solved(CF), KB, T129) == []


@pytest.mark.parametrize(
    ("xformers", "message"),
    [
        (
            dataclasses.replace(CF_XF, depends=("pytorch >=2.9,<2.10.0a0", "pytorch * cuda*")),
            "depends on 'pytorch >=2.9,<2.10.0a0', which excludes pytorch 2.10.0",
        ),
        (
            dataclasses.replace(
                CF_XF,
                build="cpu_py310h0a1b2c3_0",
                depends=("pytorch >=2.10,<2.11.0a0", "pytorch * cpu*"),
            ),
            "xformers 0.0.34 cpu_py310h0a1b2c3_0 (conda-forge) is not a CUDA build",
        ),
        (
            dataclasses.replace(CF_XF, depends=("python >=3.10",)),
            "does not pin pytorch, so it cannot be proven built for it",
        ),
    ],
    ids=["torch-range-excludes", "cpu-xformers", "no-torch-pin"],
)
def test_conda_forge_xformers_violations(xformers: Record, message: str) -> None:
    with pytest.raises(
        ValidationError,
        match=message.replace("(", r"\(")
        .replace(")", r"\)")
        .replace("*", r"\*")
        .replace(".", r"\."),
    ):
        validate(solved(replace(CF, xformers)), KB, T129)


@pytest.mark.parametrize(
    "spec",
    [
        "xformers~=0.0.28",
        "xformers[version='>=0.0.28']",
        "xformers>=0.0.28",
        "xformers 0.0.28.post3",
        "conda-forge/linux-64::xformers",
        "xformers",
    ],
    ids=["compatible-release", "bracket", "range", "space", "subdir-channel", "bare"],
)
def test_xformers_requested_in_any_spec_form(spec: str) -> None:
    records = tuple(r for r in GOOD if r.name != "xformers")
    assert violations(solved(records, EnvSpec(None, [], [Dep(spec)])), KB, T121) == [
        "the solution has no xformers, but the spec asks for it"
    ]


def test_missing_xformers_only_a_violation_when_requested() -> None:
    records = tuple(r for r in GOOD if r.name != "xformers")
    assert violations(solved(records), KB, T121) == []
    spec = EnvSpec(None, [], [Dep("xformers::xformers=0.0.28.post3=py311_cu12.1.0_pyt2.5.1")])
    assert violations(solved(records, spec), KB, T121) == [
        "the solution has no xformers, but the spec asks for it"
    ]


# ----------------------------------------------------------------------------- spec matching

CASES = [
    (">=12.1,<12.2", "12.1", True),
    (">=12.1,<12.2", "12.2", False),
    (">=12.0,<13.0", "12.4", True),
    ("2.5.1.*", "2.5.1", True),
    ("2.5.1.*", "2.5.10", False),
    ("3.1.0", "3.1.0", True),
    ("3.1.0", "3.1.1", False),
    ("1.0", "1.0", True),
    ("==3.6.0", "3.6.0", True),
    (">=2.10,<2.11.0a0", "2.10.0", True),
    (">=2.10,<2.11.0a0", "2.11.0", False),
    (">=3.11,<3.12.0a0", "3.12.0", False),
    ("*", "0.1", True),
    ("2.4.*|2.5.*", "2.5.1", True),
    ("!=2.5.1", "2.5.1", False),
    ("<2024.1", "2023.2.0", True),
    # not PEP 440: openssl-style letters, conda's dev/post ordering
    (">=1.1.1a", "1.1.1w", True),
    ("<1.1.1a", "1.1.1w", False),
    ("1.1.1w", "1.1.1w", True),
    (">=1.1.1a,<1.1.2", "1.1.1w", True),
    ("<1.0", "1.0.dev1", True),
    (">1.0", "1.0.post1", True),
    (">=2.5.1", "2.5.1a1", False),
]


@pytest.mark.parametrize(("spec", "version", "ok"), CASES, ids=[f"{s} {v}" for s, v, _ in CASES])
def test_version_matches_agrees_with_rattler(spec: str, version: str, ok: bool) -> None:
    assert version_matches(spec, version) is ok
    assert conda_version_matches(spec, version) is ok, "the comparison without py-rattler"
    rattler = pytest.importorskip("rattler")
    assert rattler.VersionSpec(spec).matches(rattler.Version(version)) is ok


@pytest.mark.parametrize(
    ("dep", "ok"),
    [
        ("pytorch * cuda*", True),
        ("pytorch * cpu*", False),
        ("pytorch >=2.10 cuda129*", True),
        ("torch 2.10.0", False),
    ],
    ids=["build-glob", "build-glob-miss", "version-and-build", "other-name"],
)
def test_dep_admits(dep: str, ok: bool) -> None:
    assert dep_admits(dep, CF_PT) is ok


# ----------------------------------------------------------------------------- unsolvable


def test_unsolvable_hint_for_python_without_xformers_build() -> None:
    spec = EnvSpec(
        None,
        ["pytorch", "nvidia", "xformers"],
        [Dep("python=3.12"), Dep("pytorch-cuda=12.1"), Dep("xformers")],
    )
    text = "Cannot solve the request because of: xformers * cannot be installed because ..."
    hints = unsolvable_hints(text, spec, T121, KB)
    assert hints[0] == "xformers-channel builds exist only for python 3.9–3.11; use --python 3.11"
    err = explain_unsolvable(UnsolvableError(text), spec, T121, KB)
    assert err.message == text and err.hints[0] == hints[0]


def test_unsolvable_hint_for_missing_cuda() -> None:
    spec = EnvSpec(None, ["conda-forge"], [Dep("pytorch=*=cuda*"), Dep("cuda-version=12.9")])
    hints = unsolvable_hints("nothing provides __cuda needed by pytorch", spec, T129, KB)
    assert any("__cuda=12.9" in h for h in hints)

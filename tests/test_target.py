"""The target module: one CUDA parser, one reading of a file's pins, structured virtual
packages; and `solve -f` / `create -f` deciding the same target for the same file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from conda_unsloth import knowledge
from conda_unsloth.errors import SpecError, UsageError
from conda_unsloth.host import Host
from conda_unsloth.spec import Dep, EnvSpec
from conda_unsloth.target import (
    CudaFrom,
    MatchSpec,
    Target,
    VirtualPackage,
    exact_version,
    file_pins,
    normalize_arch,
    parse_cuda,
    parse_spec,
    split_archs,
    target_from_spec,
)
from tests.channels import write_conda_forge_profile
from tests.conftest import Result

KB = knowledge.load()
NO_GPU = Host(platform="linux-64", glibc="2.36")


@pytest.mark.parametrize(
    ("given", "want"), [("12.1", "12.1"), (" 12.4 ", "12.4"), ("9.2", "9.2"), ("12.01", "12.1")]
)
def test_parse_cuda_accepts_major_minor(given: str, want: str) -> None:
    assert parse_cuda(given, "--cuda") == want


@pytest.mark.parametrize("bad", ["１２.４", "12", "12.x", "v12.1", "12.1.0", "", "1 2.1", "١٢.١"])
def test_parse_cuda_refuses_anything_else_naming_the_source(bad: str) -> None:
    """ASCII digits only: `\\d` would take full-width or Arabic-Indic digits."""
    with pytest.raises(UsageError, match=r"^CONDA_OVERRIDE_CUDA=.* is not a CUDA version"):
        parse_cuda(bad, "CONDA_OVERRIDE_CUDA")


@pytest.mark.parametrize(
    ("given", "want"), [("8.0", "8.0"), ("sm_90", "9.0"), ("sm90", "9.0"), ("120", "12.0")]
)
def test_arch_spellings(given: str, want: str) -> None:
    assert normalize_arch(given) == want


def test_gpu_arch_lists_are_split_and_deduplicated() -> None:
    assert split_archs(["7.0,8.0", "9.0", "sm_80"]) == ("7.0", "8.0", "9.0")
    with pytest.raises(UsageError, match="--gpu-arch '８.0'"):
        split_archs(["８.0"])
    with pytest.raises(UsageError, match="--gpu-arch ''"):
        split_archs([""])
    # a list with a hole in it is refused, as --partitions a,,b is (`,` planned no arch at all)
    for holey in (",", "8.0,,9.0", "7.0,", " , "):
        with pytest.raises(UsageError, match="has an empty item"):
            split_archs(["9.0", holey])


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ("pytorch-cuda=12.1", MatchSpec("pytorch-cuda", "12.1")),
        ("pytorch=2.5.1=py3.11_cuda12.1_*", MatchSpec("pytorch", "2.5.1", "py3.11_cuda12.1_*")),
        ("pytorch::pytorch=2.5.1", MatchSpec("pytorch", "2.5.1", channel="pytorch")),
        (
            "conda-forge/linux-64::python 3.11 h1_0",
            MatchSpec("python", "3.11", "h1_0", "conda-forge", "linux-64"),
        ),
        ("cuda-version>=12.6,<13", MatchSpec("cuda-version", ">=12.6,<13")),
        ("cuda-version ==12.6", MatchSpec("cuda-version", "12.6")),
        ("cuda-version==12.6", MatchSpec("cuda-version", "12.6")),
        ("xformers[version='>=0.0.28']", MatchSpec("xformers", ">=0.0.28")),
        ("pip", MatchSpec("pip")),
    ],
)
def test_match_spec_forms(spec: str, want: MatchSpec) -> None:
    assert parse_spec(spec) == want


@pytest.mark.parametrize(
    ("version", "want"),
    [
        ("12.1", "12.1"),
        ("==12.6", "12.6"),
        ("12.6.*", "12.6"),
        ("12.6.0", "12.6"),
        (">=12.6,<13", None),
    ],
)
def test_exact_cuda_pins(version: str, want: str | None) -> None:
    assert exact_version(version) == want


def _spec(*deps: str, channels: tuple[str, ...] = ("conda-forge",)) -> EnvSpec:
    return EnvSpec(None, list(channels), [Dep(d) for d in deps])


def test_a_files_pins_are_read_once() -> None:
    pins = file_pins(_spec("python=3.12", "pytorch", "cuda-version=12.6"), "e.yml", "linux-64")
    assert (pins.profile, pins.cuda, pins.python) == ("conda-forge", "12.6", "3.12")
    pins = file_pins(_spec("pytorch-cuda>=12.0"), "e.yml", "linux-64")
    assert (pins.profile, pins.cuda, pins.cuda_spec) == ("pytorch", None, "pytorch-cuda>=12.0")
    with pytest.raises(SpecError, match="is for platform osx-arm64"):
        file_pins(_spec("conda-forge/osx-arm64::python"), "e.yml", "linux-64")


def test_target_from_a_file_flag_beats_pin_beats_solve() -> None:
    env = _spec("python=3.12", "pytorch", "cuda-version=12.6")
    t, prof, _, _ = target_from_spec(env, "e.yml", NO_GPU, KB)
    assert (t.cuda, t.cuda_from, prof) == ("12.6", CudaFrom.FILE, "conda-forge")
    assert t.cuda_source == "'cuda-version=12.6' in e.yml"
    t, _, _, _ = target_from_spec(env, "e.yml", NO_GPU, KB, cuda="12.9")
    assert (t.cuda, t.cuda_from) == ("12.9", CudaFrom.FLAG)
    ranged = _spec("pytorch", "cuda-version>=12.6,<13")
    t, _, _, _ = target_from_spec(ranged, "e.yml", NO_GPU, KB)
    assert t.cuda_from is CudaFrom.SOLVE and "12.6" in t.cuda_allowed
    with pytest.raises(UsageError, match="--profile 'bogus' is not a profile"):
        target_from_spec(env, "e.yml", NO_GPU, KB, profile="bogus")


def test_virtual_packages_are_structured() -> None:
    t = Target("linux-64", "12.1", glibc="2.36")
    assert t.virtual_packages()[0] == VirtualPackage("__cuda", "12.1")
    assert [str(v) for v in t.virtual_packages()] == [
        "__cuda=12.1=0",
        "__linux=5.15=0",
        "__glibc=2.36=0",
        "__unix=0=0",
    ]
    assert Target("linux-64", "12.1", driver_cuda="12.4").virtual_packages()[0].version == "12.4"


# ----------------------------------------------------------------------------- the CLI


@pytest.fixture
def cf126(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    pytest.importorskip("rattler")
    monkeypatch.setenv("CONDA_UNSLOTH_CACHE", str(tmp_path / "cache"))
    return write_conda_forge_profile(tmp_path / "cf", python="3.12", cuda="12.6")


def test_solve_f_and_create_f_decide_the_same_target(
    cli: Callable[..., Result], cf126: list[str], tmp_path: Path
) -> None:
    env = tmp_path / "env.yml"
    env.write_text(
        f"channels:\n  - {cf126[0]}\ndependencies:\n  - python=3.12\n  - pytorch\n"
        "  - cuda-version=12.6\n  - xformers\n"
    )
    solved = cli("solve", "-f", str(env), "--json")
    assert solved.code == 0, solved.err
    created = cli("create", "-f", str(env), "-p", str(tmp_path / "p"), "--dry-run", "--json")
    assert created.code == 0, created.err
    a, b = json.loads(solved.out), json.loads(created.out)
    assert a["target"]["cuda"] == b["target"]["cuda"] == "12.6"
    assert (
        a["target"]["cuda_source"]
        == b["target"]["cuda_source"]
        == "'cuda-version=12.6' in env.yml"
    )
    assert (
        a["checked"] == b["checked"] and a["checked"][0] == "pytorch 2.10.0 is a CUDA 12.6 build"
    )


def test_create_f_with_a_bogus_profile_is_one_line(
    cli: Callable[..., Result], tmp_path: Path
) -> None:
    env = tmp_path / "env.yml"
    env.write_text("channels:\n  - conda-forge\ndependencies:\n  - python=3.12\n")
    r = cli("create", "-f", str(env), "-p", str(tmp_path / "p"), "--profile", "bogus", "--dry-run")
    assert r.code == 2
    assert r.err.splitlines()[0] == (
        "conda-unsloth: error: --profile 'bogus' is not a profile; choose one of pytorch, conda-forge"
    )
    assert "Traceback" not in r.err and not (tmp_path / "p").exists()

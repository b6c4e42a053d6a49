"""One env for a fleet of GPU types: `--gpu-arch 7.0,8.0,9.0` plans for every arch at once.

Each arch is checked against the chosen pytorch build's arch list and the chosen xformers
build's (compat.yaml, with their sources); a stack that misses one arch is passed over with a
notice naming that arch, and a plan no stack can serve is refused naming the arch that fails.
The expectations below are read from the knowledge's sources, not from the planner: pytorch
2.5.1's CUDA 12.1 builds ship sm_50..sm_90; conda-forge's CUDA 13.0 builds start at sm_75;
xformers 0.0.34 on conda-forge ships 8.0 8.9 10.0 12.0+PTX (no sm_90); 0.0.32.post2 ships
5.0..12.0 but has the Blackwell issue F8."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Result

Cli = Callable[..., Result]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`env` writes environment.yml into the current directory: the test's, not the checkout."""
    monkeypatch.chdir(tmp_path)


def plan(cli: Cli, *argv: str) -> Result:
    return cli("env", *argv, "--json")


def refuse(cli: Cli, *argv: str) -> str:
    """The first line of the error of a plan that is refused (exit 2)."""
    r = cli("env", *argv)
    assert r.code == 2, r.out
    return r.err.splitlines()[0]


def versions(doc: dict[str, object]) -> dict[str, str]:
    conda = doc["conda"]
    assert isinstance(conda, list)
    return {p["name"]: p["version"] for p in conda}


@pytest.mark.parametrize("archs", ["7.0,8.0,9.0", "9.0,7.0,8.0", "6.0,9.0"])
def test_one_plan_serves_every_arch_of_the_fleet(cli: Cli, archs: str) -> None:
    r = plan(cli, "--gpu-arch", archs)
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    # normalized, in the order given
    assert doc["target"]["gpu_archs"] == archs.split(",")
    assert versions(doc)["pytorch"] == "2.5.1" and doc["target"]["cuda"] == "12.1"
    assert not any("chose pytorch" in n for n in doc["notices"])


def test_the_repeated_and_comma_forms_are_the_same_plan(cli: Cli) -> None:
    a = json.loads(plan(cli, "--gpu-arch", "7.0,sm_80", "--gpu-arch", "9.0").out)
    b = json.loads(plan(cli, "--gpu-arch", "7.0,8.0,9.0").out)
    assert a["target"]["gpu_archs"] == b["target"]["gpu_archs"] == ["7.0", "8.0", "9.0"]
    assert a["conda"] == b["conda"]


@pytest.mark.parametrize("archs", ["8.0,12.0", "12.0,8.0"])
def test_pytorch_without_kernels_for_one_arch_refuses_naming_that_arch(
    cli: Cli, archs: str
) -> None:
    first = refuse(cli, "--gpu-arch", archs)
    assert first.startswith(
        "conda-unsloth: error: GPU sm_120 (Blackwell (RTX 50xx, RTX PRO 6000)) is not supported"
    )
    assert "sm_80" not in first


@pytest.mark.parametrize("archs", ["8.0,7.0", "7.0,8.0"])
def test_a_cuda_whose_builds_dropped_one_arch_refuses_it_and_names_a_cuda_that_has_it(
    cli: Cli, archs: str
) -> None:
    first = refuse(cli, "--profile", "conda-forge", "--cuda", "13.0", "--gpu-arch", archs)
    assert first.startswith("conda-unsloth: error: GPU sm_70 (Volta (V100)) is not supported:")
    assert "builds ship kernels for 7.5 8.0 8.6 9.0 10.0 11.0 12.0+PTX (F6)" in first
    assert first.endswith("nearest valid: --cuda 12.9")
    ok = plan(cli, "--profile", "conda-forge", "--cuda", "12.9", "--gpu-arch", archs)
    assert ok.code == 0, ok.err
    assert json.loads(ok.out)["target"]["gpu_archs"] == archs.split(",")


def test_xformers_without_kernels_for_one_arch_is_passed_over_with_a_notice(cli: Cli) -> None:
    alone = json.loads(
        plan(cli, "--profile", "conda-forge", "--cuda", "12.9", "--gpu-arch", "8.0").out
    )
    assert (versions(alone)["pytorch"], versions(alone)["xformers"]) == ("2.10.0", "0.0.34")
    fleet = json.loads(
        plan(cli, "--profile", "conda-forge", "--cuda", "12.9", "--gpu-arch", "8.0,9.0").out
    )
    assert (versions(fleet)["pytorch"], versions(fleet)["xformers"]) == ("2.8.0", "0.0.32.post2")
    assert (
        "chose pytorch 2.8.0 + xformers 0.0.32.post2 for this GPU: pytorch 2.10.0 + xformers "
        "0.0.34 has F6 (xformers 0.0.34 (conda-forge, CUDA 12.9) ships kernels for 8.0 8.9 "
        "10.0 12.0+PTX; not for sm_90)"
    ) in fleet["notices"]


def test_a_fleet_no_stack_serves_is_refused(cli: Cli) -> None:
    """H100 + B200 on conda-forge CUDA 12.9: xformers 0.0.34 has no sm_90 kernels and
    0.0.32.post2 has the Blackwell issue F8, so no one env serves both."""
    first = refuse(cli, "--profile", "conda-forge", "--cuda", "12.9", "--gpu-arch", "9.0,10.0")
    assert first.startswith(
        "conda-unsloth: error: no consistent stack on profile conda-forge for CUDA 12.9:"
    )
    assert "not for sm_90" in first
    for arch in ("9.0", "10.0"):  # each alone has a plan
        assert (
            plan(cli, "--profile", "conda-forge", "--cuda", "12.9", "--gpu-arch", arch).code == 0
        )

"""Selection: every combination the knowledge base allows yields a consistent stack; the
known-bad requests are refused with the reason and a nearest alternative that itself works."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from conda_unsloth.errors import HostError, SelectionError, UnslothError, UsageError
from conda_unsloth.host import Gpu, Host
from conda_unsloth.select import Request, select
from tests.conftest import Result
from tests.selection import COMBOS, KB, check_invariants
from tests.typed import present

NO_GPU = Host(platform="linux-64", glibc="2.36")


def gpu_host(driver_cuda: str, arch: str = "9.0") -> Host:
    return Host(
        platform="linux-64",
        driver_version="550.54.14",
        driver_cuda=driver_cuda,
        gpus=(Gpu(0, "test GPU", arch),),
        glibc="2.36",
        source="nvidia-smi",
    )


@pytest.mark.parametrize(
    ("profile", "cuda", "python"), COMBOS, ids=[f"{a}-cu{b}-py{c}" for a, b, c in COMBOS]
)
def test_every_allowed_combination_is_consistent_or_refused(
    profile: str, cuda: str, python: str
) -> None:
    try:
        sel = select(Request(profile=profile, cuda=cuda, python=python), NO_GPU, KB)
    except SelectionError as exc:
        # a refusal must say why and offer an alternative that itself selects cleanly
        assert "nearest valid:" in exc.message
        flags = exc.message.split("nearest valid: ", 1)[1]
        check_invariants(select(_request_from_flags(flags), NO_GPU, KB))
        return
    check_invariants(sel)


@pytest.mark.parametrize("profile", list(KB.profiles))
def test_each_profile_cuda_has_at_least_one_stack(profile: str) -> None:
    for cuda in KB.profiles[profile].cudas:
        check_invariants(select(Request(profile=profile, cuda=cuda), NO_GPU, KB))


def _request_from_flags(flags: str) -> Request:
    args = shlex.split(flags)
    values = dict(zip(args[::2], args[1::2], strict=True))
    return Request(
        profile=values.get("--profile"),
        cuda=values.get("--cuda"),
        python=values.get("--python"),
        torch=values.get("--torch"),
    )


def test_default_without_gpu_is_cuda_12_1_with_a_notice() -> None:
    sel = select(Request(), NO_GPU, KB)
    assert (sel.profile.name, sel.cuda, sel.python) == ("pytorch", "12.1", "3.11")
    assert (sel.pytorch.version, sel.xformers.version) == ("2.5.1", "0.0.28.post3")
    assert any("no NVIDIA driver found" in n for n in sel.notices)


@pytest.mark.parametrize(
    ("driver_cuda", "expected"),
    [("12.4", "12.1"), ("12.2", "12.1"), ("11.8", "11.8"), ("13.0", "12.1")],
    ids=["driver-12.4", "driver-12.2", "driver-11.8", "driver-13.0"],
)
def test_default_cuda_follows_the_driver(driver_cuda: str, expected: str) -> None:
    assert select(Request(), gpu_host(driver_cuda), KB).cuda == expected


REFUSALS = [
    ("torch-2.3.1-seed", Request(torch="2.3.1"), SelectionError, ["F1", "0.0.27"], "--torch 2.4"),
    ("xformers-0.0.27", Request(xformers="0.0.27"), SelectionError, ["F1"], "--torch"),
    ("xformers-0.0.27.post1", Request(xformers="0.0.27.post1"), SelectionError, ["F1"], "--torch"),
    (
        "python-3.12-xformers-channel",
        Request(python="3.12"),
        SelectionError,
        ["python 3.12", "F14"],
        "--python 3.11",
    ),
    (
        "torch-too-old-for-unsloth",
        Request(torch="2.2.0"),
        SelectionError,
        ["torch >= 2.4.0"],
        "--torch 2.4",
    ),
    (
        "cuda-not-in-profile",
        Request(cuda="12.9"),
        SelectionError,
        ["CUDA 12.9 is not offered"],
        "--profile conda-forge --cuda 12.9",
    ),
    (
        "torch-not-in-profile",
        Request(torch="2.10.0"),
        SelectionError,
        ["profile conda-forge has it"],
        "--torch 2.5.1",
    ),
    (
        "blackwell-pytorch-profile",
        Request(gpu_archs=("10.0",)),
        SelectionError,
        ["sm_100", "Blackwell"],
        "--profile conda-forge",
    ),
    (
        "blackwell-rtx-pytorch-profile",
        Request(gpu_archs=("sm_120",)),
        SelectionError,
        ["sm_120"],
        "--profile conda-forge",
    ),
    (
        "cu13-below-sm75",
        Request(profile="conda-forge", cuda="13.0", gpu_archs=("7.0",)),
        SelectionError,
        ["sm_70"],
        "--cuda 12.9",
    ),
]


@pytest.mark.parametrize(
    ("req", "exc_type", "says", "suggests"),
    [r[1:] for r in REFUSALS],
    ids=[r[0] for r in REFUSALS],
)
def test_known_bad_requests_are_refused(
    req: Request, exc_type: type[UnslothError], says: list[str], suggests: str
) -> None:
    with pytest.raises(exc_type) as exc:
        select(req, NO_GPU, KB)
    for s in says:
        assert s in exc.value.message
    assert suggests in exc.value.message
    assert "\n" not in exc.value.message


def test_cuda_newer_than_driver_is_refused_with_the_drivers_numbers() -> None:
    with pytest.raises(HostError) as exc:
        select(Request(cuda="12.4"), gpu_host("12.2"), KB)
    assert (
        "CUDA 12.4 is newer than driver 550.54.14 supports (CUDA 12.2 at most" in exc.value.message
    )
    assert "--cuda 12.1" in exc.value.message


def test_conda_forge_cuda_13_on_old_driver_is_refused() -> None:
    with pytest.raises(HostError, match="--cuda 12.9"):
        select(Request(profile="conda-forge", cuda="13.0"), gpu_host("12.9"), KB)


@pytest.mark.parametrize(
    "req",
    [
        Request(cuda="12.x"),
        Request(cuda="99"),
        Request(python="3"),
        Request(python="three"),
        Request(torch="2.5"),
        Request(xformers="latest"),
        Request(profile="pip"),
        Request(gpu_archs=("hopper",)),
    ],
    ids=[
        "cuda-12.x",
        "cuda-99",
        "python-3",
        "python-word",
        "torch-2-parts",
        "xformers-word",
        "profile-pip",
        "arch-word",
    ],
)
def test_malformed_values_are_usage_errors(req: Request) -> None:
    with pytest.raises(UsageError):
        select(req, NO_GPU, KB)


def test_blackwell_works_on_conda_forge_cuda_12_9() -> None:
    sel = select(
        Request(profile="conda-forge", cuda="12.9", gpu_archs=("12.0",)),
        gpu_host("12.9", "12.0"),
        KB,
    )
    check_invariants(sel)
    assert sel.xformers.version == "0.0.34"


def test_detected_gpu_arch_is_checked() -> None:
    with pytest.raises(SelectionError, match="sm_100"):
        select(Request(), gpu_host("12.4", "10.0"), KB)


# ----------------------------------------------------------------------------- issue 17


def test_conda_forge_cuda_12_6_pairs_are_real() -> None:
    """conda-forge never built xformers 0.0.30 for CUDA 12.6; pytorch 2.7.1 (build 0, the only
    cuda126 2.7.1) pairs with xformers 0.0.31, pytorch 2.6.0 with 0.0.29.post1."""
    sel = select(Request(profile="conda-forge", cuda="12.6"), NO_GPU, KB)
    check_invariants(sel)
    assert (sel.pytorch.version, sel.xformers.version, sel.pytorch.triton) == (
        "2.7.1",
        "0.0.31",
        "3.3.0",
    )
    old = select(Request(profile="conda-forge", cuda="12.6", torch="2.6.0"), NO_GPU, KB)
    assert (old.xformers.version, old.pytorch.triton) == ("0.0.29.post1", "3.2.0")
    with pytest.raises(SelectionError) as exc:
        select(Request(profile="conda-forge", cuda="12.6", torch="2.7.0"), NO_GPU, KB)
    assert (
        "no xformers build on profile conda-forge is made for pytorch 2.7.0" in exc.value.message
    )
    assert "--torch 2.7.1" in exc.value.message
    row = KB.profiles["conda-forge"].xformers_row("0.0.30")
    assert row is not None and row.cuda == ("12.9",)


def test_companion_requires_python_refuses_python_3_10_on_conda_forge() -> None:
    """unsloth 2026.10.9 pins trl 1.15.0, whose Requires-Python is >=3.11."""
    with pytest.raises(SelectionError) as exc:
        select(Request(profile="conda-forge", cuda="12.9", python="3.10"), NO_GPU, KB)
    assert "trl 1.15.0 requires Python >=3.11" in exc.value.message
    assert "nearest valid: --profile conda-forge --cuda 12.9 --python 3.11" in exc.value.message


@pytest.mark.parametrize(
    ("profile", "cuda", "python"), COMBOS, ids=[f"{a}-cu{b}-py{c}" for a, b, c in COMBOS]
)
def test_every_pin_admits_the_planned_python(profile: str, cuda: str, python: str) -> None:
    """For every (profile, CUDA, python) the knowledge allows, the Requires-Python of unsloth
    and of each companion pin admits the env's python."""
    try:
        sel = select(Request(profile=profile, cuda=cuda, python=python), NO_GPU, KB)
    except SelectionError:
        return
    pins = {"unsloth": sel.unsloth.version, **sel.unsloth.companions}
    rows = {q.name: q for q in sel.unsloth.requires_python}
    assert set(rows) == set(pins)
    for name, pin in pins.items():
        assert rows[name].version == pin
        spec = rows[name].python
        assert not spec or Version(sel.python) in SpecifierSet(spec), (name, pin, spec)


@pytest.mark.parametrize(
    ("req", "says", "suggests"),
    [
        (
            Request(cuda="11.8", gpu_archs=("10.3",)),
            "needs CUDA >= 12.9",
            "--profile conda-forge --cuda 12.9",
        ),
        (Request(cuda="12.4", gpu_archs=("10.3",)), "sm_103", "--profile conda-forge --cuda 12.9"),
        (
            Request(profile="conda-forge", cuda="12.6", gpu_archs=("12.1",)),
            "needs CUDA >= 12.9",
            "--cuda 12.9",
        ),
    ],
    ids=["b300-cu118", "b300-cu124", "gb10-cu126"],
)
def test_new_archs_are_never_covered_by_old_ptx(req: Request, says: str, suggests: str) -> None:
    with pytest.raises(SelectionError) as exc:
        select(req, NO_GPU, KB)
    assert says in exc.value.message and "(F6)" in exc.value.message
    assert exc.value.message.endswith(f"nearest valid: {suggests}")
    alt = _request_from_flags(suggests)
    check_invariants(
        select(
            Request(profile=alt.profile or req.profile, cuda=alt.cuda, gpu_archs=req.gpu_archs),
            NO_GPU,
            KB,
        )
    )


def test_thor_needs_cuda_13_and_no_xformers_serves_it() -> None:
    """sm_110 came with CUDA 13.0, whose pytorch lists it; conda-forge xformers 0.0.34 has no
    kernels for it, so nothing in the knowledge base serves it."""
    with pytest.raises(SelectionError) as exc:
        select(Request(profile="conda-forge", cuda="12.9", gpu_archs=("11.0",)), NO_GPU, KB)
    assert "needs CUDA >= 13.0" in exc.value.message
    assert exc.value.message.endswith("nearest valid: none in the knowledge base")
    with pytest.raises(SelectionError) as exc:
        select(Request(profile="conda-forge", cuda="13.0", gpu_archs=("11.0",)), NO_GPU, KB)
    assert "xformers 0.0.34" in exc.value.message and "not for sm_110" in exc.value.message


@pytest.mark.parametrize("arch", ["10.3", "12.1"])
def test_b300_and_gb10_plan_on_cuda_12_9(arch: str) -> None:
    sel = select(Request(profile="conda-forge", cuda="12.9", gpu_archs=(arch,)), NO_GPU, KB)
    check_invariants(sel)
    assert sel.xformers.version == "0.0.34"


@pytest.mark.parametrize("arch", ["8.7", "sm_52", "13.0"])
def test_an_unknown_arch_is_refused(arch: str) -> None:
    with pytest.raises(SelectionError) as exc:
        select(Request(gpu_archs=(arch,)), NO_GPU, KB)
    assert "is not in the knowledge base's architecture table" in exc.value.message


def test_h100_is_repicked_away_from_xformers_0_0_34_with_a_notice() -> None:
    """conda-forge xformers 0.0.34 ships no sm_90 kernels: the H100 plan takes pytorch 2.8.0
    and xformers 0.0.32.post2 (whose list has 9.0) and says why."""
    sel = select(Request(profile="conda-forge", cuda="12.9"), gpu_host("12.9", "9.0"), KB)
    check_invariants(sel)
    assert (sel.pytorch.version, sel.xformers.version) == ("2.8.0", "0.0.32.post2")
    assert any(
        n.startswith("chose pytorch 2.8.0 + xformers 0.0.32.post2 for this GPU")
        and "0.0.34" in n
        and "not for sm_90" in n
        for n in sel.notices
    ), sel.notices
    with pytest.raises(SelectionError) as exc:
        select(Request(profile="conda-forge", cuda="13.0", gpu_archs=("9.0",)), NO_GPU, KB)
    assert "xformers 0.0.34" in exc.value.message and "not for sm_90" in exc.value.message
    assert "nearest valid: --profile conda-forge --cuda 12.9" in exc.value.message
    assert "--torch 2.8.0" in exc.value.message


def test_xformers_arch_lists_from_the_ci_config_of_each_build() -> None:
    cf = KB.profiles["conda-forge"]
    assert "9.0" in present(cf.xformers_row("0.0.32.post2"), "0.0.32.post2").archs.split()
    assert "9.0" not in present(cf.xformers_row("0.0.34"), "0.0.34").archs
    xf = KB.profiles["pytorch"].xformers_row("0.0.28.post3")
    assert xf is not None
    assert xf.archs_for("11.8") == "6.0+PTX 7.0 7.5 8.0+PTX"
    assert xf.archs_for("12.1").endswith("9.0a")
    assert KB.profiles["pytorch"].xformers_build_cuda("12.4") == "12.1"
    assert present(
        KB.profiles["pytorch"].xformers_row("0.0.26.post1"), "0.0.26.post1"
    ).archs.endswith(" 9.0")


def test_blackwell_never_gets_xformers_0_0_32_post2() -> None:
    """Known issue F8 (broken FA3 dispatch on compute capability >= 10.0) is applied."""
    with pytest.raises(SelectionError) as exc:
        select(
            Request(profile="conda-forge", cuda="12.9", torch="2.8.0", gpu_archs=("12.0",)),
            NO_GPU,
            KB,
        )
    assert "F8" in exc.value.message and "0.0.32.post2" in exc.value.message
    assert "--torch 2.10.0" in exc.value.message
    for arch in ("10.0", "10.3", "12.0", "12.1"):
        sel = select(Request(profile="conda-forge", cuda="12.9", gpu_archs=(arch,)), NO_GPU, KB)
        assert sel.xformers.version == "0.0.34"


@pytest.mark.parametrize(
    ("req", "suggests"),
    [
        (Request(cuda="11.7"), "--cuda 11.8"),
        (Request(cuda="12.0"), "--cuda 12.1"),
        (Request(cuda="12.2"), "--cuda 12.1"),
        (Request(cuda="12.3"), "--cuda 12.4"),
        (Request(profile="conda-forge", cuda="12.8"), "--cuda 12.9"),
        (Request(cuda="13.1"), "--profile conda-forge --cuda 13.0"),
    ],
    ids=["11.7", "12.0", "12.2", "12.3", "cf-12.8", "13.1"],
)
def test_nearest_cuda_is_the_closest_of_the_same_major(req: Request, suggests: str) -> None:
    with pytest.raises(SelectionError) as exc:
        select(req, NO_GPU, KB)
    assert exc.value.message.endswith(f"nearest valid: {suggests}")


def test_nearest_cuda_is_one_the_driver_runs() -> None:
    with pytest.raises(SelectionError) as exc:
        select(Request(profile="conda-forge", cuda="12.8"), gpu_host("12.8"), KB)
    assert exc.value.message.endswith("nearest valid: --cuda 12.6")


def test_unconfirmed_builds_are_marked_in_the_plan() -> None:
    """The xformers channel's 0.0.28.post3 py311 cu12.1.0 build has no public record: the plan
    says so; a plan of builds with records says nothing."""
    sel = select(Request(cuda="12.1"), NO_GPU, KB)
    assert [(e.name, e.build) for e in sel.unconfirmed] == [
        ("xformers", "py311_cu12.1.0_pyt2.5.1")
    ]
    assert any(
        "xformers 0.0.28.post3=py311_cu12.1.0_pyt2.5.1" in n and "unconfirmed" in n
        for n in sel.notices
    )
    assert sel.to_json()["unconfirmed"][0]["status"] == "unconfirmed"
    confirmed = select(
        Request(profile="conda-forge", cuda="12.9", torch="2.8.0", python="3.12"), NO_GPU, KB
    )
    assert confirmed.unconfirmed == () and confirmed.to_json()["unconfirmed"] == []


def test_env_json_and_notice_mark_unconfirmed_builds(cli: Callable[..., Result]) -> None:
    r = cli("env", "--cuda", "12.1", "--json", "--dry-run")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert [(u["name"], u["build"], u["status"]) for u in doc["unconfirmed"]] == [
        ("xformers", "py311_cu12.1.0_pyt2.5.1", "unconfirmed")
    ]
    assert doc["unconfirmed"][0]["source"]
    text = cli("env", "--cuda", "12.1", "--dry-run")
    assert (
        "notice: xformers 0.0.28.post3=py311_cu12.1.0_pyt2.5.1 (xformers) is unconfirmed: "
        in text.err
    )
    ok = cli(
        "env",
        "--profile",
        "conda-forge",
        "--torch",
        "2.8.0",
        "--python",
        "3.12",
        "--json",
        "--dry-run",
    )
    assert json.loads(ok.out)["unconfirmed"] == []

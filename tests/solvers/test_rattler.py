"""The rattler backend on real local channels: the CUDA build of the target wins at every CUDA
of both profiles (also against a CPU build with a higher build number or version), the
solver's own explanation leads an unsatisfiable result, and bad channels are clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conda_unsloth.errors import SolveError, SpecError, UnsolvableError
from conda_unsloth.solvers.rattler import (
    CHANNEL_ALIAS,
    RattlerSolver,
    cache_dir,
    channel_url,
    channel_urls,
    pip_packages,
    pip_unpinned,
    rewrite_spec,
)
from conda_unsloth.spec import Dep, EnvSpec
from conda_unsloth.target import CudaFrom, Target, VirtualPackage
from conda_unsloth.validate import ValidationError, explain_unsolvable, validate
from tests.typed import present

from .conftest import KB, Planned

pytest.importorskip("rattler")


def _target(cuda: str, platform: str = "linux-64") -> Target:
    return Target(platform, cuda, (), None, "2.36", CudaFrom.FLAG)


@pytest.mark.parametrize(
    ("cuda", "pytorch_build", "xformers_build", "pytorch_cuda"),
    [
        ("11.8", "py3.11_cuda11.8_cudnn9.1.0_0", "py311_cu11.8.0_pyt2.5.1", "h7e8668a_5"),
        ("12.1", "py3.11_cuda12.1_cudnn9.1.0_0", "py311_cu12.1.0_pyt2.5.1", "ha16c6d3_6"),
        ("12.4", "py3.11_cuda12.4_cudnn9.1.0_0", "py311_cu12.1.0_pyt2.5.1", "hc786d27_7"),
    ],
    ids=["cuda11.8", "cuda12.1", "cuda12.4"],
)
def test_pytorch_profile_cuda_build_wins(
    planned: Planned,
    pytorch_channels: list[str],
    cuda: str,
    pytorch_build: str,
    xformers_build: str,
    pytorch_cuda: str,
) -> None:
    sel, spec = planned(pytorch_channels, cuda=cuda, python="3.11")
    solved = RattlerSolver().solve(spec, sel.target)
    pt, xf = solved.record("pytorch"), solved.record("xformers")
    assert pt is not None and xf is not None
    assert (pt.version, pt.build, pt.channel_name) == ("2.5.1", pytorch_build, "pytorch")
    assert (xf.version, xf.build, xf.channel_name) == ("0.0.28.post3", xformers_build, "xformers")
    pc = solved.record("pytorch-cuda")
    assert pc is not None and (pc.version, pc.build) == (cuda, pytorch_cuda)
    assert present(solved.record("pytorch-mutex"), "pytorch-mutex").build == "cuda"
    assert present(solved.record("torchtriton"), "torchtriton").version == "3.1.0"
    assert present(solved.record("mkl"), "mkl").version == "2023.2.0"  # mkl<2024.1
    assert f"__cuda={cuda}=0" in solved.virtual_packages
    assert solved.solver.startswith("rattler ")
    assert [p.name for p in solved.pip][:2] == ["unsloth", "unsloth_zoo"]
    assert pt.url.startswith(pytorch_channels[0] + "/linux-64/")
    assert pt.sha256 is not None and len(pt.sha256) == 64 and pt.md5 is not None
    validate(solved, KB, sel.target)  # the intended stack: no exception


def test_conda_forge_profile_cuda_build_beats_newer_cpu_build(
    planned: Planned, conda_forge_channels: list[str]
) -> None:
    sel, spec = planned(conda_forge_channels, profile="conda-forge", cuda="12.9")
    solved = RattlerSolver().solve(spec, sel.target)
    pt = solved.record("pytorch")
    assert pt is not None
    assert (pt.version, pt.build) == ("2.10.0", "cuda129_mkl_py312_h8f3b5e1_300")
    assert present(solved.record("xformers"), "xformers").build == "cuda_129py310hf55b5f2_0"
    assert present(solved.record("triton"), "triton").version == "3.6.0"
    validate(solved, KB, sel.target)


def test_unpinned_cpu_trap_is_caught_by_validation(pytorch_channels: list[str]) -> None:
    """Without the plan's build pins the higher-build-number CPU build wins; validation must
    refuse it, naming the record."""
    spec = EnvSpec(
        None,
        pytorch_channels,
        [Dep("python=3.11"), Dep("pytorch=2.5.1"), Dep("pytorch-cuda=12.1")],
    )
    solved = RattlerSolver().solve(spec, _target("12.1"))
    assert present(solved.record("pytorch"), "pytorch").build == "py3.11_cpu_1"
    with pytest.raises(ValidationError) as info:
        validate(solved, KB, _target("12.1"))
    assert (
        "pytorch 2.5.1 py3.11_cpu_1 (pytorch) is a CPU build; the target is CUDA 12.1"
        in info.value.message
    )
    assert "pytorch-mutex 1.0 cpu (pytorch)" in info.value.message


def test_unpinned_conda_forge_trap_newer_cpu_version(conda_forge_channels: list[str]) -> None:
    spec = EnvSpec(None, conda_forge_channels, [Dep("python=3.12"), Dep("pytorch")])
    solved = RattlerSolver().solve(spec, _target("12.9"))
    with pytest.raises(
        ValidationError,
        match=r"pytorch 2\.11\.0 cpu_mkl_py312_h1c2d3e4_101 \(conda-forge\) is a CPU build",
    ):
        validate(solved, KB, _target("12.9"))


def test_unsatisfiable_leads_with_solver_explanation_then_hint(
    pytorch_channels: list[str],
) -> None:
    """python 3.12 exists for pytorch 2.5.1, but the xformers channel has no py312 build."""
    spec = EnvSpec(
        None,
        pytorch_channels,
        [
            Dep("python=3.12"),
            Dep("pytorch::pytorch=2.5.1=py3.12_cuda12.1_*"),
            Dep("pytorch-cuda=12.1"),
            Dep("xformers::xformers"),
        ],
    )
    target = _target("12.1")
    with pytest.raises(UnsolvableError) as info:
        RattlerSolver().solve(spec, target)
    err = explain_unsolvable(info.value, spec, target, KB)
    assert err.message.startswith("Cannot solve the request because of:")
    assert "xformers" in err.message
    assert (
        err.hints[0] == "xformers-channel builds exist only for python 3.9–3.11; use --python 3.11"
    )


def test_cuda_driver_too_old_is_unsolvable(conda_forge_channels: list[str]) -> None:
    """conda-forge CUDA builds depend on __cuda: a target without it cannot get them."""
    spec = EnvSpec(None, conda_forge_channels, [Dep("python=3.12"), Dep("pytorch=*=cuda*")])

    class NoCudaTarget(Target):
        def virtual_packages(self) -> tuple[VirtualPackage, ...]:
            return tuple(v for v in super().virtual_packages() if v.name != "__cuda")

    t = NoCudaTarget("linux-64", "12.9", glibc="2.36")
    with pytest.raises(UnsolvableError, match="__cuda"):
        RattlerSolver().solve(spec, t)


# ----------------------------------------------------------------------------- channels


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("conda-forge", f"{CHANNEL_ALIAS}/conda-forge"),
        ("pytorch", f"{CHANNEL_ALIAS}/pytorch"),
        ("pytorch/label/nightly", f"{CHANNEL_ALIAS}/pytorch/label/nightly"),
        ("https://example.org/chan/", "https://example.org/chan"),
        ("file:///srv/chan", "file:///srv/chan"),
        ("/srv/chan", "file:///srv/chan"),
    ],
    ids=["name", "pytorch", "label", "https", "file-url", "abs-path"],
)
def test_channel_url(given: str, expected: str) -> None:
    assert channel_url(given) == expected


def test_relative_path_channel_resolves_against_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert channel_url("./local") == (tmp_path / "local").as_uri()


def test_channel_urls_drop_nodefaults_and_expand_defaults(pytorch_channels: list[str]) -> None:
    urls = channel_urls([pytorch_channels[0], "nodefaults", "defaults"], ["linux-64", "noarch"])
    assert urls == [
        pytorch_channels[0],
        "https://repo.anaconda.com/pkgs/main",
        "https://repo.anaconda.com/pkgs/r",
    ]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("pytorch::pytorch=2.5.1", "file:///c/pytorch::pytorch=2.5.1"),
        ("xformers::xformers", "xformers"),
        ("python=3.11", "python=3.11"),
        ("file:///c/pytorch::torchtriton", "file:///c/pytorch::torchtriton"),
    ],
    ids=["name-follows-local-dir", "no-such-channel-dropped", "unqualified", "url-kept"],
)
def test_rewrite_spec(spec: str, expected: str) -> None:
    notes: list[str] = []
    assert rewrite_spec(spec, ["file:///c/pytorch", "file:///c/conda-forge"], notes) == expected
    assert bool(notes) == (spec == "xformers::xformers")


def test_missing_local_channel_is_a_spec_error(tmp_path: Path) -> None:
    spec = EnvSpec(None, [str(tmp_path / "nope")], [Dep("python")])
    with pytest.raises(SpecError, match="does not exist or is not a directory"):
        RattlerSolver().solve(spec, _target("12.1"))


def test_channel_without_noarch_is_a_spec_error(tmp_path: Path) -> None:
    (tmp_path / "c" / "linux-64").mkdir(parents=True)
    (tmp_path / "c" / "linux-64" / "repodata.json").write_text(json.dumps({"packages": {}}))
    spec = EnvSpec(None, [(tmp_path / "c").as_uri()], [Dep("python")])
    with pytest.raises(SpecError, match=r"noarch/repodata\.json is missing"):
        RattlerSolver().solve(spec, _target("12.1"))


def test_corrupt_repodata_is_a_spec_error(tmp_path: Path) -> None:
    from tests.channels import Pkg, write_channel

    chan = write_channel(tmp_path / "c", [Pkg("python", "3.11.9", "hb806964_0_cpython")])
    (chan / "linux-64" / "repodata.json").write_text("{not json")
    spec = EnvSpec(None, [chan.as_uri()], [Dep("python")])
    with pytest.raises(SpecError) as info:
        RattlerSolver().solve(spec, _target("12.1"))
    assert info.value.message.startswith(
        f"cannot read local channel repodata {chan / 'linux-64' / 'repodata.json'}: Expecting"
    )


def test_invalid_match_spec_is_a_spec_error(pytorch_channels: list[str]) -> None:
    spec = EnvSpec(None, pytorch_channels, [Dep("python>>=3")])
    with pytest.raises(SpecError, match="is not a valid package spec"):
        RattlerSolver().solve(spec, _target("12.1"))


def test_offline_with_empty_cache_never_fetches(tmp_path: Path) -> None:
    spec = EnvSpec(None, ["conda-forge"], [Dep("python")])
    with pytest.raises(SolveError) as info:
        RattlerSolver(cache=tmp_path / "empty").solve(spec, _target("12.1"), offline=True)
    assert info.value.message.startswith("offline: no cached repodata")
    assert "dns" not in info.value.message.lower()


def test_cache_dir_honours_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONDA_UNSLOTH_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path / "rattler"
    monkeypatch.delenv("CONDA_UNSLOTH_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "conda-unsloth" / "rattler"


def test_pip_packages_from_pins() -> None:
    spec = EnvSpec(
        None,
        [],
        [],
        pip=[
            Dep("-c constraints.txt"),
            Dep("unsloth==2024.12.12"),
            Dep("peft>=0.7"),
            Dep("trl[x]==0.12.2"),
            Dep("accelerate == 1.2.1"),
        ],
    )
    assert [(p.name, p.version) for p in pip_packages(spec)] == [
        ("unsloth", "2024.12.12"),
        ("accelerate", "1.2.1"),
    ]


UNPINNED = [
    "unsloth",
    "transformers>=4.46",
    "unsloth_zoo @ git+https://github.com/unslothai/unsloth-zoo.git",
    "trl[x]==0.12.2",
    'peft==0.14.0; python_version < "3.13"',
    "torch==2.5.*",
]


def test_pip_requirements_that_are_not_pins_are_kept_verbatim() -> None:
    spec = EnvSpec(
        None,
        [],
        [],
        pip=[Dep("-c constraints.txt"), Dep("accelerate==1.2.1")] + [Dep(r) for r in UNPINNED],
    )
    assert [(p.name, p.version) for p in pip_packages(spec)] == [("accelerate", "1.2.1")]
    assert pip_unpinned(spec) == tuple(UNPINNED)


def test_solve_carries_unpinned_pip_requirements(pytorch_channels: list[str]) -> None:
    spec = EnvSpec(
        None,
        pytorch_channels,
        [Dep("python=3.11")],
        pip=[Dep("peft==0.14.0"), Dep("unsloth"), Dep("transformers>=4.46")],
    )
    solved = RattlerSolver().solve(spec, _target("12.1"))
    assert [(p.name, p.version) for p in solved.pip] == [("peft", "0.14.0")]
    assert solved.extra["pip_unpinned"] == ("unsloth", "transformers>=4.46")


def test_fast_record_conversion_matches_public_api(
    planned: Planned, pytorch_channels: list[str]
) -> None:
    """The fast path (native record fields) and rattler's public properties agree on every
    field, for linux-64, noarch generic and noarch python records."""
    import asyncio

    import rattler

    from conda_unsloth.solvers.rattler import to_record, to_record_public, virtual_packages

    sel, spec = planned(pytorch_channels, cuda="12.1", python="3.11")
    specs = [rattler.MatchSpec(rewrite_spec(s, pytorch_channels, [])) for s in spec.conda_specs()]
    records = asyncio.run(
        rattler.solve(
            pytorch_channels,
            specs,
            platforms=["linux-64", "noarch"],
            virtual_packages=virtual_packages(sel.target),
            gateway=rattler.Gateway(cache_dir=Path(cache_dir())),
        )
    )
    converted = [to_record(r) for r in records]
    assert converted == [to_record_public(r) for r in records]
    assert {r.noarch for r in converted} == {None, "generic", "python"}


def test_run_coro_reuses_one_loop_and_drops_it_after_an_interrupt() -> None:
    import asyncio

    from conda_unsloth.solvers.rattler import run_coro

    async def loop_id() -> int:
        return id(asyncio.get_running_loop())

    async def fails(exc: BaseException) -> None:
        raise exc

    first = run_coro(loop_id())
    assert run_coro(loop_id()) == first
    with pytest.raises(ValueError, match="bad"):
        run_coro(fails(ValueError("bad")))
    assert run_coro(loop_id()) == first  # an ordinary error keeps the loop
    with pytest.raises(KeyboardInterrupt):
        run_coro(fails(KeyboardInterrupt()))
    assert run_coro(loop_id()) != first  # after an interrupt a fresh loop


def test_repeated_solves_give_equal_results(planned: Planned, pytorch_channels: list[str]) -> None:
    # the second solve runs on the event loop the first one made
    sel, spec = planned(pytorch_channels, cuda="12.1", python="3.11")
    solver = RattlerSolver()
    a, b = solver.solve(spec, sel.target), solver.solve(spec, sel.target)
    assert a.records == b.records
    assert {"python", "pytorch", "pytorch-cuda", "xformers"} <= {r.name for r in a.records}


# ----------------------------------------------------------------------------- solve-path costs

PIN_CORPUS = [
    "unsloth==2024.12.12",
    "unsloth_zoo==2024.12.7",
    "accelerate == 1.2.1",
    "  peft==0.14.0  ",
    "a==1",
    "A.B-c_d==1.0.post1",
    "x==1.0rc1",
    "x==1.0.dev3",
    "x==1.0a1.post2.dev3",
    "x==2.5.1+cu121",
    "x==2.5.1+cu.121.a",
    "x==1.0.*",
    "x===1.0",
    "x==1.0,>=0.5",
    "x[y]==1.0",
    'x==1.0; python_version < "3.13"',
    "x==1.0 ;extra=='a'",
    "x @ https://h/x-1.0.whl",
    "x (==1.0)",
    "x==v1.0",
    "x==1!2.0",
    "x==1.0-1",
    "x==1.0_rc1",
    "x==1.0RC1",
    "x==1.0\t",
    "x\t==\t1.0",
    "x==1.0\n",
    "x==\u00a01.0",
    "x-==1.0",
    "-x==1.0",
    "x==",
    "==1.0",
    "x==1.0 2",
    "x>=1.0",
    "unsloth",
    "",
    "x==1.0.",
    "x ==1.0 # comment",
    "x==1.0+",
    "x==1.0+UPPER",
    "x==\u0661.0",
]


def _pin_by_packaging(requirement: str) -> tuple[str, str] | None:
    """The reference: what the pin parser did with packaging alone."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        req = Requirement(requirement.strip())
    except InvalidRequirement:
        return None
    specs = list(req.specifier)
    if req.extras or req.marker is not None or req.url or len(specs) != 1:
        return None
    (only,) = specs
    if only.operator != "==" or only.version.endswith("*"):
        return None
    return req.name, only.version


@pytest.mark.parametrize("requirement", PIN_CORPUS)
def test_pip_pin_is_what_packaging_says(requirement: str) -> None:
    from conda_unsloth.spec import pip_pin

    assert pip_pin(requirement) == _pin_by_packaging(requirement)


def test_pip_pin_is_what_packaging_says_on_generated_strings() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from conda_unsloth.spec import pip_pin

    parts = st.sampled_from(
        ["x", "Ab_c.d-e", "1", "0", ".", "==", "=", " ", "\t", "rc", "a", "b", "post", "dev",
         "+", "cu121", "*", "!", "v", "-", "_", ",", ";", "[", "]", "@", "(", ")", "~", "<", ">",
         "\u00a0", "\n", "é"]
    )  # fmt: skip

    @settings(max_examples=3000, deadline=None, derandomize=True)
    @given(st.lists(parts, max_size=10).map("".join))
    def check(text: str) -> None:
        pip_pin.cache_clear()
        assert pip_pin(text) == _pin_by_packaging(text), text

    check()


SOLVE_PATH = """
import sys
from conda_unsloth.solvers.rattler import RattlerSolver
from conda_unsloth.spec import Dep, EnvSpec
from conda_unsloth.target import Target
spec = EnvSpec(None, sys.argv[1:], [Dep("python=3.11")], pip=[Dep("unsloth==2024.12.12")])
solved = RattlerSolver().solve(spec, Target("linux-64", "12.1", (), None, "2.36", "--cuda"))
print(solved.solver, [p.name for p in solved.pip])
print(sorted(m for m in sys.modules if m.startswith(("importlib.metadata", "packaging"))))
sys.stdout.flush()
import os; os._exit(0)  # as conda-unsloth leaves: py-rattler 0.28 may crash at shutdown
"""


def test_the_solve_path_imports_neither_importlib_metadata_nor_packaging(
    pytorch_channels: list[str],
) -> None:
    import subprocess
    import sys

    import rattler

    proc = subprocess.run(
        [sys.executable, "-c", SOLVE_PATH, *pytorch_channels],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    label, modules = proc.stdout.splitlines()
    assert label == f"rattler {rattler.__version__} ['unsloth']"
    assert modules == "[]"


def test_local_repodata_is_parsed_once_per_version(tmp_path: Path) -> None:
    """The verdict of the full parse is kept by (size, mtime, ctime, inode) in the cache: a
    new process only looks at both ends; any rewrite of the file is parsed again."""
    from conda_unsloth.solvers import rattler as backend
    from tests.channels import Pkg, write_channel

    chan = write_channel(tmp_path / "c", [Pkg("python", "3.11.9", "hb806964_0_cpython")])
    spec = EnvSpec(None, [chan.as_uri()], [Dep("python")])
    RattlerSolver().solve(spec, _target("12.1"))
    verdicts = json.loads((cache_dir() / backend.VERDICTS).read_text())
    repodata = chan / "linux-64" / "repodata.json"
    st = repodata.stat()
    assert verdicts[str(repodata)] == [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
    # the same bytes broken in the middle (both ends intact, same size): parsed again, refused
    text = repodata.read_text()
    middle = len(text) // 2
    repodata.write_text(text[:middle] + "\x00" + text[middle + 1 :])
    backend._verdicts.cache_clear()  # as a new process
    with pytest.raises(SpecError, match="cannot read local channel repodata"):
        RattlerSolver().solve(spec, _target("12.1"))
    # truncated: refused from its tail, whatever the cache says, with the parser's reason
    repodata.write_text(text[: len(text) - 10])
    with pytest.raises(
        SpecError, match="cannot read local channel repodata .*: Unterminated string"
    ):
        RattlerSolver().solve(spec, _target("12.1"))

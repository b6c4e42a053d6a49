"""Doctor: realistic prefixes (written by tests/prefixes.py) give the known finding with a fix
computed for that env; healthy ones give none; bad input is one line, exit 2, no traceback."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conda_unsloth import doctor, knowledge
from conda_unsloth.host import Host
from conda_unsloth.knowledge.packages import HostFacts, Package
from conda_unsloth.knowledge.rules import evaluate
from conda_unsloth.select import Request, select
from tests import prefixes as P
from tests.conftest import Result, tree
from tests.realdata import REAL_CHANNELS

KB = knowledge.load()
Stack = tuple[list[P.Rec], list[P.Wheel]]


def ids(d: doctor.Diagnosis) -> list[str]:
    return [item.finding.id for item in d.findings]


def fixes(d: doctor.Diagnosis, fid: str) -> list[str]:
    return next(list(item.fix) for item in d.findings if item.finding.id == fid)


def diagnose(tmp_path: Path, stack: Stack, host: HostFacts | None = None) -> doctor.Diagnosis:
    return doctor.diagnose(P.write_prefix(tmp_path / "env", stack), KB, host=host)


# ----------------------------------------------------------------------------- seed + healthy


@pytest.mark.parametrize(
    "stack", [P.seed_pip(), P.seed_xformers_channel()], ids=["pip-xformers", "xformers-channel"]
)
def test_seed_env_gives_f1_and_u1_with_fixes(tmp_path: Path, stack: Stack) -> None:
    d = diagnose(tmp_path, stack)
    assert ids(d) == ["F1", "U1"]
    assert d.exit_code == 1
    prefix = str(d.env.prefix)
    f1 = next(i.finding for i in d.findings if i.finding.id == "F1")
    assert [p.name for p in f1.packages] == ["xformers"]
    assert f1.packages[0].version == "0.0.27"
    # torch 2.3.1 has no fixed xformers (0.0.27 is the only one pinned to it): rebuild,
    # keeping the user's unsloth release, python and CUDA
    py = d.inventory.python_version()
    assert fixes(d, "F1") == [
        f"conda unsloth create -p {prefix}-fixed --unsloth 2024.9.post4 --python {py} --cuda 12.1"
    ]
    u1 = next(i.finding for i in d.findings if i.finding.id == "U1")
    assert "transformers 4.45.1 (needs transformers<4.45.0)" in u1.detail
    assert "torch 2.3.1 (needs torch>=2.4.0)" in u1.detail
    names = {p.name for p in u1.packages}
    assert {"unsloth", "pytorch", "transformers"} <= names
    assert fixes(d, "U1") == [
        f'{prefix}/bin/python -m pip install --no-deps "transformers<4.45.0"',
        f"conda unsloth create -p {prefix}-fixed --unsloth 2024.9.post4 --python {py} --cuda 12.1",
    ]


def test_seed_rebuild_command_is_one_the_planner_accepts(tmp_path: Path) -> None:
    d = diagnose(tmp_path, P.seed_pip())
    cmd = shlex.split(fixes(d, "F1")[0])
    flags = dict(zip(cmd[5::2], cmd[6::2], strict=True))
    sel = select(
        Request(unsloth=flags["--unsloth"], python=flags["--python"], cuda=flags["--cuda"]),
        _no_gpu_host(),
        KB,
    )
    assert sel.unsloth.version == "2024.9.post4"
    planned = [f.id for f in evaluate(sel.planned_packages(), KB)]
    assert planned == []


def _no_gpu_host() -> Host:
    return Host(platform="linux-64", glibc="2.35")


def test_healthy_planner_env_has_no_finding(tmp_path: Path) -> None:
    d = diagnose(tmp_path, P.healthy())
    assert ids(d) == [] and d.exit_code == 0
    assert d.notes == []


def test_healthy_env_matches_what_the_planner_picks_for_cuda_12_1() -> None:
    """The 'healthy' fixture is the planner's own choice (guards the fixture, not doctor)."""
    sel = select(Request(cuda="12.1"), _no_gpu_host(), KB)
    recs, wheels = P.healthy()
    by = {r.name: r for r in recs}
    assert by["pytorch"].version == sel.pytorch.version
    assert by["xformers"].version == sel.xformers.version
    assert by["torchtriton"].version == sel.pytorch.triton
    assert {w.name: w.version for w in wheels} == {
        "unsloth": sel.unsloth.version,
        **sel.unsloth.companions,
    }


def healthy_conda_forge() -> Stack:
    """Profile conda-forge as the planner picks it for CUDA 12.9: pytorch 2.10.0 cuda129,
    conda-forge xformers 0.0.34 and triton 3.6.0, unsloth 2026.10.9 + companions. Build
    strings follow conda-forge's schemes (compat.yaml pytorch_build / xformers_build); the
    hashes in them are placeholders."""
    return (
        [
            P.PY312,
            P.Rec(
                "pytorch", "2.10.0", "cuda129_mkl_py312_h5b2e1c3_300", "conda-forge", dist="torch"
            ),
            P.Rec("xformers", "0.0.34", "cuda_129py312h8a3d5f1_0", "conda-forge", dist="xformers"),
            P.Rec("triton", "3.6.0", "cuda129py312h4c7b2a9_0", "conda-forge", dist="triton"),
            P.Rec("cuda-version", "12.9", "h4f385c5_3", "conda-forge", subdir="noarch"),
            P.Rec("mkl", "2025.2.0", "h0e700b2_0", "conda-forge"),
        ],
        [
            P.Wheel("unsloth", "2026.10.9"),
            P.Wheel("unsloth_zoo", "2026.10.9"),
            P.Wheel("transformers", "5.17.0"),
            P.Wheel("trl", "1.15.0"),
            P.Wheel("peft", "0.18.0"),
            P.Wheel("accelerate", "1.12.0"),
            P.Wheel("bitsandbytes", "0.50.2"),
        ],
    )


@pytest.mark.parametrize(
    "host",
    [None, HostFacts(driver_cuda="12.9", archs=("12.0",), glibc="2.35")],
    ids=["no-gpu", "blackwell-fake_gpu"],
)
def test_healthy_conda_forge_env_has_no_finding(tmp_path: Path, host: HostFacts | None) -> None:
    d = diagnose(tmp_path, healthy_conda_forge(), host)
    assert ids(d) == [], doctor.render(d)


def test_conda_forge_xformers_for_another_pytorch_is_f2(tmp_path: Path) -> None:
    # a real build (knowledge/evidence.yaml): 0.0.31 build 0 for CUDA 12.6 and pytorch 2.7.1
    # (0.0.30 was never built for CUDA 12.6)
    stack = P.swap(
        healthy_conda_forge(),
        conda=[
            P.Rec("xformers", "0.0.31", "cuda_126py312hd8e0fee_0", "conda-forge", dist="xformers")
        ],
    )
    d = diagnose(tmp_path, stack)
    assert "F2" in ids(d)
    assert fixes(d, "F2") == [f'conda install -p {d.env.prefix} -c conda-forge "xformers=0.0.34"']


# ----------------------------------------------------------------------------- every rule

H100 = HostFacts(driver_cuda="12.4", archs=("9.0",), glibc="2.35")


def _pip_xformers(version: str) -> Callable[[], Stack]:
    return lambda: P.swap(P.healthy(), drop=["xformers"], pip=[P.Wheel("xformers", version)])


CF_PYTORCH_240 = P.Rec(
    "pytorch", "2.4.0", "cuda120_py312h26b3cf7_301", "conda-forge", dist="torch", requested=True
)
# conda-forge pytorch 2.8.0 for CUDA 12.9 (record page in knowledge/evidence.yaml)
CF_PYTORCH_280 = P.Rec(
    "pytorch",
    "2.8.0",
    "cuda129_generic_py312_hb49f305_202",
    "conda-forge",
    depends=("__cuda", "cuda-version >=12.9,<13", "python >=3.12,<3.13.0a0", "triton 3.4.0"),
    dist="torch",
    requested=True,
)
# what PyPI's torch 2.4.0 wheel requires of triton (its METADATA, read with pip --report)
TORCH_240_TRITON = (
    'triton (==3.0.0) ; platform_system == "Linux" and platform_machine == "x86_64" '
    'and python_version < "3.13"'
)
H100_CU129 = HostFacts(driver_cuda="12.9", archs=("9.0",), glibc="2.35")


def _bnb_on_cu129(version: str) -> Callable[[], Stack]:
    return lambda: ([P.PY312, CF_PYTORCH_280], [P.Wheel("bitsandbytes", version)])


RULE_CASES: list[tuple[str, Callable[[], Stack], HostFacts | None, bool]] = [
    ("F1", P.seed_pip, None, True),
    (
        "F1",
        lambda: P.swap(
            P.healthy(),
            drop=["pytorch", "torchtriton", "xformers"],
            conda=[P.pytorch("2.4.0", "3.11", "12.1"), P.torchtriton("3.0.0", "3.11")],
            pip=[P.Wheel("xformers", "0.0.27.post1")],
        ),
        None,
        True,
    ),
    ("F1", P.healthy, None, False),
    ("F2", _pip_xformers("0.0.28.post1"), None, True),
    ("F2", _pip_xformers("0.0.29.post1"), None, False),
    ("F15", _pip_xformers("0.0.29.post2"), None, True),
    ("F15", _pip_xformers("0.0.28.post3"), None, False),
    (
        "F4",
        lambda: P.swap(
            P.healthy(),
            drop=["pytorch-cuda"],
            conda=[P.pytorch("2.5.1", "3.11", None), P.MUTEX_CPU],
        ),
        None,
        True,
    ),
    ("F4", lambda: P.swap(P.healthy(), conda=[P.MUTEX_CPU]), None, True),
    ("F4", P.healthy, None, False),
    ("F10", lambda: P.swap(P.healthy(), conda=[P.MKL_2024]), None, True),
    ("F10", P.healthy, None, False),
    (
        "F11",
        lambda: P.swap(
            ([P.PY312], []),
            conda=[
                P.Rec(
                    "pytorch",
                    "2.10.0",
                    "cuda130_mkl_py312_h1b2c3d4_300",
                    "conda-forge",
                    dist="torch",
                )
            ],
            pip=[P.Wheel("bitsandbytes", "0.45.5")],
        ),
        None,
        True,
    ),
    ("F11", P.healthy, None, False),
    # bitsandbytes < 0.50 loads only the exact CUDA library: 0.45.5 has 128, not 129
    ("F11", _bnb_on_cu129("0.45.5"), None, True),
    ("F11", _bnb_on_cu129("0.49.2"), None, False),
    ("F11", _bnb_on_cu129("0.50.2"), None, False),
    ("F12", lambda: P.swap(P.healthy(), pip=[P.Wheel("torch", "2.4.0")]), None, True),
    ("F12", P.healthy, None, False),
    (
        "F13",
        lambda: (
            [P.PY312, CF_PYTORCH_240, P.torchtriton("3.0.0", "3.12"), P.MKL_2023],
            [],
        ),
        None,
        True,
    ),
    ("F13", P.healthy, None, False),
    ("F14", lambda: P.swap(P.healthy(), conda=[P.PY312]), None, True),
    ("F14", P.healthy, None, False),
    (
        "F17",
        lambda: P.swap(
            P.healthy(),
            drop=["xformers"],
            conda=[P.pytorch("2.5.1", "3.11", "11.8"), P.PYTORCH_CUDA_118],
            pip=[P.Wheel("xformers", "0.0.28.post3")],
        ),
        None,
        True,
    ),
    ("F17", P.healthy, None, False),
    ("U1", lambda: P.swap(P.healthy(), pip=[P.Wheel("transformers", "4.47.0")]), None, True),
    ("U1", lambda: P.swap(P.healthy(), pip=[P.Wheel("unsloth-zoo", "2024.11.1")]), None, True),
    ("U1", P.healthy, None, False),
    ("U1", lambda: P.swap(P.healthy(), drop=["unsloth_zoo"]), None, True),
    ("U1", lambda: P.swap(P.healthy(), drop=["xformers"]), None, True),
    (
        "F19",
        lambda: P.swap(P.healthy(), pip=[P.Wheel("triton", "3.0.0", replaces="torchtriton")]),
        None,
        True,
    ),
    ("F19", P.healthy, None, False),
    ("F19", healthy_conda_forge, None, False),
    # host rules: a stand-in for a GPU host that isn't here
    ("F5", P.healthy, HostFacts(driver_cuda="11.8", archs=("8.0",)), True),
    ("F5", P.healthy, H100, False),
    ("F6", P.healthy, HostFacts(driver_cuda="12.8", archs=("12.0",)), True),
    ("F6", P.healthy, H100, False),
    # conda-forge xformers 0.0.34 has no sm_90 kernels (its torch has)
    ("F6", healthy_conda_forge, H100_CU129, True),
    ("F6", healthy_conda_forge, HostFacts(driver_cuda="12.9", archs=("10.3",)), False),
    ("F8", P.healthy, HostFacts(driver_cuda="12.8", archs=("10.0",)), True),
    ("F8", P.healthy, H100, False),
    (
        "F16",
        lambda: P.swap(([P.PY311], []), pip=[P.Wheel("torch", "2.7.0")]),
        HostFacts(driver_cuda="12.4", archs=("8.0",), glibc="2.17"),
        True,
    ),
    (
        "F16",
        lambda: P.swap(([P.PY311], []), pip=[P.Wheel("torch", "2.7.0")]),
        H100,
        False,
    ),
]


def _case_id(case: tuple[str, Callable[[], Stack], HostFacts | None, bool]) -> str:
    fid, _, host, positive = case
    return f"{fid}-{'fires' if positive else 'quiet'}" + ("-fake_gpu" if host else "")


@pytest.mark.parametrize(
    ("fid", "build", "host", "positive"),
    RULE_CASES,
    ids=[f"{_case_id(c)}-{i}" for i, c in enumerate(RULE_CASES)],
)
def test_rule_on_realistic_prefix(
    tmp_path: Path,
    fid: str,
    build: Callable[[], Stack],
    host: HostFacts | None,
    positive: bool,
) -> None:
    d = diagnose(tmp_path, build(), host)
    if positive:
        assert fid in ids(d), doctor.render(d)
        item = next(i for i in d.findings if i.finding.id == fid)
        assert item.finding.evidence, "a finding names the records behind it"
        assert item.fix and all(item.fix), "a finding comes with at least one fix command"
        assert "NEW_ENV" not in " ".join(item.fix) and " ENV" not in " ".join(item.fix)
        assert d.exit_code == 1
    else:
        assert fid not in ids(d), doctor.render(d)


def test_every_package_and_host_rule_has_a_positive_case() -> None:
    checked = {fid for fid, _, _, positive in RULE_CASES if positive}
    rules = {i.id for i in KB.issues.values() if i.scope in ("packages", "host")}
    assert rules <= checked, rules - checked


# ----------------------------------------------------------------------------- concrete fixes


def test_f1_with_torch_2_4_0_pip_fix_is_the_fixed_xformers(tmp_path: Path) -> None:
    stack = P.swap(
        P.healthy(),
        drop=["pytorch", "torchtriton", "xformers"],
        conda=[P.pytorch("2.4.0", "3.11", "12.1"), P.torchtriton("3.0.0", "3.11")],
        pip=[P.Wheel("xformers", "0.0.27.post1")],
    )
    d = diagnose(tmp_path, stack)
    assert fixes(d, "F1") == [
        f'{d.env.prefix}/bin/python -m pip install --no-deps "xformers==0.0.27.post2"'
    ]


def test_f2_conda_xformers_fix_is_the_build_for_the_installed_pytorch(tmp_path: Path) -> None:
    stack = P.swap(
        P.healthy(),
        drop=["pytorch", "torchtriton"],
        conda=[P.pytorch("2.5.0", "3.11", "12.1"), P.torchtriton("3.1.0", "3.11")],
        pip=[],
    )
    # xformers 0.0.28.post3 (pinned to 2.5.1) next to pytorch 2.5.0 is "newer than torch"
    d = diagnose(tmp_path, stack)
    assert ids(d) == ["F15"]
    assert fixes(d, "F15") == [
        f"conda install -p {d.env.prefix} -c pytorch -c nvidia -c xformers -c conda-forge "
        '"xformers=0.0.28.post2=py311_cu12.1.0_pyt2.5.0"'
    ]


def test_f10_fix_is_conda_install_mkl_pin(tmp_path: Path) -> None:
    d = diagnose(tmp_path, P.swap(P.healthy(), conda=[P.MKL_2024]))
    assert ids(d) == ["F10"]
    assert fixes(d, "F10") == [f'conda install -p {d.env.prefix} "mkl<2024.1"']
    ev = next(i.finding.evidence for i in d.findings)
    assert ev == (
        "mkl 2024.2.2 ha957f24_16 (conda-forge)",
        "pytorch 2.5.1 py3.11_cuda12.1_cudnn9.1.0_0 (pytorch)",
    )


def test_f12_fix_removes_pip_torch_and_restores_conda_build(tmp_path: Path) -> None:
    d = diagnose(tmp_path, P.swap(P.healthy(), pip=[P.Wheel("torch", "2.4.0")]))
    assert fixes(d, "F12") == [
        f"{d.env.prefix}/bin/python -m pip uninstall -y torch",
        f"conda install -p {d.env.prefix} --force-reinstall "
        '"pytorch=2.5.1=py3.11_cuda12.1_cudnn9.1.0_0"',
    ]


def test_u1_companion_fix_uses_the_release_range(tmp_path: Path) -> None:
    d = diagnose(tmp_path, P.swap(P.healthy(), pip=[P.Wheel("transformers", "4.47.0")]))
    assert ids(d) == ["U1"]
    assert fixes(d, "U1") == [
        f'{d.env.prefix}/bin/python -m pip install --no-deps "transformers!=4.47.0,>=4.46.1"'
    ]


def test_named_env_fix_commands_use_the_name(tmp_path: Path) -> None:
    prefix = P.write_prefix(tmp_path / "myenv", P.swap(P.healthy(), conda=[P.MKL_2024]))
    d = doctor.diagnose(prefix, KB, name="myenv")
    assert fixes(d, "F10") == ['conda install -n myenv "mkl<2024.1"']


def test_unknown_unsloth_release_is_a_note(tmp_path: Path) -> None:
    d = diagnose(tmp_path, P.swap(P.healthy(), pip=[P.Wheel("unsloth", "2025.1.1")]))
    assert ids(d) == []
    assert any("unsloth 2025.1.1 is not in the knowledge base" in n for n in d.notes)


def test_evidence_never_confuses_torch_and_pytorch(tmp_path: Path) -> None:
    """'torch 2.3.1' is a substring of 'pytorch 2.3.1': evidence must come from the rule."""
    pkgs = [
        Package("pytorch", "2.5.1", "py3.11_cuda12.1_cudnn9.1.0_0", "pytorch"),
        Package("torch", "2.5.1", "", "pypi", "pip"),
    ]
    f12 = evaluate(pkgs, KB, only=["F12"])
    assert [p.installer for p in f12[0].packages] == ["conda", "pip"]
    f1 = evaluate([Package("xformers", "0.0.27.post2", "", "pypi", "pip")], KB, only=["F1"])
    assert f1 == []


# ----------------------------------------------------------------------------- the CLI


def test_cli_seed_exit_1_with_f1_and_u1(cli: Callable[..., Result], tmp_path: Path) -> None:
    prefix = P.write_prefix(tmp_path / "seed", P.seed_pip())
    before = tree(prefix)
    r = cli("doctor", "-p", str(prefix))
    assert r.code == 1, r.err
    assert "F1 (error)" in r.out and "U1 (error)" in r.out
    assert f'{prefix}/bin/python -m pip install --no-deps "transformers<4.45.0"' in r.out
    assert "Traceback" not in r.out + r.err
    assert tree(prefix) == before, "doctor writes nothing"


def test_cli_seed_json_is_one_document(cli: Callable[..., Result], tmp_path: Path) -> None:
    prefix = P.write_prefix(tmp_path / "seed", P.seed_pip())
    r = cli("doctor", "-p", str(prefix), "--json")
    assert r.code == 1
    doc = json.loads(r.out)
    assert [f["id"] for f in doc["findings"]] == ["F1", "U1"]
    assert doc["ok"] is False and doc["exit_code"] == 1 and doc["prefix"] == str(prefix)
    f1 = doc["findings"][0]
    assert f1["severity"] == "error" and f1["evidence"] == ["xformers 0.0.27 (pypi)"]
    # standalone, the fix names the command this user runs (issue 18 #6)
    assert f1["fix_commands"][0].startswith(f"conda-unsloth create -p {prefix}-fixed")
    assert {p["name"] for p in doc["inventory"]["pip"]} >= {"xformers", "unsloth"}


def test_cli_healthy_exit_0(cli: Callable[..., Result], tmp_path: Path) -> None:
    prefix = P.write_prefix(tmp_path / "ok", P.healthy())
    r = cli("doctor", "-p", str(prefix))
    assert r.code == 0, r.out
    assert "no known problems found" in r.out


def test_cli_named_env(
    cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    envs = tmp_path / "envs"
    P.write_prefix(envs / "unsloth_env", P.swap(P.healthy(), conda=[P.MKL_2024]))
    monkeypatch.setenv("CONDA_ENVS_PATH", str(envs))
    r = cli("doctor", "-n", "unsloth_env", "--json")
    assert r.code == 1
    doc = json.loads(r.out)
    assert doc["name"] == "unsloth_env"
    assert doc["findings"][0]["fix_commands"] == ['conda install -n unsloth_env "mkl<2024.1"']


def test_cli_fake_gpu_host_rule(
    cli: Callable[..., Result], tmp_path: Path, fake_gpu: Callable[..., Path]
) -> None:
    fake_gpu(driver="520.61.05", cuda="11.8", gpus=(("NVIDIA A100-SXM4-80GB", "8.0"),))
    prefix = P.write_prefix(tmp_path / "ok", P.healthy())
    r = cli("doctor", "-p", str(prefix), "--json")
    doc = json.loads(r.out)
    assert doc["host"] is not None and doc["host"]["driver_cuda"] == "11.8", doc["host"]
    assert [f["id"] for f in doc["findings"]] == ["F5"]
    assert r.code == 1
    r2 = cli("doctor", "-p", str(prefix), "--no-host")
    assert r2.code == 0


def test_cli_only_warnings_exit_0(cli: Callable[..., Result], tmp_path: Path) -> None:
    """Exit 1 is for error-level findings only: the same F10 as a warning exits 0."""
    kb_dir = tmp_path / "kb"
    shutil.copytree(
        Path(knowledge.__file__).parent, kb_dir, ignore=shutil.ignore_patterns("*.py*")
    )
    issues = kb_dir / "known_issues.yaml"
    text = issues.read_text(encoding="utf-8")
    block = text.index("  - id: F10\n")
    at = text.index("severity: error", block)
    issues.write_text(text[:at] + "severity: warning" + text[at + 15 :], encoding="utf-8")
    prefix = P.write_prefix(tmp_path / "env", P.swap(P.healthy(), conda=[P.MKL_2024]))
    r = cli("doctor", "-p", str(prefix), "--knowledge", str(kb_dir), "--json")
    doc = json.loads(r.out)
    assert [(f["id"], f["severity"]) for f in doc["findings"]] == [("F10", "warning")]
    assert r.code == 0 and doc["ok"] is True and doc["exit_code"] == 0
    text_run = cli("doctor", "-p", str(prefix), "--knowledge", str(kb_dir))
    assert text_run.code == 0 and "F10 (warning)" in text_run.out


@pytest.mark.parametrize(
    "kind",
    ["missing", "file", "not-an-env", "corrupt-truncated", "corrupt-list", "corrupt-no-name"],
)
def test_cli_bad_input_one_line_exit_2(
    cli: Callable[..., Result], tmp_path: Path, kind: str
) -> None:
    target = tmp_path / "target"
    if kind == "file":
        target.write_text("not an env")
    elif kind == "not-an-env":
        target.mkdir()
    elif kind.startswith("corrupt"):
        P.write_prefix(target, P.healthy())
        body = {
            "corrupt-truncated": '{"name": "pytorch", "vers',
            "corrupt-list": "[1, 2]",
            "corrupt-no-name": '{"version": "1.0", "build": "0"}',
        }[kind]
        (target / "conda-meta" / "bad-1.0-0.json").write_text(body)
    before = tree(tmp_path)
    r = cli("doctor", "-p", str(target))
    assert r.code == 2
    first = r.err.splitlines()[0]
    assert first.startswith("conda-unsloth: error: ")
    if kind.startswith("corrupt"):
        assert "bad-1.0-0.json" in first
    assert "Traceback" not in r.err + r.out
    assert tree(tmp_path) == before


def test_cli_bad_input_json_is_one_document(cli: Callable[..., Result], tmp_path: Path) -> None:
    r = cli("doctor", "-p", str(tmp_path / "missing"), "--json")
    assert r.code == 2
    assert json.loads(r.out)["error"] == "PrefixError"


def test_subprocess_seed(tmp_path: Path) -> None:
    prefix = P.write_prefix(tmp_path / "seed", P.seed_pip())
    env = {**os.environ, "CONDA_UNSLOTH_NVML": "0", "CONDA_UNSLOTH_NVIDIA_SMI": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "conda_unsloth", "doctor", "-p", str(prefix), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert [f["id"] for f in json.loads(proc.stdout)["findings"]] == ["F1", "U1"]
    assert "Traceback" not in proc.stderr


# ----------------------------------------------------------------------------- real data

REAL = REAL_CHANNELS
REAL_SOLVE = REAL / "pixi-multi-machine" / "solve-real-only.json"


@pytest.mark.skipif(not REAL_SOLVE.is_file(), reason="shared/data/real-channels is not here")
def test_real_solve_plus_seed_pip_stage(tmp_path: Path) -> None:
    """Every record of a real solve (python 3.11, pytorch 2.3.1, pytorch-cuda 12.1: 64
    packages), plus the seed's pip stage, gives exactly F1 and U1."""
    solved = json.loads(REAL_SOLVE.read_text())
    recs = [
        P.Rec(
            r["name"],
            r["version"],
            r["build"],
            r["channel"],
            subdir=r["subdir"],
            dist={"pytorch": "torch", "torchtriton": "triton"}.get(r["name"]),
        )
        for r in solved
    ]
    _, wheels = P.seed_pip()
    d = diagnose(tmp_path, (recs, wheels))
    assert len(d.inventory.records) == len(solved) == 64
    assert ids(d) == ["F1", "U1"]


# ----------------------------------------------------------------------------- hostile names

HOSTILE_NAME = "u;touch${IFS}pwned"
HOSTILE_BUILD = "py3.11_cuda12.1_cudnn9.1.0_0$(touch${IFS}pwned)"

FAKE_TOOL = """#!/bin/sh
# Stand-in for conda / the env's python, which are not installed here (fake_conda edge):
# records its arguments, one per line, then a separator.
for a in "$@"; do printf '%s\\n' "$a" >> "{log}"; done
echo --- >> "{log}"
"""


def _run_fixes_fake_conda(cmds: list[str], tmp_path: Path, prefix: Path) -> list[list[str]]:
    """Run each fix command with sh, with stand-ins for ``conda`` and ``PREFIX/bin/python``;
    the argument lists they got, in order. Fails if the shell ran anything else."""
    tools, work, log = tmp_path / "tools", tmp_path / "cwd", tmp_path / "argv.log"
    for exe in (tools / "conda", prefix / "bin" / "python"):
        exe.parent.mkdir(parents=True, exist_ok=True)
        exe.write_text(FAKE_TOOL.format(log=log))
        exe.chmod(0o755)
    work.mkdir()
    env = {**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ['PATH']}"}
    for cmd in cmds:
        proc = subprocess.run(
            ["sh", "-c", cmd], cwd=work, env=env, capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, (cmd, proc.stderr)
    assert list(work.iterdir()) == [], f"a fix command ran something else: {cmds}"
    calls = log.read_text().split("---\n")[:-1]
    return [c.splitlines() for c in calls]


def test_fix_for_a_hostile_env_name_is_one_shell_word_fake_conda(tmp_path: Path) -> None:
    prefix = P.write_prefix(tmp_path / "env", P.swap(P.healthy(), conda=[P.MKL_2024]))
    d = doctor.diagnose(prefix, KB, name=HOSTILE_NAME)
    cmds = fixes(d, "F10")
    assert cmds == [f"conda install -n '{HOSTILE_NAME}' \"mkl<2024.1\""]
    calls = _run_fixes_fake_conda(cmds, tmp_path, prefix)
    assert calls == [["install", "-n", HOSTILE_NAME, "mkl<2024.1"]]


def test_rebuild_for_a_hostile_env_name_fake_conda(tmp_path: Path) -> None:
    prefix = P.write_prefix(tmp_path / "env", P.seed_pip())
    d = doctor.diagnose(prefix, KB, name=HOSTILE_NAME)
    cmds = fixes(d, "F1")
    calls = _run_fixes_fake_conda(cmds, tmp_path, prefix)
    assert calls[0][:3] == ["unsloth", "create", "-n"]
    assert calls[0][3] == HOSTILE_NAME + "-fixed"


def test_fix_for_a_hostile_prefix_and_build_string_fake_conda(tmp_path: Path) -> None:
    """A prefix path and a record's build string are data from disk: quoted, never run."""
    torch = dataclasses.replace(P.pytorch("2.5.1", "3.11", "12.1"), build=HOSTILE_BUILD)
    stack = P.swap(P.healthy(), conda=[torch], pip=[P.Wheel("torch", "2.4.0")])
    prefix = P.write_prefix(tmp_path / "my env;touch${IFS}pwned", stack)
    d = doctor.diagnose(prefix, KB)
    cmds = fixes(d, "F12")
    assert len(cmds) == 2
    calls = _run_fixes_fake_conda(cmds, tmp_path, prefix)
    assert calls == [
        ["-m", "pip", "uninstall", "-y", "torch"],
        ["install", "-p", str(prefix), "--force-reinstall", f"pytorch=2.5.1={HOSTILE_BUILD}"],
    ]


@pytest.mark.parametrize(
    ("spec", "shown"),
    [
        ("mkl<2024.1", '"mkl<2024.1"'),
        ("transformers!=4.47.0,>=4.46.1", '"transformers!=4.47.0,>=4.46.1"'),
        (
            "xformers=0.0.28.post3=py311_cu12.1.0_pyt2.5.1",
            '"xformers=0.0.28.post3=py311_cu12.1.0_pyt2.5.1"',
        ),
        ("pytorch=2.5.1=$(reboot)", "'pytorch=2.5.1=$(reboot)'"),
        ("x=1=`id`", "'x=1=`id`'"),
        ('x=1="a"', "'x=1=\"a\"'"),
        ("x==1!x", "'x==1!x'"),
        ("x y", "'x y'"),
    ],
    ids=["lt", "ne", "build", "dollar", "backtick", "dquote", "bang", "space"],
)
def test_quote_spec_readable_when_safe_single_quoted_otherwise(spec: str, shown: str) -> None:
    assert doctor.quote_spec(spec) == shown
    assert shlex.split(shown) == [spec]


@pytest.mark.parametrize(
    ("name", "flag"),
    [("unsloth", "-n unsloth"), ("my env", "-n 'my env'"), (HOSTILE_NAME, f"-n '{HOSTILE_NAME}'")],
    ids=["plain", "space", "hostile"],
)
def test_env_ref_flags_are_one_shell_word(tmp_path: Path, name: str, flag: str) -> None:
    ref = doctor.EnvRef(tmp_path, name)
    assert ref.flag == flag
    assert shlex.split(ref.new_flag) == ["-n", f"{name}-fixed"]
    assert doctor.template("conda unsloth create -n NEW_ENV --cuda 12.4", ref) == (
        f"conda unsloth create {ref.new_flag} --cuda 12.4"
    )
    assert doctor.template("conda install -n ENV x", ref) == f"conda install {ref.flag} x"


def test_template_fills_prefix_placeholders_one_shell_word(tmp_path: Path) -> None:
    ref = doctor.EnvRef(tmp_path / "my env")
    cmd = doctor.template("conda unsloth verify -p PREFIX --sbatch job.sh", ref)
    assert shlex.split(cmd) == [
        "conda",
        "unsloth",
        "verify",
        "-p",
        str(tmp_path / "my env"),
        "--sbatch",
        "job.sh",
    ]
    cmd = doctor.template(
        "PREFIX/bin/python -m pip install --no-deps nvidia-cuda-runtime-cu12", ref
    )
    assert shlex.split(cmd)[:2] == [str(tmp_path / "my env" / "bin" / "python"), "-m"]


# ----------------------------------------------------------------------------- CUDA vs driver


def test_f5_same_major_says_why_triton_needs_the_newer_driver_fake_gpu(tmp_path: Path) -> None:
    d = diagnose(tmp_path, P.healthy(), HostFacts(driver_cuda="12.0", archs=("8.0",)))
    assert ids(d) == ["F5"] and d.exit_code == 1
    detail = d.findings[0].finding.detail
    assert detail == (
        "torch 2.5.1 is a CUDA 12.1 build; the driver supports CUDA 12.0 at most; CUDA "
        "minor-version compatibility runs most kernels, but Triton-compiled kernels (Unsloth's) "
        "need a driver that supports CUDA 12.1"
    )


def test_f5_older_major_has_no_minor_compat_text_fake_gpu(tmp_path: Path) -> None:
    d = diagnose(tmp_path, P.healthy(), HostFacts(driver_cuda="11.8", archs=("8.0",)))
    detail = d.findings[0].finding.detail
    assert detail == ("torch 2.5.1 is a CUDA 12.1 build; the driver supports CUDA 11.8 at most")


@pytest.mark.parametrize(
    "host",
    [
        HostFacts(driver_cuda="abc", archs=("8.0",)),
        HostFacts(driver_cuda="", archs=("8.0",)),
        HostFacts(driver_cuda="12.x", archs=("8.0",)),
        HostFacts(driver_cuda="12.4", archs=("[N/A]",), glibc="2.35"),
        HostFacts(driver_cuda="12.4", archs=("8.0",), glibc="unknown"),
    ],
    ids=["cuda-word", "cuda-empty", "cuda-x", "arch-na", "glibc-word"],
)
def test_malformed_host_values_are_unknown_not_errors_fake_gpu(
    tmp_path: Path, host: HostFacts
) -> None:
    stack = P.swap(P.seed_pip(), pip=[P.Wheel("torch", "2.7.0"), P.Wheel("xformers", "0.0.29")])
    d = diagnose(tmp_path, stack, host)
    assert "F5" not in ids(d) and "F6" not in ids(d) and "F13" not in ids(d)
    assert all(item.fix for item in d.findings)


@given(
    cuda=st.one_of(st.none(), st.text(max_size=8)),
    arch=st.text(max_size=6),
    glibc=st.one_of(st.none(), st.text(max_size=8)),
)
@settings(max_examples=150, deadline=None)
def test_rules_never_raise_on_any_host_value(
    cuda: str | None, arch: str, glibc: str | None
) -> None:
    host = HostFacts(driver_cuda=cuda, archs=(arch,), glibc=glibc)
    pkgs = [
        Package("pytorch", "2.5.1", "py3.11_cuda12.1_cudnn9.1.0_0", "pytorch"),
        Package("xformers", "0.0.29", "", "pypi", "pip"),
        Package("torch", "2.7.0", "", "pypi", "pip"),
    ]
    evaluate(pkgs, KB, host)


@pytest.mark.parametrize(
    ("torch", "xformers"),
    [
        (
            Package("pytorch", "2.5.1", "cuda1_py311h0_300", "conda-forge"),
            Package("xformers", "0.0.28.post3", "cuda1_py311h0_0", "conda-forge"),
        ),
        (
            Package("torch", "2.5.1+cu1", "", "pypi", "pip"),
            Package("xformers", "0.0.28+cu1", "", "pypi", "pip"),
        ),
    ],
    ids=["conda-forge-build", "local-version"],
)
def test_one_digit_cuda_tag_is_unknown_not_an_error(torch: Package, xformers: Package) -> None:
    host = HostFacts(driver_cuda="12.4", archs=("8.0",), glibc="2.35")
    found = evaluate([torch, xformers], KB, host)
    assert "F5" not in [f.id for f in found] and "F9" not in [f.id for f in found]


def test_cli_malformed_override_cuda_is_bad_input(
    cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONDA_OVERRIDE_CUDA", "abc")
    prefix = P.write_prefix(tmp_path / "ok", P.healthy())
    r = cli("doctor", "-p", str(prefix))
    assert r.code == 2
    assert r.err.splitlines()[0] == (
        "conda-unsloth: error: CONDA_OVERRIDE_CUDA='abc' is not a CUDA version like 12.4"
    )
    assert "Traceback" not in r.err + r.out
    rj = cli("doctor", "-p", str(prefix), "--json")
    assert rj.code == 2 and json.loads(rj.out)["error"] == "UsageError"
    assert cli("doctor", "-p", str(prefix), "--no-host").code == 0  # the host is not asked


def test_cli_driver_reporting_no_cuda_version_fake_gpu(
    cli: Callable[..., Result], tmp_path: Path, fake_gpu: Callable[..., Path]
) -> None:
    fake_gpu(driver="550.54.14", cuda="N/A", gpus=(("NVIDIA A100-SXM4-80GB", "8.0"),))
    prefix = P.write_prefix(tmp_path / "ok", P.healthy())
    r = cli("doctor", "-p", str(prefix), "--json")
    assert r.code == 0, r.out + r.err
    doc = json.loads(r.out)
    assert doc["findings"] == [] and doc["host"]["driver_cuda"] is None
    assert doc["host"]["archs"] == ["8.0"]


# ----------------------------------------------------------------------------- hostile files


def test_cli_fifo_metadata_does_not_hang(cli: Callable[..., Result], tmp_path: Path) -> None:
    prefix = P.write_prefix(tmp_path / "seed", P.seed_pip())
    sp = prefix / "lib" / "python3.11" / "site-packages"
    fifos = [
        P.make_fifo(sp / "xformers-0.0.27.dist-info" / "METADATA"),
        P.make_fifo(sp / "unsloth-2024.9.post4.dist-info" / "INSTALLER"),
    ]
    r = P.call_or_unhang(lambda: cli("doctor", "-p", str(prefix), "--json"), fifos)
    assert r.code == 1
    assert [f["id"] for f in json.loads(r.out)["findings"]] == ["F1", "U1"]


def test_cli_fifo_conda_record_is_exit_2(cli: Callable[..., Result], tmp_path: Path) -> None:
    prefix = P.write_prefix(tmp_path / "env", P.healthy())
    fifo = P.make_fifo(prefix / "conda-meta" / "bad-1.0-0.json")
    r = P.call_or_unhang(lambda: cli("doctor", "-p", str(prefix)), [fifo])
    assert r.code == 2
    assert r.err.splitlines()[0] == (
        f"conda-unsloth: error: conda record {fifo} is corrupt (not a regular file); "
        f"cannot tell what is installed in {prefix}"
    )
    assert "Traceback" not in r.err
    rj = P.call_or_unhang(lambda: cli("doctor", "-p", str(prefix), "--json"), [fifo])
    assert rj.code == 2 and json.loads(rj.out)["error"] == "PrefixError"


def test_two_thousand_pip_dists_diagnose(tmp_path: Path) -> None:
    """Doctor on a huge site-packages: one bounded header read per distribution, rules on
    names only (no timing assertion; bench/ is the place for timings)."""
    prefix = P.write_prefix(tmp_path / "env", P.seed_pip())
    sp = prefix / "lib" / "python3.11" / "site-packages"
    for i in range(2000):
        folder = sp / f"pkg{i:04d}-1.{i}.dist-info"
        folder.mkdir()
        (folder / "METADATA").write_text(f"Name: pkg{i:04d}\nVersion: 1.{i}\n\nlong text\n")
        (folder / "INSTALLER").write_text("uv\n")
    d = doctor.diagnose(prefix, KB)
    assert ids(d) == ["F1", "U1"]
    assert len(d.inventory.pip_dists()) == 2000 + len(P.seed_pip()[1])
    assert len(d.to_json()["inventory"]["pip"]) == 2000 + len(P.seed_pip()[1])


# ----------------------------------------------------------------------------- issue 17


def test_f11_bnb_0_45_5_on_a_cuda_12_9_torch_and_the_fix(tmp_path: Path) -> None:
    """bitsandbytes 0.45.5 ships libbitsandbytes_cuda128 but not 129, and before 0.50 it loads
    only the exact library (cextension.py at 0.45.5: a warning, then the CPU library)."""
    d = diagnose(tmp_path, _bnb_on_cu129("0.45.5")())
    f11 = next(i.finding for i in d.findings if i.finding.id == "F11")
    assert "none for torch's CUDA 12.9" in f11.detail
    assert "loads only libbitsandbytes_cuda129" in f11.detail and "CPU library" in f11.detail
    assert fixes(d, "F11") == [
        f'{d.env.prefix}/bin/python -m pip install --no-deps "bitsandbytes==0.50.2"'
    ]


@pytest.mark.parametrize(
    ("version", "cuda", "lib"),
    [
        ("0.45.5", "12.8", 128),
        ("0.45.5", "12.9", None),
        ("0.45.0", "12.8", None),
        ("0.43.3", "12.6", None),
        ("0.49.2", "12.9", 129),
        ("0.49.2", "13.0", 130),
        ("0.49.2", "12.7", None),
        ("0.50.2", "12.9", 128),
        ("0.50.2", "12.0", 121),
        ("0.50.2", "13.1", 130),
        ("0.50.2", "11.7", 118),
        ("0.50.2", "14.0", None),
    ],
)
def test_bnb_library_choice_per_version(version: str, cuda: str, lib: int | None) -> None:
    """The library each release loads next to a torch of that CUDA (bitsandbytes/cextension.py
    per tag: exact before 0.50.0; from 0.50.0 the highest lower, else the lowest higher, of the
    same major)."""
    wheel = KB.bnb_wheel(version)
    assert wheel is not None
    assert wheel.lib_for(cuda) == lib


def test_pip_replaced_torch_rules_judge_the_torch_python_imports(tmp_path: Path) -> None:
    """`pip install torch==2.4.0` in the healthy env: pip uninstalled conda's torch metadata
    and files, conda-meta still lists pytorch 2.5.1. Every rule must look at 2.4.0."""
    stack = P.swap(
        P.healthy(),
        pip=[P.Wheel("torch", "2.4.0", requires=(TORCH_240_TRITON,), replaces="pytorch")],
    )
    d = diagnose(tmp_path, stack)
    assert {"F12", "F15", "F19"} <= set(ids(d)), doctor.render(d)
    f12 = next(i.finding for i in d.findings if i.finding.id == "F12")
    assert "replaced the files of conda's pytorch 2.5.1" in f12.detail
    f15 = next(i.finding for i in d.findings if i.finding.id == "F15")
    assert "torch 2.4.0 (pypi)" in f15.evidence
    f19 = next(i.finding for i in d.findings if i.finding.id == "F19")
    assert f19.detail == (
        "torch 2.4.0 pins triton 3.0.0, but Python imports torchtriton 3.1.0 (conda)"
    )
    rec = d.inventory.record("pytorch")
    assert rec is not None and rec.replaced_by == "torch 2.4.0 (pip)"
    assert "no known problems" not in doctor.render(d)


def test_pip_triton_over_conda_torchtriton_is_f19_with_the_restoring_fix(tmp_path: Path) -> None:
    stack = P.swap(P.healthy(), pip=[P.Wheel("triton", "3.0.0", replaces="torchtriton")])
    d = diagnose(tmp_path, stack)
    assert ids(d) == ["F19"], doctor.render(d)
    assert d.findings[0].finding.detail == (
        "torch 2.5.1 pins triton 3.1.0, but Python imports triton 3.0.0 (pip)"
    )
    assert fixes(d, "F19") == [
        f"{d.env.prefix}/bin/python -m pip uninstall -y triton",
        f'conda install -p {d.env.prefix} --force-reinstall "torchtriton=3.1.0=py311"',
    ]


def test_pip_triton_next_to_a_pip_torch_is_f19_with_the_pinned_wheel(tmp_path: Path) -> None:
    stack: Stack = (
        [P.PY311],
        [
            P.Wheel("torch", "2.4.0", requires=(TORCH_240_TRITON,)),
            P.Wheel("triton", "3.1.0"),
        ],
    )
    d = diagnose(tmp_path, stack)
    assert ids(d) == ["F19"]
    assert fixes(d, "F19") == [
        f'{d.env.prefix}/bin/python -m pip install --no-deps "triton==3.0.0"'
    ]
    # the marker in torch's requirement is evaluated for this env: no pin on python 3.13
    py313 = P.Rec("python", "3.13.1", "ha99a958_105_cp313", "conda-forge", requested=True)
    newer = ([py313], stack[1])
    assert "F19" not in ids(diagnose(tmp_path / "py313", newer))


def test_missing_unsloth_zoo_is_u1_with_the_companion_pin(tmp_path: Path) -> None:
    d = diagnose(tmp_path, P.swap(P.healthy(), drop=["unsloth_zoo"]))
    assert ids(d) == ["U1"]
    u1 = d.findings[0].finding
    assert u1.detail == (
        "unsloth 2024.12.12 requires packages that are not installed: unsloth_zoo is not "
        "installed (needs unsloth_zoo>=2024.12.7)"
    )
    assert fixes(d, "U1") == [
        f'{d.env.prefix}/bin/python -m pip install --no-deps "unsloth_zoo==2024.12.7"'
    ]


def test_conda_remove_xformers_is_u1_also_for_the_package_scope(tmp_path: Path) -> None:
    """What `conda remove xformers` leaves: unsloth's xformers requirement unmet. The
    post-command guard and `conda doctor` run the package rules only: they must see it too."""
    prefix = P.write_prefix(tmp_path / "env", P.swap(P.healthy(), drop=["xformers"]))
    for scopes in (("packages", "host", "env"), ("packages",)):
        d = doctor.diagnose(prefix, KB, scopes=scopes)
        assert ids(d) == ["U1"]
        assert (
            "xformers is not installed (needs xformers>=0.0.27.post2)"
            in d.findings[0].finding.detail
        )
    assert fixes(d, "U1") == [
        f"conda install -p {prefix} -c pytorch -c nvidia -c xformers -c conda-forge "
        '"xformers=0.0.28.post3=py311_cu12.1.0_pyt2.5.1"'
    ]


def _marker(prefix: Path, **fields: object) -> None:
    from conda_unsloth import marker

    marker.write(
        prefix,
        {
            "request": {"profile": None, "cuda": "12.1"},
            "profile": "pytorch",
            "knowledge_revision": KB.revision,
            "solver": "rattler 0.28.0",
            "channels": ["pytorch", "nvidia", "xformers", "conda-forge"],
            **fields,
        },
    )


def test_marker_create_failed_is_e1(tmp_path: Path) -> None:
    prefix = P.write_prefix(tmp_path / "env", P.healthy())
    _marker(
        prefix,
        status="failed",
        failure={
            "type": "InstallError",
            "message": "pip install failed: ERROR: No matching distribution",
        },
        created="2026-12-06T10:00:00Z",
    )
    d = doctor.diagnose(prefix, KB)
    assert ids(d) == ["E1"] and d.exit_code == 1
    assert d.findings[0].finding.detail == (
        "the marker says the create failed (2026-12-06T10:00:00Z): pip install failed: "
        "ERROR: No matching distribution"
    )
    assert fixes(d, "E1") == [f"conda unsloth create -p {prefix}-fixed"]
    assert "no known problems" not in doctor.render(d)


def test_marker_failed_verification_is_e2(tmp_path: Path) -> None:
    prefix = P.write_prefix(tmp_path / "env", P.healthy())
    _marker(
        prefix,
        status="ok",
        verification={
            "verdict": "fail",
            "checks": ["gpu.visible", "xformers.attention"],
            "failed": ["xformers.attention"],
            "time": "2026-12-06T11:00:00Z",
        },
    )
    d = doctor.diagnose(prefix, KB)
    assert ids(d) == ["E2"] and d.exit_code == 1
    assert d.findings[0].finding.detail == (
        "the recorded GPU verification failed (xformers.attention) on 2026-12-06T11:00:00Z"
    )
    assert fixes(d, "E2") == [f"conda unsloth verify -p {prefix}"]
    # a passed verification, or none recorded, is no finding
    _marker(prefix, status="ok", verification={"verdict": "pass", "failed": []})
    assert ids(doctor.diagnose(prefix, KB)) == []


def test_cli_doctor_reports_a_failed_create_and_verification(
    cli: Callable[..., Result], tmp_path: Path
) -> None:
    prefix = P.write_prefix(tmp_path / "env", P.healthy())
    _marker(
        prefix,
        status="failed",
        failure="verification failed: xformers.attention",
        verification={"verdict": "fail", "failed": ["xformers.attention"]},
    )
    r = cli("doctor", "-p", str(prefix))
    assert r.code == 1
    assert "E1 (error)" in r.out and "E2 (error)" in r.out
    assert "no known problems" not in r.out
    doc = json.loads(cli("doctor", "-p", str(prefix), "--json").out)
    assert [f["id"] for f in doc["findings"]] == ["E1", "E2"] and doc["ok"] is False


def test_xformers_without_kernels_for_the_gpu_is_f6_fake_gpu(tmp_path: Path) -> None:
    d = diagnose(tmp_path, healthy_conda_forge(), H100_CU129)
    assert ids(d) == ["F6"]
    f6 = d.findings[0].finding
    assert f6.detail == (
        "xformers 0.0.34 (conda-forge, CUDA 12.9) ships kernels for 8.0 8.9 10.0 12.0+PTX; "
        "not for sm_90"
    )
    assert [p.name for p in f6.packages] == ["xformers"]


@pytest.mark.parametrize("arch", ["10.3", "12.1"])
def test_new_blackwell_archs_need_cuda_12_9_builds_fake_gpu(tmp_path: Path, arch: str) -> None:
    """sm_103 and sm_121 came with CUDA 12.9: a CUDA 12.6 torch has no kernels for them (its
    9.0+PTX does not count); the 12.9 builds' 10.0/12.0 SASS serve them."""
    cu126: Stack = (
        [
            P.PY312,
            P.Rec("pytorch", "2.7.1", "cuda126_mkl_py312_h0_300", "conda-forge", dist="torch"),
            P.Rec("triton", "3.3.0", "cuda126py312h0_0", "conda-forge", dist="triton"),
        ],
        [],
    )
    host = HostFacts(driver_cuda="12.9", archs=(arch,))
    assert "F6" in ids(diagnose(tmp_path / "cu126", cu126, host))
    assert "F6" not in ids(diagnose(tmp_path / "cu129", healthy_conda_forge(), host))


def test_unknown_gpu_arch_is_a_note_not_coverage_fake_gpu(tmp_path: Path) -> None:
    d = diagnose(tmp_path, P.healthy(), HostFacts(driver_cuda="12.4", archs=("8.7",)))
    assert "F6" not in ids(d)
    assert any("sm_87 is not in the knowledge base" in n for n in d.notes)

"""`conda-unsloth solve` end to end on real local channels: the resolved stack is printed, the
lock is written only after validation passed, and bad input is a one-line error (exit 2) that
leaves the filesystem unchanged."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from tests.channels import write_conda_forge_profile, write_pytorch_profile
from tests.conftest import Result, tree

pytest.importorskip("rattler")


@pytest.fixture(autouse=True)
def _private_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONDA_UNSLOTH_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="module")
def pt_channels(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return write_pytorch_profile(tmp_path_factory.mktemp("pt"))


@pytest.fixture(scope="module")
def cf_channels(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return write_conda_forge_profile(tmp_path_factory.mktemp("cf"))


def chan_args(urls: list[str]) -> list[str]:
    return [a for u in urls for a in ("-c", u)]


def _env_file(path: Path, channels: list[str], deps: list[str], pip: Sequence[str] = ()) -> Path:
    """An environment.yml with these channels, conda dependencies and pip requirements."""
    text = "channels:\n" + "".join(f"  - {u}\n" for u in channels) + "dependencies:\n"
    text += "".join(f"  - {d}\n" for d in deps)
    if pip:
        text += "  - pip:\n" + "".join(f"      - '{p}'\n" for p in pip)
    path.write_text(text)
    return path


def test_solve_prints_stack_and_writes_explicit_lock(
    cli: Callable[..., Result], pt_channels: list[str], tmp_path: Path
) -> None:
    lock = tmp_path / "explicit.txt"
    r = cli("solve", "--cuda", "12.1", *chan_args(pt_channels), "--lock", str(lock))
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[0].startswith("solved ") and "__cuda=12.1=0" in lines[0]
    assert lines[1].split() == ["name", "version", "build", "channel"]
    assert ["pytorch", "2.5.1", "py3.11_cuda12.1_cudnn9.1.0_0", "pytorch"] in [
        ln.split() for ln in lines
    ]
    assert ["xformers", "0.0.28.post3", "py311_cu12.1.0_pyt2.5.1", "xformers"] in [
        ln.split() for ln in lines
    ]
    assert f"wrote {lock} (explicit)" in r.out
    text = lock.read_text()
    assert "@EXPLICIT" in text
    assert f"{pt_channels[0]}/linux-64/pytorch-2.5.1-py3.11_cuda12.1_cudnn9.1.0_0.tar.bz2#" in text


@pytest.mark.parametrize(
    ("name", "fmt", "marker"),
    [
        ("conda-lock.yml", None, "version: 1"),
        ("env.yml", None, "dependencies:"),
        ("lock.txt", "conda-lock", "version: 1"),
    ],
    ids=["conda-lock-by-name", "environment-by-name", "explicit-format-flag"],
)
def test_lock_format_choice(
    cli: Callable[..., Result],
    pt_channels: list[str],
    tmp_path: Path,
    name: str,
    fmt: str | None,
    marker: str,
) -> None:
    lock = tmp_path / name
    extra = ["--format", fmt] if fmt else []
    r = cli("solve", "--cuda", "12.4", *chan_args(pt_channels), "--lock", str(lock), *extra, "-q")
    assert r.code == 0, r.err
    assert marker in lock.read_text()


def test_json_is_one_document(cli: Callable[..., Result], cf_channels: list[str]) -> None:
    r = cli(
        "solve", "--profile", "conda-forge", "--cuda", "12.9", *chan_args(cf_channels), "--json"
    )
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["validation"] == "passed"
    torch = next(p for p in doc["packages"] if p["name"] == "pytorch")
    assert torch["build"] == "cuda129_mkl_py312_h8f3b5e1_300"
    assert doc["virtual_packages"][0] == "__cuda=12.9=0"
    assert doc["lock"] is None


def test_solve_from_env_file(
    cli: Callable[..., Result], pt_channels: list[str], tmp_path: Path
) -> None:
    env = _env_file(
        tmp_path / "environment.yml",
        pt_channels,
        [
            "python=3.11",
            "pytorch::pytorch=2.5.1=py3.11_cuda11.8_*",
            "pytorch-cuda=11.8",
            "pytorch-mutex=1.0=cuda",
            "mkl<2024.1",
        ],
    )
    r = cli("solve", "-f", str(env), "--json")
    assert r.code == 0, r.out
    doc = json.loads(r.out)
    assert doc["target"]["cuda"] == "11.8"  # from the file's pytorch-cuda pin
    builds = {p["name"]: p["build"] for p in doc["packages"]}
    assert builds["pytorch"] == "py3.11_cuda11.8_cudnn9.1.0_0"


def test_validation_failure_writes_nothing(
    cli: Callable[..., Result], pt_channels: list[str], tmp_path: Path
) -> None:
    env = _env_file(
        tmp_path / "environment.yml",
        pt_channels,
        ["python=3.11", "pytorch=2.5.1", "pytorch-cuda=12.1"],
    )
    before = tree(tmp_path)
    r = cli("solve", "-f", str(env), "--lock", str(tmp_path / "explicit.txt"))
    assert r.code == 1
    assert r.err.startswith("conda-unsloth: error: the rattler")
    assert "pytorch 2.5.1 py3.11_cpu_1 (pytorch) is a CPU build; the target is CUDA 12.1" in r.err
    assert "Traceback" not in r.err
    assert tree(tmp_path) == before


def test_unsatisfiable_exit_1_with_explanation_and_hint(
    cli: Callable[..., Result], pt_channels: list[str], tmp_path: Path
) -> None:
    env = _env_file(
        tmp_path / "environment.yml",
        pt_channels,
        ["python=3.12", "pytorch-cuda=12.1", "pytorch::pytorch=2.5.1", "xformers::xformers"],
    )
    r = cli("solve", "-f", str(env))
    assert r.code == 1
    assert r.err.startswith("conda-unsloth: error: Cannot solve the request because of:")
    assert (
        "hint: xformers-channel builds exist only for python 3.9–3.11; use --python 3.11" in r.err
    )


# ----------------------------------------------------------------------------- bad input


def _bad_env(tmp: Path) -> list[str]:
    p = tmp / "broken.yml"
    p.write_text("channels: [conda-forge\ndependencies:\n  - python\n")
    return ["-f", str(p)]


def _unknown_channel(tmp: Path) -> list[str]:
    return ["--cuda", "12.1", "-c", str(tmp / "no-such-channel")]


def _corrupt_repodata(tmp: Path) -> list[str]:
    urls = write_pytorch_profile(tmp / "chans")
    (tmp / "chans" / "nvidia" / "linux-64" / "repodata.json").write_text('{"packages": [')
    return ["--cuda", "12.1", *chan_args(urls)]


def _other_platform(tmp: Path) -> list[str]:
    return ["--cuda", "12.1", "--platform", "osx-arm64"]


def _other_platform_file(tmp: Path) -> list[str]:
    p = tmp / "env.yml"
    p.write_text("channels: [conda-forge]\ndependencies:\n  - conda-forge/osx-arm64::pytorch\n")
    return ["-f", str(p)]


def _lock_dir_missing(tmp: Path) -> list[str]:
    return ["--cuda", "12.1", "--lock", str(tmp / "missing" / "explicit.txt")]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_bad_env, "YAML syntax error at line"),
        (_unknown_channel, "does not exist or is not a directory"),
        (_corrupt_repodata, "cannot read local channel repodata"),
        (
            _other_platform,
            "osx-arm64': Unsloth GPU environments are built for linux-64 only",
        ),
        (_other_platform_file, "'conda-forge/osx-arm64::pytorch' is for platform osx-arm64"),
        (_lock_dir_missing, "does not exist"),
    ],
    ids=[
        "broken-env-yml",
        "unknown-channel-path",
        "unreadable-repodata",
        "other-platform",
        "other-platform-in-file",
        "lock-dir-missing",
    ],
)
def test_bad_input_one_line_exit_2(
    cli: Callable[..., Result], tmp_path: Path, make: Callable[[Path], list[str]], message: str
) -> None:
    args = make(tmp_path)
    before = tree(tmp_path)
    r = (
        cli("solve", *args, "--lock", str(tmp_path / "out.txt"))
        if "--lock" not in args
        else cli("solve", *args)
    )
    assert r.code == 2, (r.out, r.err)
    first = r.err.splitlines()[0]
    assert first.startswith("conda-unsloth: error: ") and message in first
    assert all(ln.startswith("hint: ") for ln in r.err.splitlines()[1:])
    assert "Traceback" not in r.err
    assert tree(tmp_path) == before


def test_subprocess_bad_channel_no_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "conda_unsloth",
            "solve",
            "--cuda",
            "12.1",
            "-c",
            str(tmp_path / "nope"),
        ],
        capture_output=True,
        text=True,
        env={
            "PATH": "/usr/bin:/bin",
            "CONDA_UNSLOTH_CACHE": str(tmp_path / "cache"),
            "CONDA_UNSLOTH_NVML": "0",
            "CONDA_UNSLOTH_NVIDIA_SMI": "",
        },
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("conda-unsloth: error: channel ")


# ----------------------------------------------------------------------------- review fixes


def test_range_cuda_pin_validates_against_the_solved_cuda(
    cli: Callable[..., Result], cf_channels: list[str], tmp_path: Path
) -> None:
    env = _env_file(
        tmp_path / "environment.yml",
        cf_channels,
        ["python=3.12", "pytorch", "cuda-version>=12.6,<13", "xformers"],
    )
    r = cli("solve", "-f", str(env), "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["target"]["cuda"] == "12.9"
    builds = {p["name"]: p["build"] for p in doc["packages"]}
    assert builds["pytorch"] == "cuda129_mkl_py312_h8f3b5e1_300"
    assert any(n.startswith("target CUDA 12.9: from the solved pytorch") for n in doc["notices"])


def test_validation_failure_from_file_hints_at_cuda_flag(
    cli: Callable[..., Result], pt_channels: list[str], tmp_path: Path
) -> None:
    env = _env_file(
        tmp_path / "environment.yml",
        pt_channels,
        ["python=3.11", "pytorch=2.5.1", "pytorch-cuda=12.1"],
    )
    r = cli("solve", "-f", str(env))
    assert r.code == 1
    assert r.err.splitlines()[-1] == (
        "hint: the target CUDA was 12.1 ('pytorch-cuda=12.1' in environment.yml); choose it "
        f"with conda-unsloth solve -f {env} --cuda X.Y"
    )
    assert "Traceback" not in r.err


def test_unpinned_pip_requirements_reach_the_lock_with_a_notice(
    cli: Callable[..., Result], pt_channels: list[str], tmp_path: Path
) -> None:
    env = _env_file(
        tmp_path / "environment.yml",
        pt_channels,
        [
            "python=3.11",
            "pytorch::pytorch=2.5.1=py3.11_cuda12.1_*",
            "pytorch-cuda=12.1",
            "pytorch-mutex=1.0=cuda",
            "mkl<2024.1",
        ],
        ["peft==0.14.0", "unsloth", "transformers>=4.46"],
    )
    lock = tmp_path / "explicit.txt"
    r = cli("solve", "-f", str(env), "--lock", str(lock))
    assert r.code == 0, r.err
    text = lock.read_text()
    assert "# pip peft==0.14.0\n# pip unsloth\n# pip transformers>=4.46\n" in text
    assert "notice: 2 pip requirement(s) are not name==version pins" in r.err
    assert ["unsloth", "(not", "pinned)", "pypi", "(pip)"] in [
        ln.split() for ln in r.out.splitlines()
    ]


def test_conda_override_glibc_reaches_the_solve(
    cli: Callable[..., Result],
    pt_channels: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONDA_OVERRIDE_GLIBC", "2.17")
    r = cli("solve", "--cuda", "12.1", *chan_args(pt_channels), "--json")
    assert r.code == 0, r.err
    assert "__glibc=2.17=0" in json.loads(r.out)["virtual_packages"]


def test_json_carries_the_notices(cli: Callable[..., Result], pt_channels: list[str]) -> None:
    r = cli("solve", "--cuda", "12.1", *chan_args(pt_channels), "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert "no GPU architecture known: kernels not checked (use --gpu-arch 8.0)" in doc["notices"]


@pytest.mark.parametrize(
    ("name", "marker"),
    [
        ("env.lock.yml", "version: 1"),
        ("explicit.txt", "@EXPLICIT"),
        ("environment.yaml", "dependencies:"),
        ("stack.lock", "@EXPLICIT"),
    ],
    ids=["lock-in-yml-name", "explicit-default-name", "yaml", "other-suffix"],
)
def test_format_from_name_like_export(
    cli: Callable[..., Result], pt_channels: list[str], tmp_path: Path, name: str, marker: str
) -> None:
    lock = tmp_path / name
    r = cli("solve", "--cuda", "12.1", *chan_args(pt_channels), "--lock", str(lock), "-q")
    assert r.code == 0, r.err
    assert marker in lock.read_text()


def test_lock_refuses_to_replace_a_foreign_file(
    cli: Callable[..., Result], pt_channels: list[str], tmp_path: Path
) -> None:
    lock = tmp_path / "explicit.txt"
    lock.write_text("my notes, not a lock\n")
    before = tree(tmp_path)
    r = cli("solve", "--cuda", "12.1", *chan_args(pt_channels), "--lock", str(lock))
    assert r.code == 2
    assert r.err.splitlines()[0] == (
        f"conda-unsloth: error: --lock {lock} exists and was not written by conda-unsloth; "
        "not replacing it"
    )
    assert tree(tmp_path) == before
    r = cli("solve", "--cuda", "12.1", *chan_args(pt_channels), "--lock", str(lock), "--force")
    assert r.code == 0, r.err
    assert "@EXPLICIT" in lock.read_text()
    # a file conda-unsloth wrote is replaced without --force
    r = cli("solve", "--cuda", "12.4", *chan_args(pt_channels), "--lock", str(lock))
    assert r.code == 0, r.err
    assert "cuda12.4" in lock.read_text()


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
def test_lock_never_replaces_the_input_file(
    cli: Callable[..., Result], pt_channels: list[str], tmp_path: Path, force: bool
) -> None:
    env = _env_file(
        tmp_path / "environment.yml",
        pt_channels,
        ["python=3.11", "pytorch::pytorch=2.5.1=py3.11_cuda12.1_*", "pytorch-cuda=12.1"],
    )
    env.write_text("# generated by conda-unsloth\n" + env.read_text())
    before = tree(tmp_path)
    args = ["--force"] if force else []
    r = cli("solve", "-f", str(env), "--lock", str(tmp_path / "." / "environment.yml"), *args)
    assert r.code == 2
    assert r.err.splitlines()[0].endswith("is the -f input; refusing to overwrite it")
    assert "Traceback" not in r.err
    assert tree(tmp_path) == before


WHOLE_SOLVE = """
import io, os, sys
from contextlib import redirect_stdout
from conda_unsloth.__main__ import main
out = io.StringIO()
with redirect_stdout(out):
    rc = main(sys.argv[1:])
print(rc, out.getvalue().count("validation: passed"))
print(sorted(m for m in sys.modules if m.split(".")[0] in ("packaging", "rich", "hashlib")
             or m in ("importlib.metadata", "conda_unsloth.install")))
sys.stdout.flush()
os._exit(0)  # as conda-unsloth leaves: py-rattler 0.28 may crash at shutdown
"""


def test_a_solve_into_a_pipe_imports_only_what_solving_needs(pt_channels: list[str]) -> None:
    """Issue 19: the whole `solve` command, output into a pipe, imports neither packaging
    (the checks of a planned stack are answered by the knowledge's table), importlib.metadata,
    hashlib (the bundle's digest), rich (a table into a pipe is plain columns; rich is for
    terminals) nor the installer."""
    argv = ["solve", "--cuda", "12.1", "--python", "3.11", "-q", *chan_args(pt_channels)]
    proc = subprocess.run(
        [sys.executable, "-c", WHOLE_SOLVE, *argv], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["0 1", "[]"], proc.stderr

"""`conda-unsloth env`: the real CLI writes the files the issue asks for, and refuses bad input
with one line, exit 2, no traceback and nothing written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from conda_unsloth import knowledge
from conda_unsloth.knowledge.packages import Package
from conda_unsloth.knowledge.rules import evaluate
from tests.conftest import Result, tree

KB = knowledge.load()


def test_cuda_12_1_env_file_has_the_pins_the_card_promises(
    cli: Callable[..., Result], tmp_path: Path
) -> None:
    out = tmp_path / "env.yml"
    r = cli("env", "--cuda", "12.1", "-o", str(out))
    assert r.code == 0, r.err
    text = out.read_text()
    data = YAML(typ="safe").load(text)
    deps = [d for d in data["dependencies"] if isinstance(d, str)]
    assert "pytorch-cuda=12.1" in deps
    pytorch = next(d for d in deps if d.startswith("pytorch::pytorch "))
    _, version, build = pytorch.split("::")[1].split(" ")
    assert build == "py3.11_cuda12.1_*", "a CUDA-only pytorch build pin"
    xformers = next(d for d in deps if d.startswith("xformers::xformers "))
    assert xformers.endswith(f"_pyt{version}"), (
        "xformers pinned to the build for that exact pytorch"
    )
    # `name version build` (not name=version=build): micromamba reads `=2.5.1=` as 2.5.1.*
    assert "pytorch-mutex 1.0 cuda" in deps and "mkl<2024.1" in deps
    # no `- nodefaults`: stock `conda env create -f` would fetch a channel of that name
    assert data["channels"] == ["pytorch", "nvidia", "xformers", "conda-forge"]
    pip = next(d for d in data["dependencies"] if isinstance(d, dict))["pip"]
    assert all("==" in p and not p.startswith("-") for p in pip), "every pip line a pin"
    # conda's torch stack first, so pip never replaces it (conda-lock refuses `-c FILE` lines)
    assert pip[:3] == [f"torch=={version}", f"xformers=={xformers.split()[1]}", "triton==3.1.0"]
    assert not (tmp_path / "env.pip-constraints.txt").exists()
    # no known-bad pair among what the file pins
    pkgs = [
        Package("python", "3.11.0"),
        Package("pytorch", version, build.replace("*", "0"), "pytorch"),
        Package("xformers", xformers.split()[1], xformers.split()[2], "xformers"),
    ]
    pkgs += [Package(p.split("==")[0], p.split("==")[1], installer="pip") for p in pip[3:]]
    assert [f.id for f in evaluate(pkgs, KB)] == []
    # every pin carries a comment saying why
    for line in text.splitlines():
        if line.lstrip().startswith("- ") and ("=" in line or "<" in line):
            assert "  # " in line, line


def test_conda_forge_variant(cli: Callable[..., Result], tmp_path: Path) -> None:
    out = tmp_path / "cf.yml"
    r = cli("env", "--profile", "conda-forge", "--cuda", "12.9", "-o", str(out))
    assert r.code == 0, r.err
    data = YAML(typ="safe").load(out.read_text())
    deps = [d for d in data["dependencies"] if isinstance(d, str)]
    assert data["channels"] == ["conda-forge"]
    assert "cuda-version=12.9" in deps
    assert any(d.startswith("conda-forge::pytorch ") and d.endswith(" cuda129*") for d in deps)
    assert any(d.startswith("conda-forge::xformers ") and d.endswith(" cuda_129*") for d in deps)
    assert not any(d.startswith("pytorch-cuda") for d in deps)


def test_yaml_matches_conda_style(cli: Callable[..., Result], tmp_path: Path) -> None:
    out = tmp_path / "e.yml"
    assert cli("env", "-n", "unsloth", "-o", str(out)).code == 0
    lines = out.read_text().splitlines()
    body = [ln for ln in lines if not ln.startswith("#")]
    assert body[0] == "name: unsloth" and body[1] == "channels:" and body[2] == "  - pytorch"
    keys = [ln.split(":")[0] for ln in body if ln and not ln.startswith(" ")]
    assert keys == ["name", "channels", "dependencies"], "conda's key order, not sorted"
    assert "  - pip:" in body and any(ln.startswith("      - unsloth==") for ln in body)


def test_json_dry_run_is_one_document_and_writes_nothing(
    cli: Callable[..., Result], tmp_path: Path
) -> None:
    os.chdir(tmp_path)
    r = cli("env", "--json", "--dry-run")
    assert r.code == 0
    doc = json.loads(r.out)
    assert doc["profile"] == "pytorch" and doc["target"]["cuda"] == "12.1"
    assert doc["files"] == [] and list(tmp_path.iterdir()) == []
    assert {c["name"] for c in doc["conda"]} >= {
        "python",
        "pytorch",
        "pytorch-cuda",
        "xformers",
        "torchtriton",
    }


def test_notice_when_no_gpu(cli: Callable[..., Result], tmp_path: Path) -> None:
    r = cli("env", "-o", str(tmp_path / "e.yml"))
    assert r.code == 0
    assert "no NVIDIA driver found: targeting CUDA 12.1" in r.err


def test_detected_driver_chooses_cuda_fake_gpu(
    cli: Callable[..., Result], fake_gpu: Callable[..., Path], tmp_path: Path
) -> None:
    fake_gpu(driver="520.61.05", cuda="11.8", gpus=(("NVIDIA A100-SXM4-80GB", "8.0"),))
    r = cli("env", "--json", "--dry-run")
    doc = json.loads(r.out)
    assert doc["target"]["cuda"] == "11.8" and doc["target"]["gpu_archs"] == ["8.0"]


def test_cuda_newer_than_driver_refused_fake_gpu(
    cli: Callable[..., Result], fake_gpu: Callable[..., Path], tmp_path: Path
) -> None:
    fake_gpu(driver="535.104.05", cuda="12.2")
    out = tmp_path / "e.yml"
    r = cli("env", "--cuda", "12.4", "-o", str(out))
    assert r.code == 2
    assert "CUDA 12.4 is newer than driver 535.104.05 supports" in r.err
    assert not out.exists()


def test_existing_foreign_file_is_not_replaced(cli: Callable[..., Result], tmp_path: Path) -> None:
    out = tmp_path / "environment.yml"
    out.write_text("name: mine\n")
    r = cli("env", "-o", str(out))
    assert r.code == 2 and "not written by conda-unsloth" in r.err
    assert out.read_text() == "name: mine\n"
    assert cli("env", "-o", str(out), "--force").code == 0
    assert "Generated by conda-unsloth" in out.read_text()
    assert cli("env", "-o", str(out), "--cuda", "11.8").code == 0, (
        "our own file may be regenerated"
    )


BAD = [
    ("cuda-12.x", ["--cuda", "12.x"], "--cuda '12.x' is not a CUDA version"),
    ("cuda-99", ["--cuda", "99"], "--cuda '99' is not a CUDA version"),
    ("cuda-not-offered", ["--cuda", "10.2"], "CUDA 10.2 is not offered by profile pytorch"),
    ("python-2.7", ["--python", "2.7"], "--python 2.7 is not supported"),
    ("unknown-torch", ["--torch", "2.99.0"], "--torch 2.99.0 is not built on profile pytorch"),
    (
        "contradictory-profile-cuda",
        ["--profile", "pytorch", "--cuda", "12.9"],
        "nearest valid: --profile conda-forge --cuda 12.9",
    ),
    (
        "contradictory-torch-xformers",
        ["--torch", "2.5.1", "--xformers", "0.0.28.post1"],
        "no consistent stack",
    ),
    ("seed-torch", ["--torch", "2.3.1"], "F1"),
    ("unknown-profile", ["--profile", "pip"], "--profile 'pip' is not a profile"),
    (
        "unknown-unsloth",
        ["--unsloth", "1999.1"],
        "--unsloth '1999.1' is not in the knowledge base",
    ),
    ("unknown-flag", ["--cuda-version", "12.1"], "unrecognized arguments: --cuda-version"),
    ("bad-platform", ["--platform", "osx-arm64"], "linux-64 only"),
]


@pytest.mark.parametrize(("argv", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_one_line_exit_2_nothing_written(
    cli: Callable[..., Result], tmp_path: Path, argv: list[str], message: str
) -> None:
    before = tree(tmp_path)
    r = cli("env", *argv, "-o", str(tmp_path / "e.yml"))
    assert r.code == 2
    assert message in r.err
    first = r.err.splitlines()[0]
    assert first.startswith("conda-unsloth: error: ") and message in first
    assert all(ln.startswith("hint: ") for ln in r.err.splitlines()[1:])
    assert "Traceback" not in r.err + r.out
    assert tree(tmp_path) == before


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing-dir", "directory"),
        ("read-only-dir", "not writable"),
        ("is-a-directory", "is a directory"),
    ],
    ids=["missing-dir", "read-only-dir", "is-a-directory"],
)
def test_unwritable_output(
    cli: Callable[..., Result], tmp_path: Path, setup: str, message: str
) -> None:
    if setup == "missing-dir":
        out = tmp_path / "nope" / "env.yml"
    elif setup == "read-only-dir":
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        if os.access(ro, os.W_OK):  # root ignores permission bits
            ro.chmod(0o700)
            pytest.skip("running as a user that can write read-only directories (root)")
        out = ro / "env.yml"
    else:
        out = tmp_path / "adir"
        out.mkdir()
    before = tree(tmp_path)
    r = cli("env", "-o", str(out))
    assert r.code == 2 and message in r.err and "Traceback" not in r.err
    assert tree(tmp_path) == before


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("", "the file name is empty"),
        (".", "-o .: is a directory; give a file name like ./environment.yml"),
        ("/", "-o /: is a directory; give a file name like /environment.yml"),
        ("nodir/", "-o nodir/: directory nodir does not exist"),
        ("-", "-o -: not a file name"),  # wrote a file named "-"
    ],
    ids=["empty", "cwd", "root", "missing-dir-with-slash", "dash"],
)
def test_output_that_names_no_file_is_refused(
    cli: Callable[..., Result],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    output: str,
    message: str,
) -> None:
    """These gave a traceback (pathlib's with_name) or, for 'nodir/', wrote a file 'nodir'."""
    monkeypatch.chdir(tmp_path)
    before = tree(tmp_path)
    r = cli("env", "--cuda", "12.1", "-o", output)
    assert r.code == 2 and message in r.err and "Traceback" not in r.err, r.err
    assert len(r.err.splitlines()) <= 2  # the error, and at most one hint
    assert tree(tmp_path) == before


def test_read_only_file_system_simulated_by_a_file_as_parent(
    cli: Callable[..., Result], tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = cli("env", "-o", str(blocker / "env.yml"))
    assert r.code == 2 and "Traceback" not in r.err


def test_broken_knowledge_file_via_flag(cli: Callable[..., Result], tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    shutil.copytree(
        knowledge.default_dir(), kb, ignore=shutil.ignore_patterns("*.py", "__pycache__")
    )
    (kb / "compat.yaml").write_text(
        (kb / "compat.yaml").read_text().replace("default_cuda: '12.1'", "default_cuda: 12.1")
    )
    out = tmp_path / "e.yml"
    r = cli("env", "--knowledge", str(kb), "-o", str(out))
    assert r.code == 2
    assert (
        "knowledge file compat.yaml: profiles.pytorch.: 'default_cuda' is the number 12.1" in r.err
    )
    assert not out.exists()


def test_json_error_is_a_json_document(cli: Callable[..., Result]) -> None:
    r = cli("env", "--json", "--dry-run", "--cuda", "12.x")
    assert r.code == 2
    doc = json.loads(r.out)
    assert doc["error"] == "UsageError" and doc["exit_code"] == 2


def test_module_entry_point_and_plan_alias_in_a_subprocess(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CONDA_OVERRIDE_CUDA"}
    env.update(CONDA_UNSLOTH_NVML="0", CONDA_UNSLOTH_NVIDIA_SMI="")
    proc = subprocess.run(
        [sys.executable, "-m", "conda_unsloth", "plan", "--cuda", "12.4", "-o", "x.yml", "-q"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "pytorch-cuda=12.4" in (tmp_path / "x.yml").read_text()
    bad = subprocess.run(
        [sys.executable, "-m", "conda_unsloth", "env", "--cuda", "12.x"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) <= 2


@pytest.mark.parametrize("tool", [None, "micromamba", "pixi"])
def test_the_next_command_survives_a_path_with_a_space(
    cli: Callable[..., Result], tmp_path: Path, tool: str | None
) -> None:
    """The printed `next:` command, pasted into a shell, names the file written."""
    import shlex

    folder = tmp_path / "my envs"
    folder.mkdir()
    out = folder / ("pixi.toml" if tool == "pixi" else "env.yml")
    r = cli("env", "--cuda", "12.1", "-o", str(out), *(["--for", tool] if tool else []))
    assert r.code == 0, r.err
    nxt = next(ln for ln in (r.out + r.err).splitlines() if ln.startswith("next: "))
    words = shlex.split(nxt.removeprefix("next: "))
    assert (str(folder) if tool == "pixi" else str(out)) in words, nxt


def test_activate_hint_quotes_the_prefix() -> None:
    from conda_unsloth.cli._shared import activate_hint
    from conda_unsloth.runtime import standalone

    prefix = Path("/tmp/my envs/unsloth")
    hint = activate_hint(None, prefix, standalone())
    assert "'/tmp/my envs/unsloth" in hint, hint


def test_a_table_into_a_pipe_keeps_every_row_on_one_line() -> None:
    """Into a log or a pipe every row is one line, however long its cells (grep finds it
    whole); columns line up two spaces apart. (On a terminal, rich folds to its width:
    tests/cli/test_terminal.py.)"""
    import io

    from conda_unsloth.cli._shared import table

    why = "a reason " * 30
    rows: list[tuple[str, ...]] = [
        ("pytorch", "2.5.1", why.strip()),
        ("xformers-long-name", "0.0.28.post3", "x"),
    ]
    out = io.StringIO()
    table(rows, ("package", "version", "why"), out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[1].endswith(why.strip()) and lines[1].startswith("pytorch ")
    assert lines[0].index("version") == lines[1].index("2.5.1") == lines[2].index("0.0.28")
    assert all(line == line.rstrip() for line in lines)

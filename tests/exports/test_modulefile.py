"""Modulefiles loaded by the real Lmod and the real Environment Modules ``modulecmd.tcl``.

The tools come from Debian's ``lmod`` and ``environment-modules`` packages
(``scripts/install-hpc-tools.sh`` installs both); tests that need one skip when it is absent.
The environment is a fake prefix (tests/exports/moduletools.py): conda-meta records copied from a real pytorch
channel install, activation scripts, ``conda-meta/state`` variables, and awkward paths.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conda_unsloth.errors import UsageError
from conda_unsloth.exports import modulefile as mf
from tests.exports.moduletools import CLEAN_PATH, STATE, lmod_cmd, make_prefix, tcl_cmd


def write_module(tree: Path, fmt: str, name: str, prefix: Path, family: str = "conda_env") -> Path:
    text = mf.render(fmt, name, mf.read_facts(prefix), family)
    path = mf.output_path(tree, name, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def run_session(
    tool: str, tree: Path, steps: list[str], tmp: Path, extra_env: dict[str, str] | None = None
) -> tuple[list[dict[str, str]], subprocess.CompletedProcess[str]]:
    """Run ``module <step>`` commands in one bash session (the real tool's output is eval'd,
    as the ``module`` shell function does) and snapshot the environment before and after
    each step. Returns the snapshots and the finished process."""
    cmd = f"{lmod_cmd()} bash" if tool == "lmod" else f"tclsh {tcl_cmd()} bash"
    snaps = tmp / "snaps"
    snaps.mkdir(exist_ok=True)
    lines = ["set -u", f"env -0 > {snaps}/0"]
    for i, step in enumerate(steps, 1):
        lines.append(f'out="$({cmd} {step})" || {{ echo "step {i} failed" >&2; exit 10; }}')
        lines.append('eval "$out"')
        lines.append(f"env -0 > {snaps}/{i}")
    env = {
        "PATH": CLEAN_PATH,
        "HOME": str(tmp),
        "MODULEPATH": str(tree),
        "CONDA_PREFIX": "/previous/env",
        "LANG": "C.UTF-8",
    }
    env.update(extra_env or {})
    proc = subprocess.run(
        ["bash", "--noprofile", "--norc", "-c", "\n".join(lines)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = []
    for f in sorted(snaps.iterdir(), key=lambda p: int(p.name)):
        pairs = [e.split("=", 1) for e in f.read_text().split("\0") if "=" in e]
        out.append(dict(pairs))
    return out, proc


BOOKKEEPING = (
    "_ModuleTable",
    "__LMOD",
    "LMOD_",
    "_LMFILES_",
    "LOADEDMODULES",
    "__MODULES_",
    "MODULES_",
    "_",
    "SHLVL",
    "PWD",
    "OLDPWD",
    "MODULEPATH",
    "MODULESHOME",
)


def user_visible(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if not k.startswith(BOOKKEEPING)}


def check_loaded(env: dict[str, str], prefix: Path) -> None:
    assert env["PATH"].split(":")[0] == str(prefix / "bin")
    assert env["PATH"].split(":")[1:] == CLEAN_PATH.split(":")
    assert env["CONDA_PREFIX"] == str(prefix)
    assert env["CONDA_DEFAULT_ENV"] == str(prefix)
    assert env["PYTHONNOUSERSITE"] == "1"
    assert env["UNSLOTH_T_HOME"] == f"{prefix}/share/cuda"  # sees CONDA_PREFIX
    assert env["UNSLOTH_T_FIRST"] == "one two"
    assert env["UNSLOTH_T_ORDER"] == "one two-then-20"  # 10-*.sh ran before 20-*.sh
    assert env["UNSLOTH_T_STATE"] == "from conda-meta/state"
    assert "UNSLOTH_T_CSH" not in env  # csh scripts are not for bash
    assert "LD_LIBRARY_PATH" not in env


PREFIX_DIRS = {
    "space": "unsloth env 2024.9",
    "single-quote": "it's unsloth",
}
# '$' is left out: Modules 5.2's source-sh reads bash's `declare -x` output and keeps the
# backslash bash puts before '$' (a Modules limitation, noted in docs/hpc.md).
TCL_ONLY_DIRS = {
    "tcl-specials": 'odd "env" [x] {y};z\\w',
}
TCL_DIRS: dict[str, str] = {**PREFIX_DIRS, **TCL_ONLY_DIRS}


@pytest.mark.parametrize("dirname", list(PREFIX_DIRS.values()), ids=list(PREFIX_DIRS))
def test_lmod_load_then_unload_restores_env(tmp_path: Path, dirname: str) -> None:
    prefix = make_prefix(tmp_path / "apps", dirname)
    tree = tmp_path / "modulefiles"
    write_module(tree, "lmod", "unsloth/2024.9", prefix)
    snaps, proc = run_session("lmod", tree, ["load unsloth/2024.9", "unload unsloth"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    before, loaded, after = snaps
    check_loaded(loaded, prefix)
    assert user_visible(after) == user_visible(before)
    assert after["CONDA_PREFIX"] == "/previous/env"  # pushenv restored it


@pytest.mark.parametrize(
    "dirname",
    list(TCL_DIRS.values()),
    ids=list(TCL_DIRS),
)
def test_tcl_load_then_unload_restores_env(tmp_path: Path, dirname: str) -> None:
    prefix = make_prefix(tmp_path / "apps", dirname)
    tree = tmp_path / "modulefiles"
    write_module(tree, "tcl", "unsloth/2024.9", prefix)
    snaps, proc = run_session("tcl", tree, ["load unsloth/2024.9", "unload unsloth"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    before, loaded, after = snaps
    check_loaded(loaded, prefix)
    assert user_visible(after) == user_visible(before)
    assert after["CONDA_PREFIX"] == "/previous/env"


def test_lmod_second_env_of_the_family_swaps_the_first_out(tmp_path: Path) -> None:
    a = make_prefix(tmp_path / "apps", "a")
    b = make_prefix(tmp_path / "apps", "b")
    tree = tmp_path / "modulefiles"
    write_module(tree, "lmod", "unsloth/2024.9", a)
    write_module(tree, "lmod", "myenv/1.0", b)
    snaps, proc = run_session("lmod", tree, ["load unsloth/2024.9", "load myenv/1.0"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    both = snaps[2]
    check_loaded(both, b)
    assert str(a / "bin") not in both["PATH"].split(":")
    assert both["LOADEDMODULES"] == "myenv/1.0"


def test_lmod_second_env_of_the_family_refused_without_autoswap(tmp_path: Path) -> None:
    a = make_prefix(tmp_path / "apps", "a")
    b = make_prefix(tmp_path / "apps", "b")
    tree = tmp_path / "modulefiles"
    write_module(tree, "lmod", "unsloth/2024.9", a)
    write_module(tree, "lmod", "myenv/1.0", b)
    snaps, proc = run_session(
        "lmod",
        tree,
        ["load unsloth/2024.9", "load myenv/1.0"],
        tmp_path,
        {"LMOD_AUTO_SWAP": "no"},
    )
    # Lmod prints the error and emits no environment change for the second load
    assert "family" in proc.stderr.lower() or "conda_env" in proc.stderr
    last = snaps[-1]
    check_loaded(last, a)
    assert str(b / "bin") not in last["PATH"].split(":")


def test_tcl_second_env_of_the_family_conflicts(tmp_path: Path) -> None:
    a = make_prefix(tmp_path / "apps", "a")
    b = make_prefix(tmp_path / "apps", "b")
    tree = tmp_path / "modulefiles"
    write_module(tree, "tcl", "unsloth/2024.9", a)
    write_module(tree, "tcl", "myenv/1.0", b)
    snaps, proc = run_session("tcl", tree, ["load unsloth/2024.9", "load myenv/1.0"], tmp_path)
    assert "conflict" in proc.stderr.lower()
    last = snaps[-1]
    check_loaded(last, a)
    assert str(b / "bin") not in last["PATH"].split(":")
    assert last["LOADEDMODULES"] == "unsloth/2024.9"


@pytest.mark.parametrize("fmt", ["lmod", "tcl"])
def test_whatis_shows_stack_versions_real_tool(tmp_path: Path, fmt: str) -> None:
    prefix = make_prefix(tmp_path / "apps")
    tree = tmp_path / "modulefiles"
    write_module(tree, fmt, "unsloth/2024.9", prefix)
    cmd = [lmod_cmd(), "bash"] if fmt == "lmod" else ["tclsh", tcl_cmd(), "bash"]
    proc = subprocess.run(
        [*cmd, "whatis", "unsloth/2024.9"],
        env={"PATH": CLEAN_PATH, "HOME": str(tmp_path), "MODULEPATH": str(tree)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    text = proc.stdout + proc.stderr
    assert "pytorch 2.4.1 (py3.11_cuda12.1_cudnn9.1.0_0)" in text
    assert "xformers 0.0.28.post1 (py311_cu12.1.0_pyt2.4.1)" in text
    assert "CUDA 12.1" in text
    assert "unsloth 2024.9.post4 (pip)" in text


# ----------------------------------------------------------------------------- no tools needed


def test_read_facts_from_conda_meta_and_dist_info(tmp_path: Path) -> None:
    prefix = make_prefix(tmp_path)
    facts = mf.read_facts(prefix)
    assert facts.versions == {
        "python": "3.11.9",
        "pytorch": "2.4.1 (py3.11_cuda12.1_cudnn9.1.0_0)",
        "xformers": "0.0.28.post1 (py311_cu12.1.0_pyt2.4.1)",
        "unsloth": "2024.9.post4 (pip)",
    }
    assert facts.cuda == "12.1"
    assert [p.name for p in facts.activate_scripts] == ["10-cuda.sh", "20-order.sh"]
    assert facts.env_vars == {"UNSLOTH_T_STATE": "from conda-meta/state"}


def test_read_facts_cuda_from_conda_forge_build_string(tmp_path: Path) -> None:
    meta = tmp_path / "env" / "conda-meta"
    meta.mkdir(parents=True)
    rec = {"name": "pytorch", "version": "2.8.0", "build": "cuda129_mkl_py312_h1f7b3c5_300"}
    (meta / "pytorch-2.8.0-cuda129_mkl_py312_h1f7b3c5_300.json").write_text(json.dumps(rec))
    assert mf.read_facts(tmp_path / "env").cuda == "12.9"


@pytest.mark.parametrize("fmt", ["lmod", "tcl"])
def test_rendered_file_never_edits_ld_library_path(tmp_path: Path, fmt: str) -> None:
    text = mf.render(fmt, "unsloth/2024.9", mf.read_facts(make_prefix(tmp_path)), "conda_env")
    assert "LD_LIBRARY_PATH" not in text.replace("LD_LIBRARY_PATH is not", "")


@pytest.mark.parametrize(
    ("fmt", "name", "expected"),
    [
        ("lmod", "unsloth/2024.9", "unsloth/2024.9.lua"),
        ("tcl", "unsloth/2024.9", "unsloth/2024.9"),
        ("lmod", "ai/unsloth/2024.9-cu121", "ai/unsloth/2024.9-cu121.lua"),
        ("tcl", "unsloth", "unsloth"),
    ],
    ids=["lmod", "tcl", "lmod-3-levels", "tcl-no-version"],
)
def test_output_path(tmp_path: Path, fmt: str, name: str, expected: str) -> None:
    assert mf.output_path(tmp_path, name, fmt) == tmp_path / expected


@pytest.mark.parametrize(
    "name",
    ["", "/abs/1.0", "unsloth/../x", "unsloth//1", "uns loth/1", "unsloth/1.lua", "-x/1", "a/b$"],
    ids=["empty", "absolute", "dotdot", "empty-part", "space", "lua-ext", "dash", "dollar"],
)
def test_bad_module_names_refused(name: str) -> None:
    with pytest.raises(UsageError):
        mf.validate_name(name, "lmod")


def test_lmod_refuses_script_path_source_sh_cannot_pass(tmp_path: Path) -> None:
    prefix = make_prefix(tmp_path, 'has "double" quotes')
    with pytest.raises(UsageError, match="source_sh"):
        mf.render("lmod", "unsloth/1", mf.read_facts(prefix), "conda_env")


@pytest.mark.parametrize("fmt", ["tcl", "lmod"])
@pytest.mark.parametrize("bad", ["line\nbreak", "cr\rhere", "tab\there", "esc\x1bhere"])
def test_control_character_in_prefix_is_refused(tmp_path: Path, fmt: str, bad: str) -> None:
    """A newline in the prefix would end the header comment line (issue 16 #5): refused."""
    prefix = make_prefix(tmp_path, bad)
    with pytest.raises(UsageError, match="prefix .* contains a control character") as info:
        mf.render(fmt, "unsloth/1", mf.read_facts(prefix), "conda_env")
    assert "\n" not in info.value.message


# values that would run a command if they were not quoted for the language they are written in
INJECTION_VARS = {
    "UNSLOTH_T_LUA": 'a"; os.execute("touch {pwned}") --',
    "UNSLOTH_T_TCL": "[exec touch {pwned}] $HOME {{x",
    "UNSLOTH_T_SHELL": "$(touch {pwned}) `touch {pwned}`; touch {pwned}",
    "UNSLOTH_T_TAB": "one\ttwo",
}


@pytest.mark.parametrize("fmt", ["lmod", "tcl"])
def test_hostile_values_reach_the_env_verbatim_and_run_nothing_real_tool(
    tmp_path: Path, fmt: str
) -> None:
    """Issue 16 #5: every value we write into a modulefile is quoted for Lua / Tcl; loaded by
    the real tool, each variable holds exactly its text and no command ran."""
    pwned = tmp_path / "PWNED"
    prefix = make_prefix(tmp_path / "apps", "x]]=]]; os.exit(1) -- [y] {z}")
    values = {k: v.format(pwned=pwned) for k, v in INJECTION_VARS.items()}
    state = {"env_vars": {**STATE["env_vars"], **values}}
    (prefix / "conda-meta" / "state").write_text(json.dumps(state))
    tree = tmp_path / "modulefiles"
    write_module(tree, fmt, "unsloth/2024.9", prefix)
    snaps, proc = run_session(fmt, tree, ["load unsloth/2024.9", "unload unsloth"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    before, loaded, after = snaps
    check_loaded(loaded, prefix)
    for key, value in values.items():
        assert loaded[key] == value, key
    assert user_visible(after) == user_visible(before)
    assert not pwned.exists()


@pytest.mark.parametrize("fmt", ["lmod", "tcl"])
@pytest.mark.parametrize("value", ["one\nid", "cr\rhere", "esc\x1b[2J", "nul-free\x7f"])
def test_control_character_in_a_state_value_is_refused(
    tmp_path: Path, fmt: str, value: str
) -> None:
    """Lmod 8.6 and Modules 5.2 both print a value's newline raw into their bash output
    (``V=one<newline>id;``), where it starts a command: values with control characters are
    refused (a tab is kept: both tools escape it)."""
    prefix = make_prefix(tmp_path)
    (prefix / "conda-meta" / "state").write_text(json.dumps({"env_vars": {"V": value}}))
    with pytest.raises(UsageError, match="conda-meta/state variable V has a control"):
        mf.render(fmt, "unsloth/1", mf.read_facts(prefix), "conda_env")

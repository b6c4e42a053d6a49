"""`conda unsloth env --for pixi`: a pixi.toml with the environment.yml's pins, read back with
a TOML parser and compared pin by pin with rattler's reading of the environment.yml (pixi reads
versions with rattler's rules). Its validation against pixi's published schema is in
tests/micromamba/test_pixi_schema.py (the schema is not part of this repository)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conda_unsloth import knowledge, spec
from conda_unsloth.exports import pixi
from conda_unsloth.host import Host
from conda_unsloth.select import Request, select
from tests.conftest import Result, tree

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

KB = knowledge.load()
PAIRS = [(p.name, c) for p in KB.profiles.values() for c in p.cudas]


def planned(profile: str, cuda: str) -> tuple[Any, spec.EnvSpec, dict[str, Any]]:
    sel = select(Request(profile=profile, cuda=cuda), Host(platform="linux-64"), KB)
    env = spec.from_selection(sel, None, "pixi")
    return sel, env, tomllib.loads(pixi.render(sel, env))


def as_matchspec(name: str, value: str | dict[str, str]) -> str:
    """A pixi dependency as the match spec string rattler would build from it."""
    if isinstance(value, str):
        return f"{name} {value}"
    chan = f"{value['channel']}::" if "channel" in value else ""
    return f"{chan}{name} {value.get('version', '*')} {value.get('build', '')}".strip()


@pytest.mark.parametrize(("profile", "cuda"), PAIRS, ids=[f"{p}-{c}" for p, c in PAIRS])
def test_same_pins_as_the_environment_yml(profile: str, cuda: str) -> None:
    import rattler

    sel, env, doc = planned(profile, cuda)
    assert doc == pixi.manifest(sel, env)  # what is written is what the writer meant
    deps = doc["dependencies"]
    yml = {rattler.MatchSpec(d.spec).name.normalized: d.spec for d in env.conda if d.spec != "pip"}
    assert set(deps) == set(yml)
    for name, value in deps.items():
        ours, theirs = rattler.MatchSpec(as_matchspec(name, value)), rattler.MatchSpec(yml[name])
        assert str(ours.version or "*") == str(theirs.version or "*"), name
        assert str(ours.build) == str(theirs.build), name
        assert (ours.channel and ours.channel.name) == (theirs.channel and theirs.channel.name)
    ws = doc["workspace"]
    assert ws["channels"] == [c for c in env.channels if c != "nodefaults"]
    assert ws["channel-priority"] == "strict"
    assert ws["platforms"] == [{"platform": "linux-64", "cuda": cuda}]
    assert doc["pypi-dependencies"] == {
        d.spec.split("==")[0]: "==" + d.spec.split("==")[1] for d in env.pip
    }
    # conda's torch/triton/xformers are known to the PyPI solve as installed
    mapped = {k: v for m in ws["conda-pypi-map"].values() for k, v in m["mapping"].items()}
    assert mapped == {
        "pytorch": "torch",
        sel.profile.triton_package: "triton",
        "xformers": "xformers",
    }


def test_python_and_cuda_stay_fuzzy_as_in_conda() -> None:
    """`python=3.11` is 3.11.* in conda; a bare "3.11" is exactly 3.11 to pixi (rattler)."""
    _, _, doc = planned("pytorch", "12.1")
    assert doc["dependencies"]["python"] == "3.11.*"
    assert doc["dependencies"]["pytorch-cuda"] == "12.1.*"
    assert doc["dependencies"]["pytorch"] == {
        "version": "==2.5.1", "build": "py3.11_cuda12.1_*", "channel": "pytorch",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("python=3.11", ("python", "3.11.*")),
        ("pytorch-mutex 1.0 cuda", ("pytorch-mutex", {"version": "==1.0", "build": "cuda"})),
        ("mkl<2024.1", ("mkl", "<2024.1")),
        ("torchvision", ("torchvision", "*")),
        ("x>=1.2,<2", ("x", ">=1.2,<2")),
        ("x==1.2", ("x", "==1.2")),
        ("pytorch-mutex=1.0=cuda", ("pytorch-mutex", {"version": "==1.0", "build": "cuda"})),
        ("c::x", ("x", {"version": "*", "channel": "c"})),
    ],
)
def test_dependency(given: str, expected: tuple[str, Any]) -> None:
    assert pixi.dependency(given) == expected


def test_env_for_pixi_writes_pixi_toml(
    cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    r = cli("env", "--cuda", "12.1", "--for", "pixi", "--dry-run", "--quiet")
    assert r.code == 0 and tree(tmp_path) == {}
    assert tomllib.loads(r.out)["workspace"]["channels"][0] == "pytorch"
    r = cli("env", "--cuda", "12.1", "--for", "pixi")
    assert r.code == 0, r.err
    assert sorted(os.listdir(tmp_path)) == ["pixi.toml"]
    assert "next: cd . && pixi install" in r.out
    r = cli("env", "--cuda", "12.1", "--for", "pixi", "--json", "--dry-run")
    doc = json.loads(r.out)
    assert doc["for"] == "pixi" and tomllib.loads(doc["pixi_toml"])["pypi-dependencies"]


def test_env_for_pixi_never_replaces_a_users_file(
    cli: Callable[..., Result], tmp_path: Path
) -> None:
    mine = tmp_path / "pixi.toml"
    mine.write_text('[workspace]\nname = "mine"\n')
    r = cli("env", "--for", "pixi", "-o", str(mine))
    assert r.code == 2 and "not written by conda-unsloth" in r.err
    assert mine.read_text() == '[workspace]\nname = "mine"\n'

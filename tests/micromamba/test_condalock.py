"""conda-lock (PyPI, the test extra) reads every envs/ file, and its lock of one builds the
reference env with micromamba (issue 14 item 6, issue 21 item 1).

conda-lock resolves the ``pip:`` section with its own PyPI solver. It takes conda's packages as
installed only under their PyPI names, from a conda->PyPI name mapping (by default conda-forge's,
downloaded; here a local file, as ``--pypi_to_conda_lookup_file`` allows): the pytorch channel's
``torchtriton`` is not in conda-forge's mapping. The ``torch==``/``triton==``/``xformers==``
pins of the ``pip:`` section keep its PyPI solve at conda's versions either way; without them it
takes the newest torch the index has. The local index is a PEP 503 folder served on 127.0.0.1,
named in a copy of the file by conda-lock's own keys (``pip-repositories``,
``allow-pypi-requests``).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests import envbuild
from tests.channels import serve
from tests.micromamba import standins
from tests.micromamba.conftest import ENVS, Reference, Run, Tools, copy, run, same_env

MAPPING = """\
torch: {conda_name: pytorch, pypi_name: torch}
triton: {conda_name: torchtriton, pypi_name: triton}
xformers: {conda_name: xformers, pypi_name: xformers}
"""
NO_MAPPING = "pip: {conda_name: pip, pypi_name: pip}\n"
PARSE = """
import json, pathlib, sys
from conda_lock.src_parser.environment_yaml import parse_environment_file
try:
    spec = parse_environment_file(pathlib.Path(sys.argv[1]), ["linux-64"], mapping_url=sys.argv[2])
except Exception as exc:
    print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
    raise SystemExit(0)
deps = spec.dependencies["linux-64"]
print(json.dumps([[d.manager, d.name, d.version, getattr(d, "build", None)] for d in deps]))
"""


def parse(path: Path, mapping: Path) -> Any:
    """conda-lock's own environment.yml parser (in a process of its own: importing conda-lock
    raises warnings our filterwarnings=error would turn into errors)."""
    r = run([sys.executable, "-c", PARSE, str(path), str(mapping)], os.environ)
    assert r.code == 0, r
    return json.loads(r.out)


@pytest.mark.parametrize(("profile", "cuda"), standins.pairs())
def test_conda_lock_parses_every_envs_file(profile: str, cuda: str, tmp_path: Path) -> None:
    mapping = tmp_path / "mapping.yml"
    mapping.write_text(MAPPING)
    deps = parse(ENVS / f"{profile}-cuda{cuda}.yml", mapping)
    assert isinstance(deps, list), deps
    pip = {name: version for manager, name, version, _ in deps if manager == "pip"}
    sel = standins.selection(profile, cuda)
    assert pip["torch"] == f"=={sel.pytorch.version}"
    assert pip["unsloth"] == f"=={sel.unsloth.version}"
    pytorch = next(d for d in deps if d[:2] == ["conda", "pytorch"])
    # conda's MatchSpec (vendored) reads `pytorch 2.5.1 BUILD` as version 2.5.1 exactly
    # (test_conda_lock_lock_then_micromamba_builds_the_reference: not the 2.5.1.1 trap)
    assert pytorch[2:] == [sel.pytorch.version, sel.pytorch_build]


def test_the_old_constraints_line_is_what_conda_lock_refused(tmp_path: Path) -> None:
    """The `- -c X.pip-constraints.txt` line envs/ files had before issue 21."""
    mapping = tmp_path / "mapping.yml"
    mapping.write_text(MAPPING)
    old = tmp_path / "old.yml"
    old.write_text(
        "channels: [conda-forge]\ndependencies:\n  - python=3.11\n  - pip\n"
        "  - pip:\n      - -c old.pip-constraints.txt\n      - unsloth==2024.12.12\n"
    )
    doc = parse(old, mapping)
    assert "InvalidRequirement" in doc["error"] and "-c old.pip-constraints.txt" in doc["error"]


@pytest.fixture
def index(mirror: standins.Mirror, tmp_path: Path) -> Iterator[str]:
    """A PEP 503 index on 127.0.0.1 with the release's wheels, plus torch/triton/xformers at
    conda's versions and newer ones (PyPI has both)."""
    import hashlib

    extra = tmp_path / "extra"
    extra.mkdir()
    for name, version in (
        ("torch", "2.5.1"), ("torch", "2.6.0"), ("triton", "3.1.0"), ("triton", "3.2.0"),
        ("xformers", "0.0.28.post3"), ("xformers", "0.0.29"),
    ):  # fmt: skip
        envbuild.wheel(extra, name, version, [])
    simple = tmp_path / "simple"
    for whl in [*mirror.wheels["2024.12.12"].glob("*.whl"), *extra.glob("*.whl")]:
        name = whl.name.split("-")[0].lower().replace("_", "-")
        folder = simple / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / whl.name).write_bytes(whl.read_bytes())
        digest = hashlib.sha256(whl.read_bytes()).hexdigest()
        with (folder / "index.html").open("a") as fh:
            fh.write(f'<a href="{whl.name}#sha256={digest}">{whl.name}</a>\n')
    with serve(tmp_path) as base:
        yield f"{base}/simple"


def lock(
    tools: Tools, mirror: standins.Mirror, env_file: Path, index: str, mapping: str
) -> tuple[Run, Path]:
    """`conda-lock lock -f FILE -p linux-64` with micromamba solving; the file's channel names
    resolve to the mirror through micromamba's channel_alias in ~/.condarc."""
    data = YAML(typ="rt").load(env_file.read_text())
    data["pip-repositories"] = [index]
    data["allow-pypi-requests"] = False
    with env_file.open("w") as fh:
        YAML(typ="rt").dump(data, fh)
    (tools.box / "mapping.yml").write_text(mapping)
    tools.condarc(f"channel_alias: {mirror.alias}\n")
    from tests.micromamba import fixture

    env = fixture.environ(tools.box, {"CONDA_OVERRIDE_CUDA": "12.1"})
    env["PATH"] = os.environ.get("PATH", "")
    r = run(
        [sys.executable, "-m", "conda_lock", "lock", "-f", str(env_file), "-p", "linux-64",
         "--conda", str(tools.micromamba), "--pypi_to_conda_lookup_file",
         str(tools.box / "mapping.yml")],
        env,
        cwd=env_file.parent,
    )  # fmt: skip
    out = env_file.parent / "conda-lock.yml"
    return r, out


def pip_locked(path: Path) -> dict[str, str]:
    doc = YAML(typ="safe").load(path.read_text())
    return {p["name"]: p["version"] for p in doc["package"] if p["manager"] == "pip"}


def test_conda_lock_lock_then_micromamba_builds_the_reference(
    tools: Tools,
    mirror: standins.Mirror,
    index: str,
    reference: Callable[[str, str], Reference],
    tmp_path: Path,
) -> None:
    ref = reference("pytorch", "12.1")
    env_file = copy(ENVS / "pytorch-cuda12.1.yml", tmp_path / "f")
    r, out = lock(tools, mirror, env_file, index, MAPPING)
    assert r.code == 0, r
    # conda's torch/triton/xformers are conda's: no PyPI copy in the lock
    assert not {"torch", "triton", "xformers"} & set(pip_locked(out))
    r = tools.mm("create", "-y", "-p", str(tmp_path / "mm"), "-f", str(out))
    assert r.code == 0, r
    same_env(tmp_path / "mm", ref)


@pytest.mark.parametrize("pins", [True, False], ids=["with-pins", "without-pins"])
def test_without_a_mapping_the_pins_keep_conda_locks_pypi_solve_at_condas_versions(
    pins: bool, tools: Tools, mirror: standins.Mirror, index: str, tmp_path: Path
) -> None:
    env_file = copy(ENVS / "pytorch-cuda12.1.yml", tmp_path / "f")
    if not pins:
        lines = env_file.read_text().splitlines()
        drop = ("      - torch==", "      - triton==", "      - xformers==")
        env_file.write_text("\n".join(ln for ln in lines if not ln.startswith(drop)) + "\n")
    r, out = lock(tools, mirror, env_file, index, NO_MAPPING)
    assert r.code == 0, r
    locked = pip_locked(out)
    expected = ("2.5.1", "3.1.0") if pins else ("2.6.0", "3.2.0")
    assert (locked["torch"], locked["triton"]) == expected

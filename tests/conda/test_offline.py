"""Inside conda, ``--offline``: a ``file://`` channel needs no network and no cache; a network
channel with an empty cache is named as such (with the command that fills it), never
"unsatisfiable"; a bogus local channel is one line, as standalone. Issue 14 item 1 (and 7's
"--offline with an empty cache says the cache is empty").

Before the fix: ``conda unsloth solve/create --offline -c file://...`` with an empty package
cache failed with "Could not load repodata for file://..." and "packages are not available"
(conda-libmamba-solver reads only conda's cache when offline)."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.channels import serve
from tests.conda import realconda
from tests.conftest import CondaSandbox

pytestmark = pytest.mark.conda


def plan_specs(environment_yml: str) -> list[str]:
    """The conda pins of `conda unsloth env`'s environment.yml, without ``chan::`` (the
    channel names would resolve to the network; the demo channel holds them all)."""
    from ruamel.yaml import YAML

    deps = YAML(typ="safe").load(environment_yml)["dependencies"]
    return [d.split("::", 1)[-1] for d in deps if isinstance(d, str)]


def _empty_cache(sandbox: CondaSandbox) -> None:
    assert not list(sandbox.pkgs.glob("cache/*.json")), "the package cache is not empty"


def test_solve_offline_from_a_file_channel_with_an_empty_cache(
    sandbox: CondaSandbox, demo: Path
) -> None:
    _empty_cache(sandbox)
    chan = (demo / "channel").as_uri()
    r = realconda.conda(
        sandbox, "unsloth", "solve", "-c", chan, "--offline", "--cuda", "12.1", "--json"
    )
    assert r.code == 0, r
    doc = json.loads(r.out)
    assert doc["solver"].startswith("libmamba (conda ")
    names = {p["name"] for p in doc["packages"]}
    assert {"python", "pytorch", "pytorch-cuda", "xformers", "torchtriton", "mkl"} <= names
    assert "Could not load repodata" not in r.err


def test_solve_offline_same_packages_as_conda_create_dry_run(
    sandbox: CondaSandbox, demo: Path
) -> None:
    """The oracle: conda's own `create --dry-run` of the same pins on the same channel (run
    after ours, so conda's cache is filled: stock conda cannot do it from an empty cache)."""
    chan = (demo / "channel").as_uri()
    ours = realconda.conda(
        sandbox, "unsloth", "solve", "-c", chan, "--offline", "--cuda", "12.1", "--json"
    )
    assert ours.code == 0, ours
    pins = realconda.conda(sandbox, "unsloth", "env", "--cuda", "12.1", "--json", "--dry-run")
    assert pins.code == 0, pins
    specs = plan_specs(json.loads(pins.out)["environment_yml"])
    theirs = realconda.conda(
        sandbox, "create", "--dry-run", "--json", "--offline", "-p", str(sandbox.root / "dr"),
        "--override-channels", "-c", chan, *specs,
        env={"CONDA_OVERRIDE_CUDA": "12.1", "CONDA_CHANNEL_PRIORITY": "strict"},
    )  # fmt: skip
    assert theirs.code == 0, theirs
    link = json.loads(theirs.out)["actions"]["LINK"]
    expected = {(p["name"], p["version"], p["build_string"]) for p in link}
    got = {(p["name"], p["version"], p["build"]) for p in json.loads(ours.out)["packages"]}
    assert got == expected


def test_create_offline_from_a_file_channel_with_an_empty_cache(
    sandbox: CondaSandbox, demo: Path
) -> None:
    _empty_cache(sandbox)
    prefix = sandbox.root / "env"
    r = realconda.conda(sandbox, "unsloth", *realconda.create_args(demo, prefix))
    assert r.code == 0, r
    assert f"created {prefix} (9 conda + 8 pip packages" in r.out
    assert ("pytorch", "2.5.1", "py3.11_cuda12.1_cudnn9.1.0_0") in realconda.records(prefix)


@pytest.fixture
def http_channel(demo: Path) -> Iterator[str]:
    """The demo channel served over HTTP on 127.0.0.1: a network channel that is really there."""
    with serve(demo) as base:
        yield f"{base}/channel"


def test_offline_network_channel_with_empty_cache_says_so_and_names_the_fill_command(
    sandbox: CondaSandbox, http_channel: str
) -> None:
    _empty_cache(sandbox)
    argv = ["unsloth", "solve", "-c", http_channel, "--offline", "--cuda", "12.1"]
    r = realconda.conda(sandbox, *argv)
    assert r.code == 1, r
    assert "unsatisf" not in r.err.lower() and "not available" not in r.err, r
    assert (
        f"CondaUnslothError: offline, and conda's repodata cache is empty for channel "
        f"{http_channel} ({http_channel}/linux-64, {http_channel}/noarch)"
    ) in r.err
    fill = re.search(r"^hint: fill the cache once online: conda (.*)$", r.err, re.M)
    assert fill is not None, r
    assert shlex.split(fill.group(1)) == [a for a in argv if a != "--offline"]
    # the hint's command fills the cache; then the offline command works
    filled = realconda.conda(sandbox, *shlex.split(fill.group(1)))
    assert filled.code == 0, filled
    again = realconda.conda(sandbox, *argv)
    assert again.code == 0, again
    assert "validation: passed" in again.out


def test_offline_from_condarc_names_the_override(sandbox: CondaSandbox, http_channel: str) -> None:
    """offline from conda's setting, not the flag: dropping --offline would not help."""
    r = realconda.conda(
        sandbox,
        "unsloth",
        "solve",
        "-c",
        http_channel,
        "--cuda",
        "12.1",
        env={"CONDA_OFFLINE": "true"},
    )
    assert r.code == 1, r
    assert (
        f"hint: fill the cache once online: CONDA_OFFLINE=false conda unsloth solve -c "
        f"{http_channel} --cuda 12.1"
    ) in r.err


def _bad_channels(tmp_path: Path) -> dict[str, str]:
    no_noarch = tmp_path / "no-noarch"
    (no_noarch / "linux-64").mkdir(parents=True)
    (no_noarch / "linux-64" / "repodata.json").write_text('{"packages": {}}')
    broken = tmp_path / "broken"
    for sub in ("linux-64", "noarch"):
        (broken / sub).mkdir(parents=True)
        (broken / sub / "repodata.json").write_text('{"packages": ')
    return {
        "missing-path": str(tmp_path / "nope"),
        "missing-file-url": (tmp_path / "nope").as_uri(),
        "no-noarch": str(no_noarch),
        "truncated-repodata": broken.as_uri(),
    }


@pytest.mark.parametrize(
    "kind", ["missing-path", "missing-file-url", "no-noarch", "truncated-repodata"]
)
@pytest.mark.parametrize("offline", [False, True], ids=["online", "offline"])
def test_bad_local_channel_is_one_line_like_standalone(
    sandbox: CondaSandbox, tmp_path: Path, kind: str, offline: bool
) -> None:
    chan = _bad_channels(tmp_path)[kind]
    args = ["solve", "-c", chan, "--cuda", "12.1", *(["--offline"] if offline else [])]
    inside = realconda.conda(sandbox, "unsloth", *args)
    alone = realconda.standalone(sandbox, *args)
    assert inside.code == alone.code == 2, (inside, alone)
    lines = [ln for ln in inside.err.splitlines() if ln.strip()]
    assert lines[0].startswith("CondaUnslothError: "), inside
    assert all(ln.startswith("hint: ") for ln in lines[1:]), inside
    message = lines[0].removeprefix("CondaUnslothError: ")
    assert alone.err.splitlines()[0] == f"conda-unsloth: error: {message}"
    assert "Traceback" not in inside.err and "conda.anaconda.org" not in inside.err

"""Each export, made inside conda, rebuilt by the stock tool that owns its format, offline on the
demo channel (issue 14 item 6 and the CI lane's "each `conda export --format` round-tripped"):

- ``conda export --format unsloth-*`` and ``conda unsloth export --format ...`` write the same;
- explicit: ``conda create --file`` rebuilds the conda part (conda ignores the ``# pip`` lines);
  ``conda unsloth create --from-lock`` rebuilds all of it;
- environment: ``conda env create -f`` (and the forms that also work online) rebuild it all;
- conda-lock: stock conda 26.7.1 has no conda-lock reader (``conda create --file`` of one makes
  an empty env), so ``conda unsloth create --from-lock`` rebuilds it (micromamba and conda-lock
  read it too: tests/exports).

The exported environment.yml does not list ``- nodefaults`` (issue 21, docs/tools.md): conda
26.7.1 treats it as a channel named "nodefaults" (online ``conda env create -f`` fails fetching
``<channel_alias>/nodefaults``, offline it warns "Could not load repodata for nodefaults"). The
assertions that depend on it are marked NODEFAULTS below; ``WRITES_NODEFAULTS`` says which way
the writer goes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conda import realconda
from tests.conda.conftest import Built
from tests.conftest import CondaSandbox

pytestmark = pytest.mark.conda

# NODEFAULTS: does conda_unsloth/exports/environment.py write `- nodefaults`? (flip when it stops)
WRITES_NODEFAULTS = False

FORMATS = {  # our name -> conda's name and the file name conda's exporter registers
    "explicit": ("unsloth-explicit", "unsloth-explicit.txt"),
    "conda-lock": ("unsloth-conda-lock", "unsloth.conda-lock.yml"),
    "environment": ("unsloth-environment", "unsloth-environment.yml"),
}


def export(built: Built, fmt: str, source: str, where: Path) -> Path:
    """Export ``built`` with ``conda export`` (source "conda") or ``conda unsloth export``."""
    conda_name, filename = FORMATS[fmt]
    where.mkdir(parents=True, exist_ok=True)
    out = where / filename
    if source == "conda":
        argv = ["export", "-p", str(built.prefix), "--format", conda_name, "-f", str(out)]
    else:
        argv = ["unsloth", "export", "-p", str(built.prefix), "--format", fmt, "-o", str(out)]
    r = realconda.conda(built.sandbox, *argv)
    assert r.code == 0, r
    return out


def same_env(built: Built, prefix: Path, *, pip: bool = True) -> None:
    assert realconda.records(prefix) == realconda.records(built.prefix)
    if pip:
        assert realconda.pip_dists(prefix) == realconda.pip_dists(built.prefix)
        assert len(realconda.pip_dists(prefix)) == 8


def wheels(built: Built) -> dict[str, str]:
    """pip's environment for a stock tool's pip stage: the demo wheelhouse, no index."""
    return {"PIP_FIND_LINKS": str(built.demo / "wheels"), "PIP_NO_INDEX": "1"}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_conda_export_writes_what_conda_unsloth_export_writes(
    built: Built, tmp_path: Path, fmt: str
) -> None:
    a = export(built, fmt, "conda", tmp_path / "a").read_text()
    b = export(built, fmt, "verb", tmp_path / "b").read_text()
    assert a.rstrip("\n") == b.rstrip("\n")


@pytest.mark.parametrize("source", ["conda", "verb"])
def test_explicit_round_trip(built: Built, tmp_path: Path, source: str) -> None:
    f = export(built, "explicit", source, tmp_path)
    q = tmp_path / "conda-create"
    r = realconda.conda(built.sandbox, "create", "-y", "-p", str(q), "--offline", "--file", str(f))
    assert r.code == 0, r
    same_env(built, q, pip=False)
    assert realconda.pip_dists(q) == set()  # conda leaves the `# pip` lines to pip
    full = tmp_path / "from-lock"
    r = realconda.conda(
        built.sandbox, "unsloth", "create", "-p", str(full), "--from-lock", str(f), "--offline",
        "--pip-find-links", str(built.demo / "wheels"), "--yes",
    )  # fmt: skip
    assert r.code == 0, r
    same_env(built, full)


@pytest.mark.parametrize("source", ["conda", "verb"])
def test_conda_lock_round_trip(built: Built, tmp_path: Path, source: str) -> None:
    f = export(built, "conda-lock", source, tmp_path)
    q = tmp_path / "from-lock"
    r = realconda.conda(
        built.sandbox, "unsloth", "create", "-p", str(q), "--from-lock", str(f), "--offline",
        "--pip-find-links", str(built.demo / "wheels"), "--yes",
    )  # fmt: skip
    assert r.code == 0, r
    same_env(built, q)


def _channels(env_yml: Path) -> list[str]:
    from ruamel.yaml import YAML

    return list(YAML(typ="safe").load(env_yml.read_text())["channels"])


@pytest.mark.parametrize("source", ["conda", "verb"])
def test_environment_round_trip_offline(built: Built, tmp_path: Path, source: str) -> None:
    f = export(built, "environment", source, tmp_path)
    chan = (built.demo / "channel").as_uri()
    assert _channels(f)[0] == chan
    assert ("nodefaults" in _channels(f)) is WRITES_NODEFAULTS  # NODEFAULTS: flip the constant
    q = tmp_path / "env-create"
    r = realconda.conda(
        built.sandbox, "env", "create", "-p", str(q), "-f", str(f), "--offline", env=wheels(built)
    )
    assert r.code == 0, r
    same_env(built, q)
    # NODEFAULTS: offline, conda 26.7.1 skips the "nodefaults channel" with a warning
    assert ("Could not load repodata for nodefaults" in r.err + r.out) is WRITES_NODEFAULTS, r


@pytest.mark.parametrize(
    "form",
    ["env create -f", "env update -f", "create --file --override-channels -c"],
)
def test_environment_file_with_stock_conda_online(built: Built, tmp_path: Path, form: str) -> None:
    """Not offline: every channel name resolves to a dead local address (the sandbox's
    channel_alias), so a channel conda should not need fails the command."""
    f = export(built, "environment", "verb", tmp_path)
    chan = (built.demo / "channel").as_uri()
    q = tmp_path / "env"
    if form == "env create -f":
        argv = ["env", "create", "-p", str(q), "-f", str(f)]
    elif form == "env update -f":  # creates the env; honours nodefaults (conda's env installer)
        argv = ["env", "update", "-p", str(q), "-f", str(f)]
    else:
        argv = ["create", "-y", "-p", str(q), "--file", str(f), "--override-channels", "-c", chan]
    r = realconda.conda(built.sandbox, *argv, env=wheels(built))
    if form == "env create -f" and WRITES_NODEFAULTS:
        # NODEFAULTS: conda 26.7.1 fetches <channel_alias>/nodefaults/<subdir>/repodata.json
        assert r.code != 0, r
        assert "nodefaults" in r.err + r.out, r
        return
    assert r.code == 0, r
    same_env(built, q)


def test_environment_file_with_a_user_channel_in_condarc(built: Built, tmp_path: Path) -> None:
    """A .condarc channel: `conda env create -f` adds it after the file's (nodefaults or not),
    `conda env update -f` leaves it out only with nodefaults (NODEFAULTS)."""
    f = export(built, "environment", "verb", tmp_path)
    rc = CondaSandbox(tmp_path / "box").make()
    rc.condarc.write_text("channels:\n  - http://127.0.0.1:9/user-channel\n")
    box = {"CONDARC": str(rc.condarc), "CONDA_OFFLINE": "false"}
    r = realconda.conda(
        built.sandbox, "env", "update", "-p", str(tmp_path / "env"), "-f", str(f),
        env={**box, **wheels(built)},
    )  # fmt: skip
    assert (r.code == 0) is WRITES_NODEFAULTS, r  # NODEFAULTS
    if WRITES_NODEFAULTS:
        same_env(built, tmp_path / "env")

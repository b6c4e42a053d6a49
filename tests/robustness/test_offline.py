"""Issue 16 #6: ``--offline`` opens no socket to anything but ``file://``.

A local HTTP server on 127.0.0.1 serves the demo channel and wheels and counts every request:
under ``--offline`` it must see none, whatever the command names (a channel, an explicit lock,
a conda-lock, a direct pip URL). The decision for conda packages: a package that is not a
``file://`` one is served only from the package cache (rattler's cache index, which matches the
record's sha256; inside conda, conda's offline mode and its cache), else refused before anything
is built."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from tests.robustness.helpers import (
    ChannelServer,
    assert_refused,
    demo_create,
    run_cli,
    snapshot,
)

# a create that solves, reads packages or downloads, on a loaded 2-core CI machine
SLOW = 120.0


def _explicit_lock(demo: Path, tmp: Path, base: str) -> Path:
    """The demo's CUDA stack (its 9 packages that are not CPU builds) as an @EXPLICIT lock
    whose URLs point to ``base`` (another host); written from the repodata, no solver."""
    lines = ["# platform: linux-64", "@EXPLICIT"]
    for subdir in ("linux-64", "noarch"):
        doc = json.loads((demo / "channel" / subdir / "repodata.json").read_text())
        for fn, rec in sorted(doc["packages"].items()):
            if "cpu" not in rec["build"]:
                lines.append(f"{base}/channel/{subdir}/{fn}#{rec['sha256']}")
    lock = tmp / "lock.txt"
    lock.write_text("\n".join(lines) + "\n")
    return lock


def _conda_lock(demo: Path, tmp: Path, base: str) -> Path:
    lock = tmp / "conda-lock.yml"
    r = run_cli(
        [
            "solve", "-c", (demo / "channel").as_uri(), "--cuda", "12.1", "--lock", str(lock),
            "--format", "conda-lock", "-q",
        ],
        tmp,
        timeout=SLOW,
    )  # fmt: skip
    assert r.code == 0, r.err
    lock.write_text(lock.read_text().replace((demo / "channel").as_uri(), f"{base}/channel"))
    return lock


def test_create_from_an_http_channel_offline_with_an_empty_cache(
    demo: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    with ChannelServer(demo) as server:
        r = run_cli(
            demo_create(f"{server.base}/channel", demo, work / "env", "--offline"),
            tmp_path,
            timeout=SLOW,
        )
        assert server.hits == []
    assert_refused(r, "offline: no cached repodata for a channel", code=1, seconds=SLOW)
    assert snapshot(work) == {}


def test_solve_offline_opens_no_socket(demo: Path, tmp_path: Path) -> None:
    with ChannelServer(demo) as server:
        r = run_cli(
            ["solve", "-c", f"{server.base}/channel", "--cuda", "12.1", "--offline"], tmp_path
        )
        assert server.hits == []
    assert_refused(r, "offline: no cached repodata", code=1, seconds=SLOW)


def test_create_offline_from_cached_repodata_never_downloads_a_package(
    demo: Path, tmp_path: Path
) -> None:
    """The repodata cache was filled by an online solve; the packages were never downloaded.
    Offline, the create must refuse before anything is built, with no request."""
    work = tmp_path / "work"
    work.mkdir()
    with ChannelServer(demo) as server:
        url = f"{server.base}/channel"
        online = run_cli(["solve", "-c", url, "--cuda", "12.1"], tmp_path, timeout=SLOW)
        assert online.code == 0, online.err
        assert server.hits, "the online solve fetched the repodata"
        seen = len(server.hits)
        r = run_cli(demo_create(url, demo, work / "env", "--offline"), tmp_path, timeout=SLOW)
        assert server.hits[seen:] == []
    line = assert_refused(r, "--offline, but 9 package(s) would be downloaded", seconds=SLOW)
    assert "is not in the package cache" in line
    assert snapshot(work) == {}


def test_create_offline_is_served_from_the_package_cache(demo: Path, tmp_path: Path) -> None:
    """Packages an online create downloaded (hash-checked by rattler) are linked offline from
    the package cache, with no request."""
    work = tmp_path / "work"
    work.mkdir()
    with ChannelServer(demo) as server:
        url = f"{server.base}/channel"
        first = run_cli(
            demo_create(url, demo, work / "env1", "--no-verify"), tmp_path, timeout=SLOW
        )
        assert first.code == 0, first.err
        seen = len(server.hits)
        r = run_cli(
            demo_create(url, demo, work / "env2", "--offline", "--no-verify"),
            tmp_path,
            timeout=SLOW,
        )
        assert server.hits[seen:] == []
    assert r.code == 0, r.err
    assert (work / "env2" / "conda-meta" / "conda-unsloth").is_file()


@pytest.mark.parametrize("kind", ["explicit", "conda-lock"])
def test_a_lock_naming_another_host_is_refused_offline(
    demo: Path, tmp_path: Path, kind: str
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    with ChannelServer(demo) as server:
        make = _explicit_lock if kind == "explicit" else _conda_lock
        lock = make(demo, tmp_path, server.base)
        r = run_cli(
            [
                "create", "-p", str(work / "env"), "--from-lock", str(lock), "--offline",
                "--pip-find-links", str(demo / "wheels"), "--yes",
            ],
            tmp_path,
            timeout=SLOW,
        )  # fmt: skip
        assert server.hits == []
    line = assert_refused(r, "--offline, but 9 package(s) would be downloaded", seconds=SLOW)
    assert server.base in line  # it names where
    assert snapshot(work) == {}


def _direct_wheel(demo: Path, base: str) -> tuple[str, str]:
    whl = next((demo / "wheels").glob("tqdm_standin-*.whl"))
    sha = hashlib.sha256(whl.read_bytes()).hexdigest()
    return f"tqdm-standin @ {base}/wheels/{whl.name}", sha


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_a_direct_pip_url_is_refused_offline(demo: Path, tmp_path: Path, installer: str) -> None:
    """pip downloads ``name @ http://...`` even with ``--no-index``; offline it is refused
    before anything is built."""
    work = tmp_path / "work"
    work.mkdir()
    with ChannelServer(demo) as server:
        req, _ = _direct_wheel(demo, server.base)
        env = tmp_path / "environment.yml"
        env.write_text(
            "name: x\nchannels:\n  - " + (demo / "channel").as_uri() + "\ndependencies:\n"
            "  - python=3.11\n  - pytorch=2.5.1=*cuda*\n  - pytorch-cuda=12.1\n  - pip\n  - pip:\n    - "
            + req
            + "\n"
        )
        r = run_cli(
            [
                "create", "-p", str(work / "env"), "-f", str(env), "--offline", "--cuda", "12.1",
                "--pip-find-links", str(demo / "wheels"), "--yes", "--pip-installer", installer,
            ],
            tmp_path,
            timeout=SLOW,
        )  # fmt: skip
        assert server.hits == []
    line = assert_refused(r, "--offline, but the pip requirement", seconds=SLOW)
    assert f"is a direct URL ({server.base}/wheels/" in line
    assert snapshot(work) == {}


def test_a_direct_pip_url_in_a_conda_lock_is_refused_offline(demo: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    with ChannelServer(demo) as server:
        lock = _conda_lock(demo, tmp_path, (demo / "channel").as_uri().removesuffix("/channel"))
        req, _ = _direct_wheel(demo, server.base)
        doc = json.loads(json.dumps(_yaml(lock)))
        doc["metadata"].setdefault("custom_metadata", {})["pip_requirements"] = req + "\n"
        lock.write_text(json.dumps(doc))
        r = run_cli(
            [
                "create", "-p", str(work / "env"), "--from-lock", str(lock), "--offline",
                "--pip-find-links", str(demo / "wheels"), "--yes",
            ],
            tmp_path,
            timeout=SLOW,
        )  # fmt: skip
        assert server.hits == []
    assert_refused(
        r, "--offline, but the pip requirement 'tqdm-standin @ http://127.0.0.1:", seconds=SLOW
    )
    assert snapshot(work) == {}


def test_a_direct_file_url_is_fine_offline(demo: Path, tmp_path: Path) -> None:
    """The control: a ``file://`` direct URL is local, and is installed offline."""
    whl = next((demo / "wheels").glob("tqdm_standin-*.whl"))
    env = tmp_path / "environment.yml"
    env.write_text(
        "name: x\nchannels:\n  - " + (demo / "channel").as_uri() + "\ndependencies:\n"
        "  - python=3.11\n  - pytorch=2.5.1=*cuda*\n  - pytorch-cuda=12.1\n  - pip\n  - pip:\n"
        f"    - tqdm-standin @ {whl.as_uri()}\n"
    )
    prefix = tmp_path / "work" / "env"
    r = run_cli(
        [
            "create", "-p", str(prefix), "-f", str(env), "--offline", "--cuda", "12.1",
            "--pip-find-links", str(demo / "wheels"), "--yes", "--no-verify",
        ],
        tmp_path,
        timeout=SLOW,
    )  # fmt: skip
    assert r.code == 0, r.err


def _yaml(path: Path) -> dict[str, object]:
    from ruamel.yaml import YAML

    doc = YAML(typ="safe").load(path.read_text())
    assert isinstance(doc, dict)
    return doc


@pytest.mark.conda
def test_inside_conda_a_lock_naming_another_host_is_refused_offline(
    demo: Path, tmp_path: Path
) -> None:
    """Inside conda, ``--offline`` is conda's offline mode: its session has no network
    adapter, so nothing is requested; the refusal names a package and says why, on one line."""
    from tests.conda import realconda
    from tests.conftest import CondaSandbox

    box = CondaSandbox(tmp_path / "_conda")
    work = tmp_path / "work"
    work.mkdir()
    with ChannelServer(demo) as server:
        lock = _explicit_lock(demo, tmp_path, server.base)
        r = realconda.conda(
            box, "unsloth", "create", "-p", str(work / "env"), "--from-lock", str(lock),
            "--offline", "--pip-find-links", str(demo / "wheels"), "--yes",
        )  # fmt: skip
        assert server.hits == []
    assert r.code == 2, r
    assert "Traceback" not in r.out + r.err and "ERROR REPORT" not in r.err
    errors = [ln for ln in r.err.splitlines() if "Error: " in ln]
    assert len(errors) == 1, r
    # how many: the lock's 9 less any conda's package cache already holds (the lane's cache
    # may have one from an earlier test); at least one, and named
    counted = re.search(
        r"--offline, but ([0-9]+) package\(s\) would be downloaded: (\S+)", errors[0]
    )
    assert counted is not None and 1 <= int(counted.group(1)) <= 9, errors[0]
    assert counted.group(2).endswith((".tar.bz2", ".conda")), errors[0]
    assert "is not in conda's package cache" in errors[0]
    assert snapshot(work) == {}


@pytest.mark.parametrize("how", ["--pip-index-url", "PIP_INDEX_URL", "UV_INDEX_URL"])
def test_an_index_is_never_asked_offline(demo: Path, tmp_path: Path, how: str) -> None:
    """Offline the pip stage installs from --pip-find-links only: an index given by flag or
    by the environment is not contacted (and the create still succeeds)."""
    with ChannelServer(demo) as server:
        index = f"{server.base}/simple"
        argv = demo_create(
            (demo / "channel").as_uri(),
            demo,
            tmp_path / "work" / "env",
            "--offline",
            "--no-verify",
        )
        env: dict[str, str] = {}
        if how.startswith("--"):
            argv += [how, index]
        else:
            env[how] = index
        r = run_cli(argv, tmp_path, cwd=None, timeout=SLOW, **env)
        assert server.hits == []
    assert r.code == 0, r.err

"""Issue 16 #3: a tampered package is never installed, whatever its source.

A compromised mirror serves a *valid* package (same name, version and build) whose bytes are not
the ones its repodata describes. py-rattler 0.28 and conda's own transaction both link a
``file://`` package without checking it (both checked in this file's probes: the channel's
payload appears in the env); downloads they check. So every package file is checked against its
record (sha256, else md5) before anything is built, and every refusal is one line naming the
file and both digests, with nothing left behind."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from tests import envbuild
from tests.robustness.helpers import (
    ChannelServer,
    assert_refused,
    copy_channel,
    demo_create,
    run_cli,
    snapshot,
    tamper,
)

# a create that solves, reads packages or downloads, on a loaded 2-core CI machine
SLOW = 120.0


def _work(tmp: Path, demo: Path) -> tuple[Path, Path]:
    work = tmp / "work"
    work.mkdir()
    return work, copy_channel(demo, tmp / "channel")


@pytest.mark.parametrize(
    ("keep", "kind"), [(("md5", "sha256"), "sha256"), (("md5",), "md5")], ids=["sha256", "md5"]
)
def test_a_tampered_package_in_a_file_channel_is_never_installed(
    demo: Path, tmp_path: Path, keep: tuple[str, ...], kind: str
) -> None:
    work, channel = _work(tmp_path, demo)
    bad = tamper(channel, "xformers", keep=keep)
    before, chan_before = snapshot(work), snapshot(channel)
    r = run_cli(
        demo_create(channel.as_uri(), demo, work / "env", "--offline"), tmp_path, timeout=SLOW
    )
    line = assert_refused(r, f"{kind} mismatch for {bad.fn} ({bad.path})", seconds=SLOW)
    want, got = getattr(bad, kind)
    assert f"the record says {want}, the file is {got}" in line
    assert snapshot(work) == before and snapshot(channel) == chan_before


def test_a_record_without_any_digest_is_refused(demo: Path, tmp_path: Path) -> None:
    work, channel = _work(tmp_path, demo)
    bad = tamper(channel, "pytorch-cuda", keep=())
    before = snapshot(work)
    r = run_cli(
        demo_create(channel.as_uri(), demo, work / "env", "--offline"), tmp_path, timeout=SLOW
    )
    assert_refused(r, f"package {bad.fn} has neither a sha256 nor an md5", seconds=SLOW)
    assert snapshot(work) == before


def test_a_tampered_package_over_http_is_refused_with_both_digests(
    demo: Path, tmp_path: Path
) -> None:
    work, channel = _work(tmp_path, demo)
    bad = tamper(channel, "torchtriton")
    before = snapshot(work)
    with ChannelServer(tmp_path) as server:
        url = f"{server.base}/channel"
        r = run_cli(demo_create(url, demo, work / "env"), tmp_path, timeout=SLOW)
        assert any(h.path.endswith(bad.fn) for h in server.hits)  # it was downloaded, then refused
    line = assert_refused(
        r, f"sha256 mismatch for {bad.fn} ({url}/linux-64/{bad.fn})", seconds=SLOW
    )
    assert f"the record says {bad.sha256[0]}, the downloaded file is {bad.sha256[1]}" in line
    assert snapshot(work) == before


def test_a_tampered_package_named_by_a_lock_is_refused_with_both_full_digests(
    demo: Path, tmp_path: Path
) -> None:
    work, channel = _work(tmp_path, demo)
    lock = tmp_path / "lock.txt"
    solved = run_cli(
        ["solve", "-c", channel.as_uri(), "--cuda", "12.1", "--lock", str(lock), "-q"], tmp_path
    )
    assert solved.code == 0, solved.err
    bad = tamper(channel, "pytorch")
    before = snapshot(work)
    r = run_cli(
        ["create", "-p", str(work / "env"), "--from-lock", str(lock), "--yes"],
        tmp_path,
        timeout=SLOW,
    )
    line = assert_refused(r, f"sha256 mismatch for {bad.fn}", seconds=SLOW)
    assert bad.sha256[0] in line and bad.sha256[1] in line
    assert snapshot(work) == before


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_a_tampered_wheel_named_by_a_lock_is_refused_before_anything_is_built(
    demo: Path, tmp_path: Path, installer: str
) -> None:
    """The lock pins each wheel's sha256; the --pip-find-links folder holds another trl.
    uv would say so after the conda packages were linked, pip without naming a digest."""
    work, channel = _work(tmp_path, demo)
    wheels = tmp_path / "wheels"
    shutil.copytree(demo / "wheels", wheels)
    lock = tmp_path / "lock.txt"
    solved = run_cli(
        ["solve", "-c", channel.as_uri(), "--cuda", "12.1", "--lock", str(lock), "-q"], tmp_path
    )
    assert solved.code == 0, solved.err
    lines = [ln for ln in lock.read_text().splitlines() if not ln.startswith("# pip")]
    for whl in sorted(wheels.glob("*.whl")):
        name, version = whl.name.split("-")[:2]
        sha = hashlib.sha256(whl.read_bytes()).hexdigest()
        lines.append(f"# pip {name}=={version} @ {whl.as_uri()}#sha256={sha}")
    lock.write_text("\n".join(lines) + "\n")
    trl = next(wheels.glob("trl-*.whl"))
    want = hashlib.sha256(trl.read_bytes()).hexdigest()
    trl.unlink()
    envbuild.wheel(wheels, "trl", "0.12.2", ["tqdm-standin", "something-else"])
    got = hashlib.sha256(trl.read_bytes()).hexdigest()
    before = snapshot(work)
    r = run_cli(
        [
            "create", "-p", str(work / "env"), "--from-lock", str(lock), "--yes", "--offline",
            "--pip-find-links", str(wheels), "--pip-installer", installer,
        ],
        tmp_path,
        timeout=SLOW,
    )  # fmt: skip
    line = assert_refused(r, f"sha256 mismatch for {trl.name} ({trl})", seconds=SLOW)
    assert f"the lock says {want}, the file is {got}" in line
    assert snapshot(work) == before


def test_the_untampered_channel_still_builds(demo: Path, tmp_path: Path) -> None:
    """The control: the same copy, untouched, builds (so the refusals above are the check)."""
    work, channel = _work(tmp_path, demo)
    r = run_cli(
        demo_create(channel.as_uri(), demo, work / "env", "--offline"), tmp_path, timeout=SLOW
    )
    assert r.code == 0, r.err
    assert not (work / "env" / "share" / "tampered.txt").exists()


# ----------------------------------------------------------------------------- probes
# What the installers do on their own, recorded so a py-rattler or conda that starts checking
# file:// packages is noticed (the check above stays: it is what gives the one-line refusal).


def test_probe_rattler_links_a_tampered_file_package(tmp_path: Path) -> None:
    import asyncio

    import rattler

    from tests.channels import Pkg, build_artifact, write_channel

    chan = write_channel(tmp_path / "chan", [Pkg("foo", "1.0", "0")])
    evil = build_artifact(Pkg("foo", "1.0", "0", files={"share/evil.txt": b"evil\n"}))
    (chan / "linux-64" / "foo-1.0-0.tar.bz2").write_bytes(evil)

    async def go() -> None:
        gateway = rattler.Gateway(cache_dir=tmp_path / "gw")
        records = await rattler.solve(
            sources=[chan.as_uri()], specs=["foo"], gateway=gateway, platforms=["linux-64"]
        )
        await rattler.install(
            records, target_prefix=tmp_path / "env", cache_dir=tmp_path / "pkgs",
            show_progress=False,
        )  # fmt: skip

    asyncio.run(go())
    assert (tmp_path / "env" / "share" / "evil.txt").exists()


@pytest.mark.conda
def test_probe_conda_explicit_links_a_tampered_file_package(tmp_path: Path) -> None:
    from conda.misc import explicit

    from tests.channels import Pkg, build_artifact, write_channel

    chan = write_channel(tmp_path / "chan", [Pkg("foo", "1.0", "0")])
    path = chan / "linux-64" / "foo-1.0-0.tar.bz2"
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    path.write_bytes(build_artifact(Pkg("foo", "1.0", "0", files={"share/evil.txt": b"evil\n"})))
    explicit(["@EXPLICIT", f"{path.as_uri()}#{sha}"], str(tmp_path / "env"))
    assert (tmp_path / "env" / "share" / "evil.txt").exists()


@pytest.mark.conda
def test_inside_conda_a_tampered_file_channel_package_is_refused(
    demo: Path, tmp_path: Path
) -> None:
    from tests.conda import realconda
    from tests.conftest import CondaSandbox

    box = CondaSandbox(tmp_path / "_conda")
    channel = copy_channel(demo, tmp_path / "channel")
    bad = tamper(channel, "xformers")
    work = tmp_path / "work"
    work.mkdir()
    before = snapshot(work)
    r = realconda.conda(
        box, "unsloth", "create", "-p", str(work / "env"), "-c", channel.as_uri(), "--offline",
        "--pip-find-links", str(demo / "wheels"), "--cuda", "12.1", "--yes",
    )  # fmt: skip
    assert r.code == 2, r
    assert "Traceback" not in r.err + r.out
    assert f"sha256 mismatch for {bad.fn} ({bad.path})" in r.err, r
    assert bad.sha256[0] in r.err and bad.sha256[1] in r.err
    assert snapshot(work) == before

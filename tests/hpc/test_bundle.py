"""Air-gapped bundles (`export --format bundle`, `create --from-bundle`), end to end on the
offline demo: the bundle recreates the env in a network namespace (no network at all) with the
same explicit export, byte for byte; a package or wheel found nowhere is one line naming it and
nothing is written; a changed, truncated or padded bundle is refused before anything is
written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from conda_unsloth.exports import bundle
from tests import envbuild
from tests.channels import serve
from tests.conftest import Result, tree
from tests.hpc.bundles import copy_demo, offline, rewrite

Cli = Callable[..., Result]


@pytest.fixture(autouse=True)
def _private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No package cache of this machine is searched: HOME and the caches are the test's."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CONDA_UNSLOTH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CONDA_PKGS_DIRS", raising=False)
    monkeypatch.delenv("CONDA_ROOT", raising=False)
    monkeypatch.delenv("MAMBA_ROOT_PREFIX", raising=False)
    monkeypatch.delenv("CONDA_EXE", raising=False)


@dataclass(frozen=True)
class Source:
    prefix: Path
    demo: Path  # the private copy of the demo its packages and wheels came from
    explicit: str


def make_source(cli: Cli, demo: Path, tmp_path: Path) -> Source:
    mine = copy_demo(demo, tmp_path / "demo")
    prefix = tmp_path / "src"
    r = cli(*envbuild.create_args(mine, prefix), "-q")
    assert r.code == 0, r.err
    exp = cli("export", "-p", str(prefix), "--format", "explicit")
    assert exp.code == 0, exp.err
    return Source(prefix, mine, exp.out)


def cu_env(tmp_path: Path, cache: str) -> dict[str, str]:
    return {
        **os.environ,
        "HOME": str(tmp_path / "home"),
        "CONDA_UNSLOTH_CACHE": str(tmp_path / cache),
        "CONDA_UNSLOTH_NVML": "0",
        "CONDA_UNSLOTH_NVIDIA_SMI": "",
    }


@pytest.mark.netns
def test_a_bundle_recreates_the_env_with_no_network_identical_by_hashes(
    cli: Cli, demo: Path, tmp_path: Path
) -> None:
    src = make_source(cli, demo, tmp_path)
    out = tmp_path / "unsloth.tar"
    r = cli("export", "-p", str(src.prefix), "--format", "bundle", "-o", str(out))
    assert r.code == 0, r.err
    assert r.out.startswith(f"wrote {out} (bundle: 9 conda packages, 8 wheels, ")
    digest = bundle._sha256(out)
    assert f"sha256 {digest}" in r.out
    # the machine on the other side has neither the channel, the wheels nor a package cache
    shutil.rmtree(src.demo)
    shutil.rmtree(tmp_path / "cache")
    dest = tmp_path / "dest"
    proc = offline(
        [sys.executable, "-m", "conda_unsloth", "create", "-p", str(dest), "--from-bundle",
         str(out), "--yes"],
        cu_env(tmp_path, "cache2"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"created {dest} (9 conda + 8 pip packages" in proc.stdout
    again = cli("export", "-p", str(dest), "--format", "explicit")
    assert again.code == 0, again.err
    assert again.out == src.explicit  # every url#sha256 line, the pip pins with their hashes
    assert "#sha256=" in src.explicit and src.explicit.count("file://") == 17
    for f in (src.prefix / "conda-meta").glob("*.json"):
        a, b = json.loads(f.read_text()), json.loads((dest / "conda-meta" / f.name).read_text())
        assert (a["url"], a["channel"], a["sha256"]) == (b["url"], b["channel"], b["sha256"])
    run = subprocess.run(
        [str(dest / "bin" / "python"), "-c", "import unsloth, torch; print(torch.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0 and run.stdout.strip() == "2.5.1", run.stderr


def test_the_bundle_channel_is_an_indexed_conda_channel(
    cli: Cli, demo: Path, tmp_path: Path
) -> None:
    src = make_source(cli, demo, tmp_path)
    out = tmp_path / "b.tar"
    assert cli("export", "-p", str(src.prefix), "-o", str(out)).code == 0  # *.tar: a bundle
    root = tmp_path / "x"
    with tarfile.open(out) as tar:
        names = tar.getnames()
        assert names[0] == "conda-unsloth-bundle.json"
        for info in tar:  # names written by the export: plain relative paths
            fh = tar.extractfile(info)
            assert fh is not None
            (root / info.name).parent.mkdir(parents=True, exist_ok=True)
            (root / info.name).write_bytes(fh.read())
    assert {n for n in names if n.endswith(".txt")} == {
        "explicit.txt",
        "pip-constraints.txt",
        "pip-requirements.txt",
    }
    assert (root / "explicit.txt").read_text() == src.explicit
    constraints = (root / "pip-constraints.txt").read_text().split()
    assert "torch==2.5.1" in constraints and "xformers==0.0.28.post3" in constraints
    reqs = (root / "pip-requirements.txt").read_text().splitlines()
    assert len(reqs) == 8 and all(" --hash=sha256:" in line for line in reqs)
    repodata = json.loads((root / "channel" / "linux-64" / "repodata.json").read_text())
    assert sorted(repodata["packages"]) == sorted(
        p.name for p in (root / "channel" / "linux-64").glob("*.tar.bz2")
    )
    # the rattler solver plans the same stack from it, offline
    r = cli("solve", "-c", (root / "channel").as_uri(), "--offline", "--cuda", "12.1", "--json")
    assert r.code == 0, r.err
    solved = {p["name"]: p["build"] for p in json.loads(r.out)["packages"]}
    assert solved["pytorch"] == "py3.11_cuda12.1_cudnn9.1.0_0"


def test_packages_from_a_network_channel_come_from_a_package_cache(
    cli: Cli, demo: Path, tmp_path: Path
) -> None:
    """A network channel: rattler keeps no package files, so the bundle needs a package cache
    that has them (--pkgs-dir); the recreated env keeps the http:// URLs."""
    mine = copy_demo(demo, tmp_path / "demo")
    prefix = tmp_path / "src"
    out = tmp_path / "b.tar"
    with serve(mine) as base:
        r = cli(
            "create", "-p", str(prefix), "-c", f"{base}/channel", "--pip-find-links",
            str(mine / "wheels"), "--cuda", "12.1", "--yes", "-q",
        )  # fmt: skip
        assert r.code == 0, r.err
    source = cli("export", "-p", str(prefix), "--format", "explicit").out
    assert f"{base}/channel/linux-64/pytorch-2.5.1" in source
    before = set(tmp_path.iterdir())
    r = cli("export", "-p", str(prefix), "--format", "bundle", "-o", str(out))
    assert r.code == 2
    first = r.err.splitlines()[0]
    assert first.startswith("conda-unsloth: error: conda package ")
    assert "is not in a package cache (and 8 more): searched " in first
    assert first.endswith("; nothing was written")
    assert set(tmp_path.iterdir()) == before
    # a package cache holding the files (as conda's pkgs dir would after downloading them)
    pkgs = tmp_path / "pkgs"
    pkgs.mkdir()
    for f in (mine / "channel").glob("*/*.tar.bz2"):
        shutil.copy(f, pkgs / f.name)
    (pkgs / "pytorch-2.5.1-py3.11_cpu_0.tar.bz2").write_bytes(b"not this package")
    r = cli(
        "export", "-p", str(prefix), "--format", "bundle", "-o", str(out), "--pkgs-dir", str(pkgs)
    )
    assert r.code == 0, r.err
    shutil.rmtree(mine)
    dest = tmp_path / "dest"
    r = cli("create", "-p", str(dest), "--from-bundle", str(out), "--yes", "-q")
    assert r.code == 0, r.err
    assert cli("export", "-p", str(dest), "--format", "explicit").out == source


def test_a_wheel_found_nowhere_is_named_and_find_links_supplies_it(
    cli: Cli, demo: Path, tmp_path: Path
) -> None:
    src = make_source(cli, demo, tmp_path)
    moved = tmp_path / "moved"
    shutil.move(src.demo / "wheels", moved)
    out = tmp_path / "b.tar"
    r = cli("export", "-p", str(src.prefix), "--format", "bundle", "-o", str(out))
    assert r.code == 2
    assert r.err.splitlines()[0] == (
        "conda-unsloth: error: pip package accelerate==1.2.1: its wheel "
        "(accelerate-1.2.1-py3-none-any.whl) was found neither at its recorded URL nor in no "
        "--pip-find-links given; nothing was written"
    )
    assert not out.exists()
    r = cli("export", "-p", str(src.prefix), "--format", "bundle", "-o", str(out),
            "--pip-find-links", str(moved))  # fmt: skip
    assert r.code == 0, r.err


@pytest.fixture(scope="module")
def built_bundle(tmp_path_factory: pytest.TempPathFactory, demo: Path) -> Path:
    """One bundle of the demo env, for the tests that break copies of it."""
    tmp = tmp_path_factory.mktemp("bundle")
    env = {**cu_env(tmp, "cache"), "CONDA_PKGS_DIRS": ""}
    prefix = tmp / "src"
    cmd = [sys.executable, "-m", "conda_unsloth"]
    for argv in (
        envbuild.create_args(demo, prefix),
        ["export", "-p", str(prefix), "--format", "bundle", "-o", str(tmp / "b.tar")],
    ):
        proc = subprocess.run([*cmd, *argv, "-q"], env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    return tmp / "b.tar"


def _flip(name: str) -> Callable[[tarfile.TarInfo, bytes], tuple[tarfile.TarInfo, bytes]]:
    def change(info: tarfile.TarInfo, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
        if info.name == name:  # one byte changed, same size
            data = data[:-1] + bytes([data[-1] ^ 1])
        return info, data

    return change


def _manifest(
    edit: Callable[[dict[str, object]], None],
) -> Callable[[tarfile.TarInfo, bytes], tuple[tarfile.TarInfo, bytes]]:
    def change(info: tarfile.TarInfo, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
        if info.name == bundle.MANIFEST:
            doc = json.loads(data)
            edit(doc)
            data = json.dumps(doc).encode()
        return info, data

    return change


def _keep(info: tarfile.TarInfo, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return info, data


PKG = "channel/linux-64/pytorch-2.5.1-py3.11_cuda12.1_cudnn9.1.0_0.tar.bz2"
WHEEL = "wheels/unsloth-2024.12.12-py3-none-any.whl"


def _both(doc: dict[str, object]) -> None:
    """A package swapped and its manifest entry updated to match: the record still names the
    real package's sha256."""
    files = doc["files"]
    assert isinstance(files, dict)
    files[PKG]["sha256"] = "0" * 64


@pytest.mark.parametrize(
    ("change", "extra", "message"),
    [
        (_flip(PKG), (), f"{PKG} does not match its sha256"),
        (_flip(WHEEL), (), f"{WHEEL} does not match its sha256"),
        (_flip("explicit.txt"), (), "explicit.txt does not match its sha256"),
        (_keep, (("../evil.sh", b"echo pwned\n"),), "it holds '../evil.sh', which its manifest"),
        (_keep, (("channel/linux-64/extra.tar.bz2", b"x"),), "which its manifest does not list"),
        (
            lambda i, d: None if i.name == WHEEL else (i, d),
            (),
            f"{WHEEL} is listed in its manifest but missing",
        ),
        (_manifest(lambda d: d.update(schema="other/9")), (), "has schema 'other/9'"),
        (_manifest(_both), (), f"{PKG} does not match its sha256"),
    ],
    ids=[
        "package",
        "wheel",
        "lock",
        "path-escape",
        "unlisted",
        "missing",
        "schema",
        "manifest-edited",
    ],
)
def test_a_changed_bundle_is_refused_and_nothing_written(
    cli: Cli,
    built_bundle: Path,
    tmp_path: Path,
    change: Callable[[tarfile.TarInfo, bytes], tuple[tarfile.TarInfo, bytes] | None],
    extra: tuple[tuple[str, bytes], ...],
    message: str,
) -> None:
    bad = rewrite(built_bundle, tmp_path / "bad.tar", change, extra)
    before = tree(tmp_path)
    r = cli("create", "-p", str(tmp_path / "env"), "--from-bundle", str(bad), "--yes")
    assert r.code == 2, r.out
    first = r.err.splitlines()[0]
    assert first.startswith(f"conda-unsloth: error: bundle {bad}: ")
    assert message in first and first.endswith("refusing it (nothing was written)")
    assert tree(tmp_path) == before
    assert not (tmp_path / "evil.sh").exists() and not (tmp_path.parent / "evil.sh").exists()


@pytest.mark.parametrize(
    ("what", "message"),
    [
        ("truncated", "it is damaged"),
        ("text", "not a tar file"),
    ],
)
def test_a_damaged_file_is_refused(
    cli: Cli, built_bundle: Path, tmp_path: Path, what: str, message: str
) -> None:
    bad = tmp_path / "bad.tar"
    data = built_bundle.read_bytes()
    bad.write_bytes(data[: len(data) // 2] if what == "truncated" else b"@EXPLICIT\n")
    r = cli("create", "-p", str(tmp_path / "env"), "--from-bundle", str(bad), "--yes")
    assert r.code == 2
    assert message in r.err.splitlines()[0] and "Traceback" not in r.err
    assert not (tmp_path / "env").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["export", "-p", "{src}", "--format", "bundle"],
            "a bundle is a binary file: give -o FILE.tar",
        ),
        (
            ["export", "-p", "{src}", "-o", "{tmp}/x.txt", "--pkgs-dir", "{tmp}"],
            "only apply with --format bundle",
        ),
        (
            ["export", "-p", "{src}", "-o", "{tmp}/foreign.tar"],
            "exists and was not written by conda-unsloth",
        ),
        (
            ["create", "-p", "{tmp}/e", "--from-bundle", "{tmp}/none.tar", "--yes"],
            "No such file or directory",
        ),
        (["create", "-p", "{tmp}/e", "--from-bundle", "{tmp}", "--yes"], "is not a regular file"),
        (
            ["create", "-p", "{tmp}/e", "--from-bundle", "{b}", "--from-lock", "{b}", "--yes"],
            "not both --from-lock and --from-bundle",
        ),
        (
            [
                "create",
                "-p",
                "{tmp}/e",
                "--from-bundle",
                "{b}",
                "--platform",
                "osx-arm64",
                "--yes",
            ],
            "is for linux-64, not osx-arm64",
        ),
    ],
    ids=[
        "no-output",
        "pkgs-dir-not-bundle",
        "foreign-file",
        "missing",
        "directory",
        "with-lock",
        "platform",
    ],
)
def test_bad_bundle_arguments_are_one_line(
    cli: Cli, built_bundle: Path, tmp_path: Path, argv: list[str], message: str
) -> None:
    (tmp_path / "foreign.tar").write_bytes(b"someone's tar")
    src = built_bundle.parent / "src"
    before = tree(tmp_path)
    r = cli(*[a.format(src=src, tmp=tmp_path, b=built_bundle) for a in argv])
    assert r.code == 2, r.out
    assert message in r.err.splitlines()[0] and "Traceback" not in r.err
    assert tree(tmp_path) == before


def test_dry_runs_write_nothing(cli: Cli, built_bundle: Path, tmp_path: Path) -> None:
    src = built_bundle.parent / "src"
    out = tmp_path / "b.tar"
    r = cli("export", "-p", str(src), "--format", "bundle", "-o", str(out), "--dry-run")
    assert r.code == 0, r.err
    assert r.out.startswith(f"would write {out} (bundle: 9 conda packages, 8 wheels, ")
    r = cli("create", "-p", str(tmp_path / "e"), "--from-bundle", str(built_bundle), "--dry-run")
    assert r.code == 0, r.err
    assert "pytorch" in r.out
    assert sorted(p.name for p in tmp_path.iterdir()) == []

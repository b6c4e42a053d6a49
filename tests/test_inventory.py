"""Inventory of a prefix: conda records and site-packages metadata read from disk, conda
packages told apart from pip-installed ones, corrupt records refused with the file's name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conda_unsloth import inventory
from conda_unsloth.errors import PrefixError
from conda_unsloth.rules import Package
from tests import prefixes as P
from tests.conftest import tree


def test_seed_prefix_conda_and_pip_packages(tmp_path: Path) -> None:
    prefix = P.write_prefix(tmp_path / "seed", P.seed_pip())
    inv = inventory.read(prefix)
    pkgs = {(p.name, p.installer): p for p in inv.packages()}
    assert pkgs[("pytorch", "conda")] == Package(
        "pytorch", "2.3.1", "py3.11_cuda12.1_cudnn8.9.2_0", "pytorch", "conda"
    )
    assert pkgs[("python", "conda")].channel == "conda-forge"
    assert pkgs[("pytorch-mutex", "conda")].build == "cuda"
    assert pkgs[("xformers", "pip")] == Package("xformers", "0.0.27", "", "pypi", "pip")
    assert pkgs[("unsloth", "pip")].version == "2024.9.post4"
    assert pkgs[("transformers", "pip")].version == "4.45.1"
    # conda's own torch metadata (an egg-info the pytorch record lists) is not a pip torch
    assert ("torch", "pip") not in pkgs
    assert ("triton", "pip") not in pkgs
    owned = {d.name: d.owner for d in inv.dists if d.owner}
    assert owned == {"torch": "pytorch", "triton": "torchtriton"}
    assert inv.site_packages == [prefix / "lib" / "python3.11" / "site-packages"]
    assert inv.python_version() == "3.11"
    assert inv.has_gpu_stack()


def test_pip_torch_over_conda_pytorch_is_listed_as_pip(tmp_path: Path) -> None:
    stack = P.swap(P.healthy(), pip=[P.Wheel("torch", "2.5.1")])
    inv = inventory.read(P.write_prefix(tmp_path / "env", stack))
    torches = sorted((p.name, p.installer, p.version) for p in inv.packages() if "torch" in p.name)
    assert ("pytorch", "conda", "2.5.1") in torches
    assert ("torch", "pip", "2.5.1") in torches


def test_conda_forge_dist_info_with_installer_conda_is_not_pip(tmp_path: Path) -> None:
    rec = P.Rec(
        "transformers",
        "4.46.3",
        "pyhd8ed1ab_0",
        "conda-forge",
        subdir="noarch",
        dist="transformers",
    )
    stack = P.swap(P.healthy(), conda=[rec])
    prefix = P.write_prefix(tmp_path / "env", stack)
    inv = inventory.read(prefix)
    tf = [p for p in inv.packages() if p.name == "transformers"]
    assert tf == [Package("transformers", "4.46.3", "pyhd8ed1ab_0", "conda-forge", "conda")]
    dist = next(d for d in inv.dists if d.name == "transformers")
    assert dist.installer == "conda" and dist.owner == "transformers"


def test_unowned_dist_with_installer_conda_is_not_pip(tmp_path: Path) -> None:
    prefix = P.write_prefix(tmp_path / "env", P.healthy())
    P.write_wheel(prefix, P.Wheel("numpy", "1.26.4", installer="conda"), "3.11")
    names = {p.name for p in inventory.read(prefix).packages()}
    assert "numpy" not in names


@pytest.mark.parametrize(
    ("installer", "expected"),
    [("pip", "pip"), ("uv", "pip"), ("", "pip")],
    ids=["pip", "uv", "no-installer-file"],
)
def test_any_python_installer_counts_as_pip(tmp_path: Path, installer: str, expected: str) -> None:
    prefix = P.write_prefix(tmp_path / "env", P.healthy())
    folder = P.write_wheel(prefix, P.Wheel("peft", "0.13.0", installer=installer or "x"), "3.11")
    if not installer:
        (folder / "INSTALLER").unlink()
    got = [
        p for p in inventory.read(prefix).packages() if p.name == "peft" and p.version == "0.13.0"
    ]
    assert [p.installer for p in got] == [expected]


def test_egg_info_file_and_folder(tmp_path: Path) -> None:
    prefix = P.write_prefix(tmp_path / "env", ([P.PY311], []))
    sp = prefix / "lib" / "python3.11" / "site-packages"
    (sp / "oldpkg-1.2-py3.11.egg-info").write_text(
        "Metadata-Version: 1.0\nName: oldpkg\nVersion: 1.2\n", encoding="utf-8"
    )
    (sp / "Other_Pkg-0.3-py3.11.egg-info").mkdir()
    (sp / "Other_Pkg-0.3-py3.11.egg-info" / "PKG-INFO").write_text(
        "Metadata-Version: 1.0\nName: Other-Pkg\nVersion: 0.3\n", encoding="utf-8"
    )
    pip = {(p.name, p.version) for p in inventory.read(prefix).packages() if p.installer == "pip"}
    assert pip == {("oldpkg", "1.2"), ("Other-Pkg", "0.3")}


def test_dist_info_without_metadata_uses_the_folder_name(tmp_path: Path) -> None:
    prefix = P.write_prefix(tmp_path / "env", ([P.PY311], []))
    (prefix / "lib" / "python3.11" / "site-packages" / "unsloth_zoo-2024.12.7.dist-info").mkdir()
    pip = [(p.name, p.version) for p in inventory.read(prefix).packages() if p.installer == "pip"]
    assert pip == [("unsloth_zoo", "2024.12.7")]


def test_site_packages_of_other_pythons_are_ignored(tmp_path: Path) -> None:
    prefix = P.write_prefix(tmp_path / "env", P.healthy())
    stale = prefix / "lib" / "python3.10" / "site-packages"
    P.write_wheel(prefix, P.Wheel("xformers", "0.0.27"), "3.10")
    inv = inventory.read(prefix)
    assert stale not in inv.site_packages
    assert all(p.version != "0.0.27" for p in inv.packages())


def test_windows_layout_lib_site_packages(tmp_path: Path) -> None:
    prefix = tmp_path / "winenv"
    (prefix / "conda-meta").mkdir(parents=True)
    sp = prefix / "Lib" / "site-packages" / "unsloth-2024.12.12.dist-info"
    sp.mkdir(parents=True)
    (sp / "METADATA").write_text("Name: unsloth\nVersion: 2024.12.12\n", encoding="utf-8")
    (sp / "INSTALLER").write_text("pip\n", encoding="utf-8")
    inv = inventory.read(prefix)
    assert [(p.name, p.installer) for p in inv.packages()] == [("unsloth", "pip")]


def test_marker_and_history_are_not_records(tmp_path: Path) -> None:
    prefix = P.write_prefix(tmp_path / "env", P.healthy())
    for name in ("conda-unsloth", "conda-unsloth.json"):  # current and legacy marker names
        (prefix / "conda-meta" / name).write_text(
            json.dumps({"schema": 1, "tool": "conda-unsloth"}), encoding="utf-8"
        )
    (prefix / "conda-meta" / "pinned").write_text("mkl<2024.1\n", encoding="utf-8")
    names = [r.name for r in inventory.read(prefix).records]
    assert "conda-unsloth" not in names and len(names) == 7


def test_no_gpu_stack_in_a_plain_env(tmp_path: Path) -> None:
    prefix = P.write_prefix(
        tmp_path / "env", ([P.PY311, P.MKL_2023], [P.Wheel("requests", "2.32.3")])
    )
    assert not inventory.read(prefix).has_gpu_stack()


@pytest.mark.parametrize(
    ("channel", "url", "expected"),
    [
        ("https://conda.anaconda.org/pytorch/linux-64", "", "pytorch"),
        ("https://conda.anaconda.org/conda-forge/noarch/", "", "conda-forge"),
        ("https://conda.anaconda.org/t/tk-123-secret/xformers/linux-64", "", "xformers"),
        ("https://repo.anaconda.com/pkgs/main/linux-64", "", "pkgs/main"),
        ("conda-forge", "", "conda-forge"),
        ("pytorch/linux-64", "", "pytorch"),
        (
            "",
            "https://conda.anaconda.org/nvidia/linux-64/cuda-cudart-12.1.105-0.tar.bz2",
            "nvidia",
        ),
        ("", "", ""),
    ],
    ids=[
        "url-subdir",
        "url-noarch-slash",
        "token",
        "defaults",
        "name",
        "name-subdir",
        "from-url",
        "none",
    ],
)
def test_channel_name(channel: str, url: str, expected: str) -> None:
    assert inventory.channel_name(channel, url) == expected


def test_channel_from_url_when_record_has_no_channel(tmp_path: Path) -> None:
    prefix = P.write_prefix(tmp_path / "env", ([P.PY311], []))
    rec = prefix / "conda-meta" / "python-3.11.9-hb806964_0_cpython.json"
    data = json.loads(rec.read_text())
    del data["channel"]
    rec.write_text(json.dumps(data))
    assert inventory.read(prefix).records[0].channel == "conda-forge"


# ----------------------------------------------------------------------------- bad input

CORRUPT = {
    "truncated": '{"name": "pytorch", "version": "2.3.1", "bu',
    "not-an-object": '["pytorch", "2.3.1"]',
    "missing-name": '{"version": "2.3.1", "build": "py3.11_cuda12.1_cudnn8.9.2_0"}',
    "name-not-a-string": '{"name": 5, "version": "2.3.1", "build": "0"}',
    "not-utf8": b'{"name": "\xff\xfe"}',
    "empty": "",
}


@pytest.mark.parametrize("kind", list(CORRUPT), ids=list(CORRUPT))
def test_one_corrupt_record_among_good_ones_names_the_file(tmp_path: Path, kind: str) -> None:
    prefix = P.write_prefix(tmp_path / "env", P.healthy())
    bad = prefix / "conda-meta" / "pytorch-2.3.1-py3.11_cuda12.1_cudnn8.9.2_0.json"
    body = CORRUPT[kind]
    if isinstance(body, bytes):
        bad.write_bytes(body)
    else:
        bad.write_text(body, encoding="utf-8")
    before = tree(prefix)
    with pytest.raises(PrefixError) as exc:
        inventory.read(prefix)
    assert str(bad) in exc.value.message
    assert "\n" not in exc.value.message
    assert exc.value.return_code == 2
    assert tree(prefix) == before


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.write_text("x"), "is a file"),
        (lambda p: p.mkdir(), "not a conda environment"),
    ],
    ids=["missing", "file", "no-conda-meta"],
)
def test_not_an_env(tmp_path: Path, make: object, words: str) -> None:
    target = tmp_path / "target"
    make(target)  # type: ignore[operator]
    with pytest.raises(PrefixError) as exc:
        inventory.read(target)
    assert words in exc.value.message and exc.value.return_code == 2

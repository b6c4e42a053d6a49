"""Inventory of a prefix: conda records and site-packages metadata read from disk, conda
packages told apart from pip-installed ones, corrupt records refused with the file's name."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conda_unsloth import inventory
from conda_unsloth.errors import PrefixError
from conda_unsloth.knowledge.packages import Package
from tests import prefixes as P
from tests.conftest import tree
from tests.typed import present


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
        ("file:///tmp/demo/channel/linux-64", "", "file:///tmp/demo/channel"),
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
        "file-url",
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

CORRUPT: dict[str, str | bytes] = {
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
def test_not_an_env(tmp_path: Path, make: Callable[[Path], object], words: str) -> None:
    target = tmp_path / "target"
    make(target)
    with pytest.raises(PrefixError) as exc:
        inventory.read(target)
    assert words in exc.value.message and exc.value.return_code == 2


def _record_with(prefix: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    rec = prefix / "conda-meta" / "pytorch-2.5.1-py3.11_cuda12.1_cudnn9.1.0_0.json"
    data = json.loads(rec.read_text(encoding="utf-8"))
    edit(data)
    rec.write_text(json.dumps(data), encoding="utf-8")
    return rec


def _paths_only(data: dict[str, Any]) -> None:
    del data["files"]  # conda >= 4.4 records may carry paths_data alone


def _set(*keys: str | int, value: object, paths_only: bool = False) -> Callable[..., None]:
    def edit(data: dict[str, Any]) -> None:
        if paths_only:
            _paths_only(data)
        node: Any = data
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value

    return edit


WRONG_TYPES = {
    "paths-path-number": (
        _set("paths_data", "paths", 0, "_path", value=5, paths_only=True),
        "'paths_data.paths[0]._path' is a number",
    ),
    "paths-entry-string": (
        _set("paths_data", "paths", 0, value="x", paths_only=True),
        "'paths_data.paths[0]' is a string",
    ),
    "paths-not-a-list": (
        _set("paths_data", "paths", value={"a": 1}, paths_only=True),
        "'paths_data.paths' is an object",
    ),
    "paths-data-list": (_set("paths_data", value=[1], paths_only=True), "'paths_data' is a list"),
    "files-string": (_set("files", value="lib/x.py"), "'files' is a string"),
    "files-item-number": (_set("files", 1, value=7), "'files[1]' is a number"),
    "depends-string": (_set("depends", value="python >=3.11"), "'depends' is a string"),
    "depends-item-object": (
        _set("depends", 0, value={"name": "blas"}),
        "'depends[0]' is an object",
    ),
    "channel-number": (_set("channel", value=5), "'channel' is a number"),
    "url-list": (_set("url", value=["https://x"]), "'url' is a list"),
    "version-number": (_set("version", value=2.5), "'version' is a number"),
    "build-bool": (_set("build", value=True), "'build' is a boolean"),
}


@pytest.mark.parametrize("kind", list(WRONG_TYPES), ids=list(WRONG_TYPES))
def test_record_field_of_the_wrong_type_is_a_one_line_prefix_error(
    tmp_path: Path, kind: str
) -> None:
    prefix = P.write_prefix(tmp_path / "env", P.healthy())
    edit, why = WRONG_TYPES[kind]
    rec = _record_with(prefix, edit)
    before = tree(prefix)
    with pytest.raises(PrefixError) as exc:
        inventory.read(prefix)
    assert exc.value.message.startswith(f"conda record {rec} is corrupt ({why}")
    assert "\n" not in exc.value.message and exc.value.return_code == 2
    assert tree(prefix) == before


def test_record_with_paths_data_only_and_null_channel_is_read(tmp_path: Path) -> None:
    prefix = P.write_prefix(tmp_path / "env", P.healthy())

    def edit(data: dict[str, Any]) -> None:
        _paths_only(data)
        data["channel"] = None  # then the package url names the channel
        data["depends"] = None

    _record_with(prefix, edit)
    inv = inventory.read(prefix)
    torch = inv.record("pytorch")
    assert torch is not None and torch.channel == "pytorch"
    assert any(f.endswith("torch-2.5.1-py3.11.egg-info/PKG-INFO") for f in torch.files)
    # the egg-info the record lists is still conda's, not a pip torch
    assert ("torch", "pip") not in {(p.name, p.installer) for p in inv.packages()}


# ----------------------------------------------------------------------------- hostile files

SP = Path("lib/python3.11/site-packages")


@pytest.mark.parametrize(
    "where",
    [
        "peft-0.14.0.dist-info/METADATA",
        "peft-0.14.0.dist-info/INSTALLER",
        "oldpkg-1.2-py3.11.egg-info",
        "Other_Pkg-0.3-py3.11.egg-info/PKG-INFO",
    ],
    ids=["metadata", "installer", "egg-info-file", "pkg-info"],
)
def test_fifo_in_site_packages_is_not_opened(tmp_path: Path, where: str) -> None:
    prefix = P.write_prefix(tmp_path / "env", P.healthy())
    (prefix / SP / "Other_Pkg-0.3-py3.11.egg-info").mkdir()
    fifo = P.make_fifo(prefix / SP / where)
    inv = P.call_or_unhang(lambda: inventory.read(prefix), [fifo])
    pip = {p.name: p for p in inv.packages() if p.installer == "pip"}
    # what the FIFO stood for is unreadable: the folder name still gives name and version
    assert pip["peft"].version == "0.14.0"
    assert ("Other_Pkg", "0.3") in {(p.name, p.version) for p in pip.values()}
    assert len(inv.records) == 7


def test_fifo_conda_record_is_a_one_line_prefix_error(tmp_path: Path) -> None:
    prefix = P.write_prefix(tmp_path / "env", P.healthy())
    fifo = P.make_fifo(prefix / "conda-meta" / "bad-1.0-0.json")

    def read() -> str:
        try:
            inventory.read(prefix)
        except PrefixError as exc:
            return exc.message
        return "no error"

    message = P.call_or_unhang(read, [fifo])
    assert message.startswith(f"conda record {fifo} is corrupt (not a regular file)")


def test_metadata_read_is_bounded_and_stops_at_the_headers(tmp_path: Path) -> None:
    prefix = P.write_prefix(tmp_path / "env", P.healthy())
    folder = P.write_wheel(prefix, P.Wheel("peft", "0.14.0"), "3.11")
    # 8 MB of header continuation lines after Name/Version: only the first MiB is read
    body = "Metadata-Version: 2.1\nName: peft\nVersion: 0.14.0\nKeywords: x\n" + " y\n" * 4_000_000
    (folder / "METADATA").write_text(body, encoding="utf-8")
    assert inventory.read_regular(folder / "METADATA", 1024 * 1024) == body.encode()[: 1024 * 1024]
    pip = {p.name: p.version for p in inventory.read(prefix).packages() if p.installer == "pip"}
    assert pip["peft"] == "0.14.0"
    (folder / "METADATA").write_text("Name: peft\nVersion: 0.14.0\n\n" + "z" * 100_000)
    head = inventory.read_regular(folder / "METADATA", 1024 * 1024, stop=b"\n\n")
    assert head.startswith(b"Name: peft\nVersion: 0.14.0\n\n") and len(head) < 100_000


def test_two_thousand_pip_dists_are_all_listed(tmp_path: Path) -> None:
    """A huge site-packages is read one small header per distribution (no timing here)."""
    prefix = P.write_prefix(tmp_path / "env", P.healthy())
    sp = prefix / SP
    for i in range(2000):
        folder = sp / f"pkg{i:04d}-1.{i}.dist-info"
        folder.mkdir()
        (folder / "METADATA").write_text(f"Name: pkg{i:04d}\nVersion: 1.{i}\n\nlong text\n")
        (folder / "INSTALLER").write_text("pip\n")
    inv = inventory.read(prefix)
    pip = [p for p in inv.packages() if p.installer == "pip"]
    assert len(pip) == 2000 + len(P.healthy()[1])
    assert {"pkg0000", "pkg1999", "unsloth"} <= {p.name for p in pip}


def test_a_conda_package_pip_replaced_is_marked_and_its_depends_kept(tmp_path: Path) -> None:
    """pip's `Attempting uninstall: torch` removes conda's torch metadata but not its record:
    the record is marked replaced (by the pip distribution Python now imports)."""
    torch_240 = P.Wheel(
        "torch",
        "2.4.0",
        requires=('triton (==3.0.0) ; platform_system == "Linux"',),
        replaces="pytorch",
    )
    prefix = P.write_prefix(tmp_path / "env", P.swap(P.healthy(), pip=[torch_240]))
    inv = inventory.read(prefix)
    rec = inv.record("pytorch")
    assert rec is not None and rec.replaced_by == "torch 2.4.0 (pip)"
    assert "torchtriton 3.1.0" in rec.depends
    pkgs = {(p.name, p.installer): p for p in inv.packages()}
    assert pkgs[("pytorch", "conda")].stale
    assert not pkgs[("torchtriton", "conda")].stale
    assert pkgs[("torch", "pip")].requires == ('triton (==3.0.0) ; platform_system == "Linux"',)
    assert (
        inv.to_json()["conda"][[r["name"] for r in inv.to_json()["conda"]].index("pytorch")][
            "replaced_by"
        ]
        == "torch 2.4.0 (pip)"
    )
    # a pip torch next to conda's intact torch metadata (pip --ignore-installed) is a
    # duplicate (F12), not a replacement
    other = P.write_prefix(
        tmp_path / "other", P.swap(P.healthy(), pip=[P.Wheel("torch", "2.4.0")])
    )
    assert present(inventory.read(other).record("pytorch"), "pytorch").replaced_by is None

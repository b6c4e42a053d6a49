"""The test-channel builder writes real packages: py-rattler's own extractor accepts them and
the hashes in repodata.json are those of the bytes on disk."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.channels import Pkg, noarch_python, write_channel, zstd_available

rattler_extract = pytest.importorskip("rattler.rattler").extract


@pytest.mark.parametrize(
    "fmt",
    [
        "tar.bz2",
        pytest.param(
            "conda",
            marks=pytest.mark.skipif(not zstd_available(), reason="needs zstandard"),
        ),
    ],
    ids=["tar.bz2", "conda"],
)
def test_artifact_hashes_match_repodata_and_extract(tmp_path: Path, fmt: str) -> None:
    pkg = Pkg("demo", "1.2.3", "h0_1", build_number=1, depends=("python >=3.10",), fmt=fmt)
    chan = write_channel(tmp_path / "chan", [pkg])
    repodata = json.loads((chan / "linux-64" / "repodata.json").read_text())
    section = "packages.conda" if fmt == "conda" else "packages"
    entry = repodata[section][pkg.fn]
    data = (chan / "linux-64" / pkg.fn).read_bytes()
    assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert entry["md5"] == hashlib.md5(data).hexdigest()
    assert entry["size"] == len(data)
    assert entry["depends"] == ["python >=3.10"]
    noarch = json.loads((chan / "noarch" / "repodata.json").read_text())
    assert noarch["packages"] == {} and noarch["info"]["subdir"] == "noarch"

    out = tmp_path / "extracted"
    rattler_extract(str(chan / "linux-64" / pkg.fn), str(out))
    index = json.loads((out / "info" / "index.json").read_text())
    assert (index["name"], index["version"], index["build"]) == ("demo", "1.2.3", "h0_1")
    paths = json.loads((out / "info" / "paths.json").read_text())["paths"]
    assert [p["_path"] for p in paths] == ["share/demo/demo-1.2.3-h0_1.txt"]
    payload = (out / "share" / "demo" / "demo-1.2.3-h0_1.txt").read_bytes()
    assert paths[0]["sha256"] == hashlib.sha256(payload).hexdigest()


def test_noarch_python_package_layout(tmp_path: Path) -> None:
    pkg = noarch_python("tiny-mod", "0.1")
    chan = write_channel(tmp_path / "chan", [pkg])
    entry = json.loads((chan / "noarch" / "repodata.json").read_text())["packages"][pkg.fn]
    assert entry["noarch"] == "python" and entry["subdir"] == "noarch"
    out = tmp_path / "x"
    rattler_extract(str(chan / "noarch" / pkg.fn), str(out))
    assert (
        out / "site-packages" / "tiny_mod" / "__init__.py"
    ).read_text() == '__version__ = "0.1"\n'

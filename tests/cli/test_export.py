"""`conda-unsloth export`: an installed env (conda-meta records + pip dist-info + marker) to
@EXPLICIT, conda-lock v1 and a pinned environment.yml, with credentials removed from every URL."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from conda_unsloth import spec
from conda_unsloth.exports.lockread import read_lock
from conda_unsloth.redact import has_credentials
from tests.conftest import Result, tree
from tests.exportenv import CF, MD5, PT, SHA, TRL_WHL, UNSLOTH_WHL, XF, make_env

Cli = Callable[..., Result]


@pytest.fixture
def env(tmp_path: Path) -> Path:
    return make_env(tmp_path)


def test_explicit_lines_in_dependency_order(cli: Cli, env: Path) -> None:
    r = cli("export", "-p", str(env), "--format", "explicit")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert "# platform: linux-64" in lines
    assert "# virtual packages: __cuda=12.1=0 __glibc=2.28=0" in lines
    body = lines[lines.index("@EXPLICIT") + 1 :]
    assert body[:4] == [
        f"{CF}/linux-64/libzlib-1.3.1-hb9d3cd8_2.conda#{SHA['libzlib']}",
        f"{CF}/linux-64/python-3.11.9-hb806964_1_cpython.conda#{SHA['python']}",
        f"{PT}/linux-64/pytorch-2.4.1-py3.11_cuda12.1_cudnn9.1.0_0.tar.bz2#{SHA['pytorch']}",
        f"{XF}/linux-64/xformers-0.0.28.post1-py311_cu12.1.0_pyt2.4.1.tar.bz2#{SHA['xformers']}",
    ]
    assert f"# pip unsloth==2024.9.post4 @ {UNSLOTH_WHL}#sha256={'f' * 64}" in body
    assert f"# pip trl==0.12.2 @ {TRL_WHL}#sha256={'e' * 64}" in body
    assert "# pip peft==0.14.0" in body


def test_explicit_export_reads_back_as_a_lock(cli: Cli, env: Path, tmp_path: Path) -> None:
    out = tmp_path / "explicit.txt"
    r = cli("export", "-p", str(env), "-o", str(out))  # format from the file name
    assert r.code == 0, r.err
    solved = read_lock(out, "linux-64")
    assert [(x.name, x.sha256) for x in solved.records] == [
        (n, SHA[n]) for n in ("libzlib", "python", "pytorch", "xformers")
    ]


def test_conda_lock_has_hashes_deps_and_pip_wheels(cli: Cli, env: Path, tmp_path: Path) -> None:
    out = tmp_path / "conda-lock.yml"
    r = cli("export", "-p", str(env), "-o", str(out))
    assert r.code == 0, r.err
    assert "wrote" in r.out and "(conda-lock: 4 conda packages, 3 pip)" in r.out
    assert "notice: 1 pip package(s) have no known wheel URL/sha256 (peft==0.14.0)" in r.err
    doc = YAML(typ="safe").load(out.read_text())
    assert doc["version"] == 1
    assert doc["metadata"]["platforms"] == ["linux-64"]
    pkgs = {(p["name"], p["manager"]): p for p in doc["package"]}
    torch = pkgs[("pytorch", "conda")]
    assert torch["hash"] == {"md5": MD5["pytorch"], "sha256": SHA["pytorch"]}
    assert torch["dependencies"] == {"python": ">=3.11,<3.12.0a0", "libzlib": ">=1.3.1,<2.0a0"}
    assert pkgs[("unsloth", "pip")]["url"] == UNSLOTH_WHL
    assert pkgs[("unsloth", "pip")]["hash"] == {"sha256": "f" * 64}
    assert pkgs[("trl", "pip")]["hash"] == {"sha256": "e" * 64}
    assert ("peft", "pip") not in pkgs
    assert "peft==0.14.0" in doc["metadata"]["custom_metadata"]["pip_requirements"]
    back = read_lock(out, "linux-64")
    assert {x.name for x in back.records} == {"libzlib", "python", "pytorch", "xformers"}


def test_environment_pins_every_package(cli: Cli, env: Path, tmp_path: Path) -> None:
    out = tmp_path / "environment.yml"
    r = cli("export", "-p", str(env), "-o", str(out))
    assert r.code == 0, r.err
    parsed = spec.read(out)
    assert parsed.name == "unsloth"
    assert parsed.channels[:4] == [PT, "https://conda.anaconda.org/nvidia", XF, CF]
    assert parsed.conda_specs() == [
        "libzlib 1.3.1 hb9d3cd8_2",
        "python 3.11.9 hb806964_1_cpython",
        "pytorch 2.4.1 py3.11_cuda12.1_cudnn9.1.0_0",
        "xformers 0.0.28.post1 py311_cu12.1.0_pyt2.4.1",
    ]
    assert [d.spec for d in parsed.pip] == ["peft==0.14.0", "trl==0.12.2", "unsloth==2024.9.post4"]


def test_json_is_one_document(cli: Cli, env: Path) -> None:
    r = cli("export", "-p", str(env), "--format", "conda-lock", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["format"] == "conda-lock"
    assert doc["conda_packages"] == 4
    assert doc["pip_without_wheel_hash"] == ["peft==0.14.0"]
    assert doc["content"].startswith("# conda-lock v1")


# ----------------------------------------------------------------------------- redaction corpus

# (url base with credentials, the secret strings that must vanish, what must stay)
URL_FORMS = {
    "anaconda-token": (
        "https://conda.anaconda.org/t/tk-0123456789abcdef-AbCd/private",
        ["tk-0123456789abcdef-AbCd"],
        "https://conda.anaconda.org/private/linux-64/libzlib-1.3.1-hb9d3cd8_2.conda",
    ),
    "token-with-port": (
        "https://repo.example.com:8443/t/abc.DEF-123_x/conda-mirror",
        ["abc.DEF-123_x"],
        "https://repo.example.com:8443/conda-mirror/linux-64/",
    ),
    "user-password": (
        "https://alice:s3cr3t-pw@repo.example.com/artifactory/api/conda/conda-remote",
        ["alice", "s3cr3t-pw"],
        "https://repo.example.com/artifactory/api/conda/conda-remote/linux-64/",
    ),
    "user-only": (
        "https://deploy-bot@repo.example.com/conda",
        ["deploy-bot"],
        "https://repo.example.com/conda/linux-64/",
    ),
    "percent-encoded-password": (
        "https://bob:p%40ss%3Aw0rd@mirror.example.org/channels/internal",
        ["bob", "p%40ss%3Aw0rd", "w0rd"],
        "https://mirror.example.org/channels/internal/linux-64/",
    ),
    "oauth-token-as-user": (
        "http://ghp_0123456789abcdefABCDEF:x-oauth-basic@conda.internal/main",
        ["ghp_0123456789abcdefABCDEF", "x-oauth-basic"],
        "http://conda.internal/main/linux-64/",
    ),
    "token-and-password": (
        "https://carol:hunter2@conda.example.net/t/tok-987/team",
        ["carol", "hunter2", "tok-987"],
        "https://conda.example.net/team/linux-64/",
    ),
}


@pytest.mark.parametrize("fmt", ["explicit", "conda-lock", "environment"])
@pytest.mark.parametrize(
    ("base", "secrets", "kept"), list(URL_FORMS.values()), ids=list(URL_FORMS)
)
def test_credentials_removed_in_every_format(
    cli: Cli, tmp_path: Path, fmt: str, base: str, secrets: list[str], kept: str
) -> None:
    prefix = make_env(tmp_path, zlib_url_base=base)
    marker = prefix / "conda-meta" / "conda-unsloth"
    doc = json.loads(marker.read_text())
    doc["channels"].append(base)
    doc["pip"][0]["url"] = UNSLOTH_WHL.replace("https://", "https://pypi-user:pypi-pw@")
    marker.write_text(json.dumps(doc))
    r = cli("export", "-p", str(prefix), "--format", fmt)
    assert r.code == 0, r.err
    for secret in [*secrets, "pypi-user", "pypi-pw"]:
        assert secret not in r.out
    assert not has_credentials(r.out)
    channel_kept = kept.split("/linux-64/")[0]
    assert channel_kept in r.out
    if fmt != "environment":
        assert kept in r.out


# ----------------------------------------------------------------------------- bad input


def test_refuses_to_replace_a_foreign_file(cli: Cli, env: Path, tmp_path: Path) -> None:
    out = tmp_path / "explicit.txt"
    out.write_text("my own notes\n")
    r = cli("export", "-p", str(env), "-o", str(out))
    assert r.code == 2
    assert "exists and was not written by conda-unsloth" in r.err
    assert out.read_text() == "my own notes\n"
    assert cli("export", "-p", str(env), "-o", str(out), "--force").code == 0
    assert "@EXPLICIT" in out.read_text()


def _corrupt(prefix: Path) -> None:
    (prefix / "conda-meta" / "python-3.11.9-hb806964_1_cpython.json").write_text("{trunc")


def _no_url(prefix: Path) -> None:
    p = prefix / "conda-meta" / "pytorch-2.4.1-py3.11_cuda12.1_cudnn9.1.0_0.json"
    data = json.loads(p.read_text())
    del data["url"]
    p.write_text(json.dumps(data))


BAD: dict[str, tuple[list[str], Callable[[Path], None] | None, str]] = {
    "unknown-format": (["--format", "pixi"], None, "invalid choice: 'pixi'"),
    "missing-dir": (["-o", "{tmp}/no/such/explicit.txt"], None, "does not exist"),
    "output-is-dir": (["-o", "{tmp}"], None, "is a directory"),
    "corrupt-record": ([], _corrupt, "is corrupt (invalid JSON"),
    "record-without-url": ([], _no_url, "no download URL recorded for pytorch-2.4.1"),
}


@pytest.mark.parametrize(("extra", "damage", "message"), list(BAD.values()), ids=list(BAD))
def test_bad_input_exit_2_nothing_written(
    cli: Cli,
    env: Path,
    tmp_path: Path,
    extra: list[str],
    damage: Callable[[Path], None] | None,
    message: str,
) -> None:
    if damage:
        damage(env)
    args = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    if "-o" not in args:
        args += ["-o", str(tmp_path / "out.txt")]
    before = tree(tmp_path)
    r = cli("export", "-p", str(env), *args)
    assert r.code == 2
    assert message in r.err
    assert "Traceback" not in r.err
    assert tree(tmp_path) == before


def test_not_an_env_exit_2(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    r = cli("export", "-p", str(tmp_path / "plain"))
    assert r.code == 2
    assert "is not a conda environment" in r.err

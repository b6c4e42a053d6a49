"""The pip stage's guarantees, each run with uv and with pip (the env's own): conda's
distributions pinned and never replaced, the exact closure installed ``--no-deps`` with hashes,
the marker's entries (name, version, url, sha256), the same refusal messages, our dependency
check saying what ``pip check`` says, bytecode for what was installed, and the host's pip/uv
configuration never changing the result.

Every test runs on a copy of one env that conda (py-rattler) built from the demo channel
(``tests/envbuild.py``: this machine's CPython, pip, stand-ins for the GPU stack) with none of
the pip companions yet. The environment's PIP_*/UV_* variables are removed first: this
machine sets PIP_FIND_LINKS, and the tests must not depend on that.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conda_unsloth import install, inventory, pipstage
from conda_unsloth.errors import InstallError, UsageError
from conda_unsloth.install import PipOptions
from conda_unsloth.solvers.base import PipPackage
from tests import envbuild

INSTALLERS = ["uv", "pip"]
REQS = [
    "unsloth==2024.12.12",
    "unsloth_zoo==2024.12.7",
    "transformers==4.46.3",
    "trl==0.12.2",
    "peft==0.14.0",
    "accelerate==1.2.1",
    "bitsandbytes==0.45.0",
]
CLOSURE = {norm for norm in (pipstage.norm(r.split("==")[0]) for r in REQS)} | {"tqdm-standin"}


def _has_uv() -> bool:
    return any(
        (v := pipstage.uv_version(exe)) is not None and v >= pipstage.MIN_UV
        for exe, _ in pipstage.uv_candidates(None)
    )


needs_uv = pytest.mark.skipif(not _has_uv(), reason="uv >= 0.13 is not installed ([test] extra)")


def installer_param(kind: str) -> object:
    return pytest.param(kind, marks=needs_uv) if kind == "uv" else kind


BOTH = [installer_param(k) for k in INSTALLERS]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for k in list(os.environ):
        if k.startswith(("PIP_", "UV_")):
            monkeypatch.delenv(k)
    monkeypatch.setenv("CONDA_UNSLOTH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))  # no user pip.conf / uv.toml


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return envbuild.build_demo(tmp_path_factory.mktemp("pipdemo"))


@pytest.fixture(scope="session")
def base_env(demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo env as conda built it: python, pip, torch/triton/xformers stand-ins."""
    from conda_unsloth import knowledge, pipeline
    from conda_unsloth.host import Host
    from conda_unsloth.select import Request
    from conda_unsloth.solvers.rattler import RattlerSolver

    root = tmp_path_factory.mktemp("pipbase")
    kb = knowledge.load()
    plan = pipeline.plan_request(Request(cuda="12.1"), Host(platform="linux-64"), kb, None)
    sol = pipeline.solve(
        plan,
        RattlerSolver(cache=root / "rattler"),
        kb,
        offline=True,
        channels=[(demo / "channel").as_uri()],
    )
    prefix = root / "env"
    old = os.environ.get("CONDA_UNSLOTH_CACHE")
    os.environ["CONDA_UNSLOTH_CACHE"] = str(root / "cache")
    try:
        install.install_with_rattler(list(sol.solved.records), prefix)
    finally:
        if old is None:
            del os.environ["CONDA_UNSLOTH_CACHE"]
        else:
            os.environ["CONDA_UNSLOTH_CACHE"] = old
    return prefix


@pytest.fixture
def env(base_env: Path, tmp_path: Path) -> Path:
    prefix = tmp_path / "env"
    shutil.copytree(base_env, prefix, symlinks=True)
    return prefix


CONSTRAINTS = ["torch==2.5.1", "xformers==0.0.28.post3", "triton==3.1.0"]


def stage(
    prefix: Path,
    installer: str,
    wheels: Path | None,
    reqs: list[str] | None = None,
    locked: list[PipPackage] | None = None,
    offline: bool = True,
    index_url: str | None = None,
) -> list[PipPackage]:
    opts = PipOptions(
        find_links=(str(wheels),) if wheels else (),
        index_url=index_url,
        offline=offline,
        installer=installer,
    )
    out = install.pip_stage(
        prefix,
        REQS if reqs is None else reqs,
        CONSTRAINTS,
        opts,
        locked=locked,
        require_hashes=locked is not None,
    )
    install.post_pip_checks(prefix)
    return out


def site(prefix: Path) -> Path:
    return next((prefix / "lib").glob("python3*/site-packages"))


def snapshot(prefix: Path) -> dict[str, bytes]:
    """Every file of site-packages but bytecode (a failed stage may have run python there)."""
    root = site(prefix)
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def dist_folders(prefix: Path) -> list[str]:
    return sorted(p.name for p in site(prefix).iterdir() if p.name.endswith(".dist-info"))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- guarantees


@pytest.mark.parametrize("installer", BOTH)
def test_installs_exactly_the_closure_with_hashes(env: Path, demo: Path, installer: str) -> None:
    before = inventory.conda_dists(env)
    out = stage(env, installer, demo / "wheels")
    assert {pipstage.norm(p.name) for p in out} == CLOSURE
    for p in out:  # the marker's entries: name, version, url and the wheel file's sha256
        assert p.url is not None and p.url.startswith("file://"), p
        wheel = Path(p.url[len("file://") :])
        assert wheel.parent == demo / "wheels"
        assert p.sha256 == sha256(wheel)
        assert f"{p.name.replace('-', '_')}-{p.version}-" in wheel.name
    assert inventory.conda_dists(env) == before  # conda's torch, triton, xformers, pip untouched
    assert inventory.torch_dists(env) == ["torch-2.5.1.dist-info (conda)"]
    new = [d for d in dist_folders(env) if pipstage.norm(d.split("-")[0]) in CLOSURE]
    assert len(new) == len(CLOSURE)
    for d in new:
        assert (site(env) / d / "INSTALLER").read_text().strip() == installer


@pytest.mark.parametrize("installer", BOTH)
def test_the_marker_names_the_wheel_that_was_installed_among_several(
    env: Path, demo: Path, tmp_path: Path, installer: str
) -> None:
    """Two files of tqdm-standin 1.0 (py3 and a py2-only build): the entry is the py3 wheel,
    the one the installer took (uv: not read off the folder, asked of uv)."""
    wheels = tmp_path / "wheels"
    shutil.copytree(demo / "wheels", wheels)
    py3 = wheels / "tqdm_standin-1.0-py3-none-any.whl"
    py2 = wheels / "tqdm_standin-1.0-py2-none-any.whl"
    envbuild.wheel(tmp_path, "tqdm-standin", "1.0", ["nothing-on-py2"])
    (tmp_path / "tqdm_standin-1.0-py3-none-any.whl").rename(py2)
    assert sha256(py2) != sha256(py3)
    out = stage(env, installer, wheels)
    entry = next(p for p in out if pipstage.norm(p.name) == "tqdm-standin")
    assert (entry.url, entry.sha256) == (py3.as_uri(), sha256(py3))


@pytest.mark.parametrize("installer", BOTH)
def test_compiles_what_it_installed_and_nothing_of_condas(
    env: Path, demo: Path, installer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PYTHONDONTWRITEBYTECODE=1 in the caller's environment is not passed on: what the stage
    installed is byte-compiled; conda's packages are left as conda made them."""
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    stage(env, installer, demo / "wheels")
    tag = sys.implementation.cache_tag
    for mod in ("unsloth", "transformers", "tqdm_standin"):
        assert (site(env) / mod / "__pycache__" / f"__init__.{tag}.pyc").is_file(), mod
    for conda_mod in ("torch", "xformers", "triton"):
        assert not (site(env) / conda_mod / "__pycache__").exists(), conda_mod
    # and the bytecode is what the env's python takes: importing does not rewrite it
    pyc = site(env) / "unsloth" / "__pycache__" / f"__init__.{tag}.pyc"
    stamp = pyc.stat().st_mtime_ns
    run = subprocess.run(
        [str(env / "bin" / "python"), "-c", "import unsloth"],
        capture_output=True,
        text=True,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
    )
    assert run.returncode == 0, run.stderr
    assert pyc.stat().st_mtime_ns == stamp


@pytest.mark.parametrize("installer", BOTH)
def test_refuses_to_replace_condas_torch(
    env: Path, demo: Path, tmp_path: Path, installer: str
) -> None:
    """`torch==2.5.1` admits `2.5.1+cu121`: the constraint alone would let the installer
    replace conda's torch. Refused with the same message by both, nothing installed."""
    wheels = tmp_path / "evil"
    wheels.mkdir()
    envbuild.wheel(wheels, "evil", "1.0", ["torch==2.5.1+cu121"])
    envbuild.wheel(wheels, "torch", "2.5.1+cu121", [])
    before = snapshot(env)
    with pytest.raises(InstallError) as exc:
        stage(env, installer, wheels, reqs=["evil==1.0"])
    assert exc.value.message == (
        "pip would replace conda's torch 2.5.1 with torch 2.5.1+cu121; refusing (F12)"
    )
    assert snapshot(env) == before
    assert inventory.torch_dists(env) == ["torch-2.5.1.dist-info (conda)"]


@pytest.mark.parametrize("installer", BOTH)
def test_a_companion_needing_another_torch_is_unresolvable(
    env: Path, tmp_path: Path, installer: str
) -> None:
    wheels = tmp_path / "newer"
    wheels.mkdir()
    envbuild.wheel(wheels, "needs-new-torch", "1.0", ["torch>=2.6"])
    envbuild.wheel(wheels, "torch", "2.6.0", [])
    before = snapshot(env)
    with pytest.raises(InstallError) as exc:
        stage(env, installer, wheels, reqs=["needs-new-torch==1.0"])
    msg = exc.value.message
    assert msg.startswith("pip could not resolve the companions against conda's packages: ")
    assert "torch" in msg
    assert snapshot(env) == before


@pytest.mark.parametrize("installer", BOTH)
def test_a_tampered_wheel_is_refused_against_the_lock(
    env: Path, demo: Path, tmp_path: Path, installer: str
) -> None:
    wheels = tmp_path / "wheels"
    shutil.copytree(demo / "wheels", wheels)
    locked = []
    for w in sorted(wheels.glob("*.whl")):
        name, version = w.name.split("-")[:2]
        locked.append(PipPackage(name, version, None, sha256(w)))
    peft = wheels / "peft-0.14.0-py3-none-any.whl"
    peft.unlink()
    envbuild.wheel(wheels, "peft", "0.14.0", ["tqdm-standin", "os-command-injection"])
    before = snapshot(env)
    with pytest.raises(InstallError) as exc:
        stage(env, installer, wheels, reqs=[], locked=locked)
    assert exc.value.message.startswith("pip install failed: ")
    assert "hash" in exc.value.message.lower()
    assert not any(d.startswith("peft") for d in dist_folders(env))
    assert {k for k in snapshot(env) if k not in before} <= {
        k for k in snapshot(env) if ".dist-info" in k or "/" in k
    }


@pytest.mark.parametrize("installer", BOTH)
def test_the_lock_installs_its_wheels_as_they_are(env: Path, demo: Path, installer: str) -> None:
    locked = [
        PipPackage(w.name.split("-")[0], w.name.split("-")[1], w.as_uri(), sha256(w))
        for w in sorted((demo / "wheels").glob("*.whl"))
    ]
    out = stage(env, installer, demo / "wheels", reqs=[], locked=locked)
    assert out == locked
    assert {pipstage.norm(p.name) for p in out} == CLOSURE


@pytest.mark.parametrize("installer", BOTH)
def test_missing_wheel_offline_names_the_folder_flag(
    env: Path, demo: Path, tmp_path: Path, installer: str
) -> None:
    wheels = tmp_path / "wheels"
    shutil.copytree(demo / "wheels", wheels)
    (wheels / "trl-0.12.2-py3-none-any.whl").unlink()
    with pytest.raises(InstallError) as exc:
        stage(env, installer, wheels)
    assert exc.value.message.startswith("pip could not resolve the companions")
    assert "trl" in exc.value.message
    assert any("--pip-find-links" in h and str(wheels) in h for h in exc.value.hints)


@pytest.mark.parametrize("installer", BOTH)
def test_requirements_that_are_options_are_refused(env: Path, demo: Path, installer: str) -> None:
    before = snapshot(env)
    for bad in ("--log=/tmp/x", "-r /etc/passwd", "unsloth\n--index-url=http://evil"):
        with pytest.raises(InstallError, match="is not a requirement"):
            stage(env, installer, demo / "wheels", reqs=[bad])
    assert snapshot(env) == before


# ----------------------------------------------------------------------------- configuration


LEAK = "tqdm-standin"


@pytest.fixture
def leak_wheels(tmp_path: Path) -> Path:
    """A folder with tqdm-standin 2.0: a configuration that reaches the installer would make it
    install this instead of the demo's 1.0."""
    d = tmp_path / "leak"
    d.mkdir()
    envbuild.wheel(d, LEAK, "2.0", [])
    return d


def version_of(out: list[PipPackage], name: str) -> str:
    return next(p.version for p in out if pipstage.norm(p.name) == name)


@pytest.mark.parametrize("installer", BOTH)
def test_host_config_files_do_not_change_the_result(
    env: Path,
    demo: Path,
    tmp_path: Path,
    leak_wheels: Path,
    installer: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    conf = f"[global]\nfind-links = {leak_wheels}\nno-deps = true\n"
    (tmp_path / "xdg" / "pip").mkdir(parents=True)
    (tmp_path / "xdg" / "pip" / "pip.conf").write_text(conf)
    (tmp_path / "pip.conf").write_text(conf)
    monkeypatch.setenv("PIP_CONFIG_FILE", str(tmp_path / "pip.conf"))
    (tmp_path / "xdg" / "uv").mkdir(parents=True)
    (tmp_path / "xdg" / "uv" / "uv.toml").write_text(f'find-links = ["{leak_wheels}"]\n')
    monkeypatch.setenv("UV_CONFIG_FILE", str(tmp_path / "xdg" / "uv" / "uv.toml"))
    monkeypatch.chdir(tmp_path)  # a uv.toml / pyproject.toml in the working directory too
    (tmp_path / "uv.toml").write_text(f'find-links = ["{leak_wheels}"]\n')
    out = stage(env, installer, demo / "wheels")
    assert version_of(out, LEAK) == "1.0"
    assert {pipstage.norm(p.name) for p in out} == CLOSURE  # no-deps=true did not apply either


@pytest.mark.parametrize("installer", BOTH)
def test_result_changing_variables_do_not_apply(
    env: Path, demo: Path, leak_wheels: Path, installer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flags name the wheel sources: the environment's sources do not add to them, and
    variables such as UV_NO_VERIFY_HASHES or PIP_NO_DEPS never reach the installer."""
    for k, v in {
        "PIP_FIND_LINKS": str(leak_wheels),
        "UV_FIND_LINKS": str(leak_wheels),
        "PIP_NO_DEPS": "1",
        "UV_NO_VERIFY_HASHES": "1",
        "UV_PRERELEASE": "allow",
        "PIP_PRE": "1",
        "PYTHONPATH": str(leak_wheels),
    }.items():
        monkeypatch.setenv(k, v)
    out = stage(env, installer, demo / "wheels")
    assert version_of(out, LEAK) == "1.0"
    assert {pipstage.norm(p.name) for p in out} == CLOSURE


@pytest.mark.parametrize("installer", BOTH)
def test_pip_find_links_from_the_environment_is_honoured(
    env: Path, demo: Path, installer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    var = "PIP_FIND_LINKS" if installer == "pip" else "UV_FIND_LINKS"
    monkeypatch.setenv(var, str(demo / "wheels"))
    out = stage(env, installer, None)  # offline, no --pip-find-links
    assert {pipstage.norm(p.name) for p in out} == CLOSURE


class _Index(http.server.SimpleHTTPRequestHandler):
    """A PEP 503 simple index over a wheel folder, counting requests (a stand-in for a
    cluster's PyPI mirror)."""

    hits: list[str]

    def log_message(self, format: str, *args: object) -> None:
        self.hits.append(self.path)


@pytest.fixture
def index(demo: Path, tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    root = tmp_path / "index"
    for w in sorted((demo / "wheels").glob("*.whl")):
        name = pipstage.norm(w.name.split("-")[0])
        d = root / "simple" / name
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(w, root / w.name)
        (d / "index.html").write_text(
            f'<html><body><a href="../../{w.name}#sha256={sha256(w)}">{w.name}</a></body></html>'
        )
    hits: list[str] = []
    handler = type("H", (_Index,), {"hits": hits})

    def make(*a: Any) -> http.server.SimpleHTTPRequestHandler:
        made: http.server.SimpleHTTPRequestHandler = handler(*a, directory=str(root))
        return made

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://mirror-user:s3cret-token@127.0.0.1:{server.server_address[1]}/simple", hits
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("installer", BOTH)
def test_pip_index_url_is_honoured_and_its_credentials_never_shown(
    env: Path,
    installer: str,
    index: tuple[str, list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, hits = index
    monkeypatch.setenv("PIP_INDEX_URL", url)
    said: list[str] = []
    opts = PipOptions(installer=installer)
    out = install.pip_stage(env, REQS, CONSTRAINTS, opts, say=said.append)
    assert {pipstage.norm(p.name) for p in out} == CLOSURE
    assert any("/simple/unsloth" in h for h in hits)
    shown = json.dumps([p.__dict__ for p in out]) + "\n".join(said)
    assert "s3cret-token" not in shown and "mirror-user" not in shown
    assert all(p.url and p.url.startswith("http://127.0.0.1:") for p in out)
    assert any("PIP_INDEX_URL" in line for line in said)


@pytest.mark.parametrize("installer", BOTH)
def test_an_unreachable_index_says_so_and_names_the_flags(
    env: Path, installer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    monkeypatch.setenv("PIP_INDEX_URL", f"http://u:pw-secret@127.0.0.1:{port}/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    with pytest.raises(InstallError) as exc:
        install.pip_stage(env, REQS, CONSTRAINTS, PipOptions(installer=installer))
    text = str(exc.value)
    assert "pw-secret" not in text
    assert "no wheel index was reachable" in text
    assert "--pip-index-url" in text and "--pip-find-links" in text


# ----------------------------------------------------------------------------- sources


def test_sources_map_the_environment_to_each_installer(tmp_path: Path) -> None:
    cert = tmp_path / "ca.pem"
    cert.write_text("x")
    env = {
        "PIP_INDEX_URL": "https://user:pw@mirror.example/simple",
        "PIP_EXTRA_INDEX_URL": "https://extra.example/simple https://two.example/simple",
        "PIP_FIND_LINKS": str(tmp_path),
        "PIP_CERT": str(cert),
        "PIP_CLIENT_CERT": str(cert),
        "PIP_TRUSTED_HOST": "mirror.example",
        "PIP_PROXY": "http://proxy:3128",
        "PIP_DEFAULT_TIMEOUT": "60",
        "PIP_RETRIES": "2",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_DEPS": "1",
        "UV_PRERELEASE": "allow",
    }
    src = pipstage.sources((), None, False, env)
    assert src.pip_args() == [
        "--index-url", "https://user:pw@mirror.example/simple",
        "--extra-index-url", "https://extra.example/simple",
        "--extra-index-url", "https://two.example/simple",
        "--find-links", str(tmp_path),
        "--cert", str(cert),
        "--client-cert", str(cert),
        "--trusted-host", "mirror.example",
        "--proxy", "http://proxy:3128",
        "--timeout", "60",
        "--retries", "2",
    ]  # fmt: skip
    assert src.uv_args() == [
        "--default-index", "https://user:pw@mirror.example/simple",
        "--index", "https://extra.example/simple",
        "--index", "https://two.example/simple",
        "--find-links", str(tmp_path),
        "--allow-insecure-host", "mirror.example",
    ]  # fmt: skip
    assert src.uv_env() == {
        "SSL_CERT_FILE": str(cert),
        "SSL_CLIENT_CERT": str(cert),
        "HTTP_PROXY": "http://proxy:3128",
        "HTTPS_PROXY": "http://proxy:3128",
        "UV_HTTP_TIMEOUT": "60",
        "UV_HTTP_RETRIES": "2",
    }
    assert src.ignored == ("PIP_NO_DEPS", "UV_PRERELEASE")
    assert "pw" not in src.describe() and "PIP_INDEX_URL" in src.describe()


def test_flags_replace_the_environments_sources(tmp_path: Path) -> None:
    env = {"PIP_INDEX_URL": "https://mirror.example/simple", "UV_FIND_LINKS": str(tmp_path)}
    src = pipstage.sources((str(tmp_path),), None, False, env)
    assert src.pip_args() == ["--no-index", "--find-links", str(tmp_path)]
    src = pipstage.sources((), "https://other.example/simple", False, env)
    assert src.uv_args() == ["--default-index", "https://other.example/simple"]


def test_offline_drops_indexes_and_refuses_url_find_links(tmp_path: Path) -> None:
    env = {
        "PIP_INDEX_URL": "https://mirror.example/simple",
        "PIP_FIND_LINKS": str(tmp_path),
        "PIP_CERT": "/nonexistent/ca.pem",  # offline, no connection: not used, not refused
        "PIP_PROXY": "http://proxy:3128",
    }
    src = pipstage.sources((), None, True, env)
    assert src.uv_args() == ["--no-index", "--find-links", str(tmp_path), "--offline"]
    assert src.pip_args() == ["--no-index", "--find-links", str(tmp_path)]
    assert src.uv_env() == {}
    with pytest.raises(
        UsageError, match=r"--offline, but PIP_FIND_LINKS names a URL \(https://h/w\)"
    ):
        pipstage.sources((), None, True, {"PIP_FIND_LINKS": "https://u:p@h/w"})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"PIP_INDEX_URL": "https://a/simple", "UV_INDEX_URL": "https://b/simple"},
            "PIP_INDEX_URL and UV_INDEX_URL name different indexes",
        ),
        ({"PIP_FIND_LINKS": "/nonexistent/wheels"}, "PIP_FIND_LINKS /nonexistent/wheels: no such"),
        ({"PIP_CERT": "/nonexistent/ca.pem"}, "PIP_CERT=/nonexistent/ca.pem: no such file"),
        ({"PIP_DEFAULT_TIMEOUT": "soon"}, "PIP_DEFAULT_TIMEOUT 'soon' is not a number of seconds"),
        ({"UV_HTTP_RETRIES": "many"}, "UV_HTTP_RETRIES 'many' is not a number of retries"),
    ],
)
def test_settings_that_cannot_be_honoured_are_refused_by_name(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        pipstage.sources((), None, False, env)


def test_offline_without_a_wheel_folder_fails_before_anything_is_built() -> None:
    with pytest.raises(UsageError) as exc:
        install.check_pip_stage(PipOptions(offline=True), ["python", "pip"])
    assert "--offline and no wheel source" in exc.value.message
    assert "--pip-find-links DIR" in exc.value.message


def test_no_installer_says_which_is_missing(
    env: Path, demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No uv anywhere (an empty PATH, no uv Python package) and an env without pip."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setitem(sys.modules, "uv", None)  # `import uv` fails, as without the package
    opts = PipOptions(find_links=(str(demo / "wheels"),), offline=True)
    with pytest.raises(InstallError) as exc:
        install.check_pip_stage(opts, ["python", "pytorch"])
    assert exc.value.message.startswith("no installer for the pip stage: the env has no pip")
    assert any("conda-unsloth[uv]" in h for h in exc.value.hints)
    with pytest.raises(UsageError, match="--pip-installer uv: no uv in the env, on PATH"):
        install.check_pip_stage(
            PipOptions(installer="uv", offline=True, find_links=opts.find_links), ["python", "pip"]
        )
    # with pip in the env, auto takes it
    assert pipstage.choose_installer(env, "auto").kind == "pip"
    shutil.rmtree(site(env) / "pip")
    with pytest.raises(InstallError, match="--pip-installer pip, but the env has no pip"):
        pipstage.choose_installer(env, "pip")


# ----------------------------------------------------------------------------- the check


def _dist(site_dir: Path, name: str, version: str, requires: list[str], egg: bool = False) -> None:
    if egg:
        d = site_dir / f"{name}-{version}-py3.11.egg-info"
        d.mkdir()
        (d / "PKG-INFO").write_text(f"Metadata-Version: 1.1\nName: {name}\nVersion: {version}\n")
        (d / "requires.txt").write_text("\n".join(requires) + "\n")
        return
    d = site_dir / f"{name.replace('-', '_')}-{version}.dist-info"
    d.mkdir()
    (d / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        + "".join(f"Requires-Dist: {r}\n" for r in requires)
        + "\nlong description\nRequires-Dist: not-a-header\n"
    )
    (d / "RECORD").write_text("")


CHECK_CORPUS = [
    ("a", "1.0", ["b>=2", "c", 'd; python_version < "3"', 'e; extra == "docs"', "f[x]>=1"]),
    ("b", "1.5", ['c>=1.0rc1; sys_platform == "linux"', "Local_Version==1.0", "torch<2"]),
    ("c", "1.0rc2", []),
    ("f", "0.9", ['g; python_version >= "3.8" and extra == "x"']),
    ("local-version", "1.0+cu121", ["sympy (>=1.13)"]),
    ("sympy", "1.12", []),
    ("h", "1.0", ["i==1.*", 'j; extra == "a" or python_version >= "3"']),
    ("i", "1.4", []),
    ("k", "3.0", ["a>=1", "[bad requirement"]),
]


@pytest.mark.parametrize("egg", [False, True], ids=["dist-info", "egg-info"])
def test_the_dependency_check_says_what_pip_check_says(
    env: Path, egg: bool, tmp_path: Path
) -> None:
    """The same corpus, checked by our reader and by the env's real `pip check`."""
    sp = site(env)
    for name, version, requires in CHECK_CORPUS:
        _dist(
            sp,
            name,
            version,
            [r for r in requires if not (egg and "[bad" in r)],
            egg=egg and name == "h",
        )
    ours = sorted(pipstage.dependency_problems(env))
    proc = subprocess.run(
        [str(env / "bin" / "python"), "-m", "pip", "check"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PIP_CONFIG_FILE": os.devnull, "PYTHONNOUSERSITE": "1"},
    )
    theirs = sorted(
        line.strip()
        for line in proc.stdout.splitlines()
        if line.strip() and "is not supported on this platform" not in line
    )
    assert proc.returncode == 1
    assert ours == theirs
    assert len(ours) >= 5  # b>=2, d is skipped, c prerelease ok, sympy too old, j missing ...


def test_the_check_fails_the_stage_with_the_first_problem(env: Path) -> None:
    _dist(site(env), "needs-x", "1.0", ["x-missing>=1"])
    with pytest.raises(InstallError) as exc:
        install.post_pip_checks(env)
    assert exc.value.message == (
        "pip check failed: needs-x 1.0 requires x-missing, which is not installed."
    )


def test_a_distribution_installed_twice_is_refused(env: Path) -> None:
    d = site(env) / "torch-2.5.1+cu121.dist-info"
    d.mkdir()
    (d / "METADATA").write_text("Metadata-Version: 2.1\nName: torch\nVersion: 2.5.1+cu121\n")
    (d / "INSTALLER").write_text("uv\n")
    with pytest.raises(InstallError) as exc:
        install.post_pip_checks(env)
    assert exc.value.message.startswith("torch is installed more than once after the pip stage: ")
    assert "2.5.1 (conda)" in exc.value.message and "2.5.1+cu121 (uv)" in exc.value.message


# ----------------------------------------------------------------------------- create


@pytest.mark.parametrize("installer", BOTH)
def test_create_uses_the_chosen_installer_and_reports_its_own_memory(
    demo: Path, tmp_path: Path, installer: str
) -> None:
    """`create --pip-installer` end to end; `--json` reports the create's own peak memory, not
    that of the process that started it (this test holds 200 MB more while it runs)."""
    ballast = bytearray(200 << 20)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1  # resident, not just reserved
    prefix = tmp_path / "env"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "conda_unsloth",
            *envbuild.create_args(demo, prefix, "--json", "--pip-installer", installer),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert len(ballast) == 200 << 20
    assert doc["status"] == "ok" and len(doc["pip_packages"]) == len(CLOSURE)
    assert 10 < doc["peak_rss_mb"]["total"] < 150, doc["peak_rss_mb"]
    marker = json.loads((prefix / "conda-meta" / "conda-unsloth").read_text())
    assert {pipstage.norm(p["name"]) for p in marker["pip"]} == CLOSURE
    assert all(p["sha256"] and p["url"].startswith("file://") for p in marker["pip"])
    for d in dist_folders(prefix):
        if pipstage.norm(d.split("-")[0]) in CLOSURE:
            assert (site(prefix) / d / "INSTALLER").read_text().strip() == installer


@pytest.mark.parametrize(
    ("requirement", "url"),
    [
        ("torch==2.5.1", None),
        ("unsloth[colab-new]>=2024.12 ; python_version >= '3.10'", None),
        ("foo ; extra == 'a@b'", None),  # an "@" in a marker is no URL
        ("tqdm @ https://example.org/w/tqdm-1.0-py3-none-any.whl", "https://example.org/w/tqdm-1.0-py3-none-any.whl"),
        ("tqdm@https://example.org/t.whl", "https://example.org/t.whl"),
        ("pkg [x] @ file:///tmp/p.whl ; python_version > '3'", "file:///tmp/p.whl"),
        ("https://example.org/x-1.0-py3-none-any.whl", "https://example.org/x-1.0-py3-none-any.whl"),
        ("git+https://example.org/r.git@v1#egg=r", "git+https://example.org/r.git@v1#egg=r"),
    ],
)  # fmt: skip
def test_direct_url_finds_the_url_a_requirement_installs_from(
    requirement: str, url: str | None
) -> None:
    assert pipstage.requirements.direct_url(requirement) == url


def test_plain_pins_are_checked_offline_without_importing_packaging() -> None:
    code = (
        "import sys\n"
        "from conda_unsloth.pipstage.requirements import refuse_remote_urls\n"
        "refuse_remote_urls(['torch==2.5.1', 'unsloth_zoo>=2024.12.7', 'trl!=0.9.0,>=0.7.9'])\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'packaging'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"

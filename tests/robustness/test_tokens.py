"""Issue 16 #7: channel credentials are used, and never shown or written.

A local HTTP channel server answers only requests that carry the token (``/t/<token>/``, basic
auth from ``user:<token>@``); a create through it proves the token is *used*. Then every output
stream of every verb (create, solve, export, doctor, verify, their ``--json``, dry runs, errors)
and every file written under the test's folder is searched for the token. Each token holds the
ASCII core ``Zq7Xv``, which survives percent-encoding and JSON escaping, so a leak in any
spelling is found. The one exception, documented: py-rattler's own repodata cache
(``cache/rattler/*.info.json``) keeps the URL it fetched, as conda's cache does."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from urllib.parse import quote

import pytest

from tests import prefixes as P
from tests.robustness.helpers import (
    ChannelServer,
    Run,
    assert_refused,
    demo_create,
    run_cli,
    snapshot,
)

CORE = "Zq7Xv"
TOKENS = {
    "ascii": f"tk-{CORE}-0123456789abcdef",
    "unicode": f"tök€n-{CORE}-ünï",
    "encoded": f"p@ss:{CORE}/r%d#?&=",  # every character a URL must percent-encode
}
SLOW = 120.0  # creates that download over HTTP on a loaded 2-core CI machine


def q(token: str) -> str:
    return quote(token, safe="")


def leaks(root: Path, *runs: Run) -> list[str]:
    """Where the token's core appears: the runs' stdout/stderr, and every file under ``root``
    except py-rattler's repodata cache records."""
    found = [
        f"{r.code} {name}: ...{text[max(0, text.find(CORE) - 80) : text.find(CORE) + 40]}..."
        for r in runs
        for name, text in (("stdout", r.out), ("stderr", r.err))
        if CORE in text
    ]
    for path in root.rglob("*"):
        if path.is_symlink() or not path.is_file():
            continue
        if path.parent.name == "rattler" and path.name.endswith(".info.json"):
            continue  # rattler's cache keeps the URL it fetched (and is not ours to rewrite)
        if CORE.encode() in path.read_bytes():
            found.append(str(path.relative_to(root)))
    return found


def _ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


# ----------------------------------------------------------------------------- used, not shown

FORMS = {  # name -> (token, how the channel URL carries it, server host)
    "path-ascii": ("ascii", "path", "127.0.0.1"),
    "path-unicode": ("unicode", "path", "127.0.0.1"),
    "path-percent-encoded": ("encoded", "path", "127.0.0.1"),
    "basic-ascii": ("ascii", "basic", "127.0.0.1"),
    "basic-percent-encoded": ("encoded", "basic", "127.0.0.1"),
    "basic-ipv6-unicode": ("unicode", "basic", "::1"),
}


def channel_url(server: ChannelServer, token: str, how: str) -> str:
    if how == "path":
        return f"{server.base}/t/{q(token) if token == TOKENS['encoded'] else token}/channel"
    return f"http://user:{q(token)}@{server.netloc}/channel"


@pytest.mark.parametrize("form", list(FORMS))
def test_a_token_is_used_for_downloads_and_never_printed(
    demo: Path, tmp_path: Path, form: str
) -> None:
    name, how, host = FORMS[form]
    if host == "::1" and not _ipv6():
        pytest.skip("no IPv6 loopback on this host")
    token = TOKENS[name]
    work = tmp_path / "work"
    with ChannelServer(demo, token=token, host=host) as server:
        url = channel_url(server, token, how)
        create = run_cli(demo_create(url, demo, work / "env"), tmp_path, timeout=SLOW)
        assert create.code == 0, create.err
        downloads = [h for h in server.hits if h.path.endswith(".tar.bz2")]
        assert downloads and all(h.authorized and h.status == 200 for h in downloads)
        assert not [h for h in server.hits if not h.authorized]
        runs = [create]
        if form in ("path-ascii", "basic-percent-encoded"):  # every verb, once per way of carrying
            runs += every_verb(url, demo, work, tmp_path)
    assert leaks(tmp_path, *runs) == []


def every_verb(url: str, demo: Path, work: Path, tmp: Path) -> list[Run]:
    env = str(work / "env")
    out = work / "out"
    out.mkdir()
    argvs = [
        ["solve", "-c", url, "--cuda", "12.1", "--lock", str(out / "solved.txt")],
        ["solve", "-c", url, "--cuda", "12.1", "--json", "--dry-run", "--lock", str(out / "x")],
        [*demo_create(url, demo, work / "other"), "--dry-run"],
        [*demo_create(url, demo, work / "other"), "--dry-run", "--json"],
        ["export", "-p", env, "--format", "explicit"],
        ["export", "-p", env, "--format", "conda-lock", "-o", str(out / "env.conda-lock.yml")],
        ["export", "-p", env, "--format", "environment", "--json"],
        ["doctor", "-p", env],
        ["doctor", "-p", env, "--json"],
        ["verify", "-p", env, "--json"],
        ["verify", "-p", env, "--sbatch", str(out / "job.sh"), "--partition", "gpu"],
    ]
    runs = [run_cli(a, tmp, timeout=SLOW) for a in argvs]
    for argv, r in zip(argvs[:2] + argvs[4:7], runs[:2] + runs[4:7], strict=True):
        assert r.code == 0, (argv, r.err)
    return runs


# ----------------------------------------------------------------------------- not usable, not shown


REFUSED_FORMS = {
    # rattler joins the subdir to the channel URL and drops its query: the token never reaches
    # the server; the 401 is reported without it
    "query": lambda s, t: f"{s.base}/channel?token={q(t)}",
    "query-and-fragment": lambda s, t: f"{s.base}/channel?x=1&access_token={q(t)}#token={q(t)}",
    "upper-case-scheme": lambda s, t: f"HTTP://user:{q(t)}@{s.netloc}/t/{q(t)}/channel",
    "no-scheme": lambda s, t: f"user:{q(t)}@{s.netloc}/channel",
    "no-scheme-anaconda": lambda s, t: f"conda.anaconda.org/t/{t}/pytorch",
}


@pytest.mark.parametrize("form", list(REFUSED_FORMS))
@pytest.mark.parametrize("verb", ["solve", "create"])
def test_a_token_in_a_channel_that_fails_is_not_in_the_error(
    demo: Path, tmp_path: Path, form: str, verb: str
) -> None:
    token = TOKENS["ascii"]
    work = tmp_path / "work"
    work.mkdir()
    with ChannelServer(demo, token=token) as server:
        url = REFUSED_FORMS[form](server, token)
        argv = (
            ["solve", "-c", url, "--cuda", "12.1", "--json"]
            if verb == "solve"
            else demo_create(url, demo, work / "env")
        )
        r = run_cli(argv, tmp_path, timeout=SLOW)
    assert r.code != 0 and "Traceback" not in r.out + r.err
    if verb == "create":
        assert_refused(r, "", code=None, seconds=SLOW)
        assert snapshot(work) == {}
    else:
        assert json.loads(r.out)["exit_code"] == r.code
    assert leaks(tmp_path, r) == []


# ----------------------------------------------------------------------------- what was written


def test_records_and_a_marker_with_tokens_are_exported_without_them(tmp_path: Path) -> None:
    """An env whose records carry credentials in every form (as conda or an older
    conda-unsloth may have written them) and whose marker does too: nothing read back from it
    prints or writes the token."""
    prefix = P.write_prefix(tmp_path / "env", P.healthy())
    token = TOKENS["unicode"]
    forms = [
        f"HTTPS://user:{q(token)}@conda.example.org/t/{q(token)}/pytorch",
        f"https://conda.example.org/pytorch?token={q(token)}",
        f"https://user:{token}@[2001:db8::1]:8443/t/{token}/pytorch",
        f"Https://conda.example.org/t/{token}/pytorch?X-Amz-Signature={q(token)}",
    ]
    for i, path in enumerate(sorted((prefix / "conda-meta").glob("*.json"))):
        doc = json.loads(path.read_text())
        base = forms[i % len(forms)]
        channel, _, query = base.partition("?")
        doc["channel"] = base
        doc.setdefault("md5", "0" * 32)  # conda-lock exports need both digests
        doc.setdefault("sha256", "1" * 64)
        doc["url"] = f"{channel}/{doc['subdir']}/{doc['fn']}" + (f"?{query}" if query else "")
        path.write_text(json.dumps(doc))
    (prefix / "conda-meta" / "conda-unsloth").write_text(
        json.dumps(
            {
                "schema": 1,
                "tool": "conda-unsloth",
                "status": "ok",
                "request": {"channel": forms},
                "channels": forms,
                "pip": [
                    {
                        "name": "unsloth",
                        "version": "2024.9.post4",
                        "url": f"https://u:{q(token)}@pypi.example.org/unsloth.whl?token={q(token)}",
                        "sha256": "0" * 64,
                    }
                ],
                "failure": f"could not fetch {forms[0]}",
            }
        )
    )
    out = tmp_path / "out"
    out.mkdir()
    argvs = [
        ["export", "-p", str(prefix), "--format", "explicit"],
        ["export", "-p", str(prefix), "--format", "conda-lock"],
        ["export", "-p", str(prefix), "--format", "environment"],
        ["export", "-p", str(prefix), "--format", "explicit", "-o", str(out / "explicit.txt")],
        ["export", "-p", str(prefix), "--format", "conda-lock", "-o", str(out / "lock.yml")],
        ["export", "-p", str(prefix), "--format", "environment", "--json"],
        ["doctor", "-p", str(prefix)],
        ["doctor", "-p", str(prefix), "--json"],
        ["verify", "-p", str(prefix), "--json"],
    ]
    runs = [run_cli(a, tmp_path) for a in argvs]
    assert [r.code for r in runs[:6]] == [0] * 6, [r.err for r in runs[:6]]
    # the env itself is the user's: only what we wrote is searched
    assert leaks(out, *runs) == []


def test_the_plan_table_and_the_dry_run_pip_list_show_no_token(demo: Path, tmp_path: Path) -> None:
    token = TOKENS["encoded"]
    reqs = [
        f"tqdm-standin @ https://user:{q(token)}@pypi.example.org/t/{q(token)}/x.whl",
        f"unsloth @ HTTPS://files.example.org/unsloth.whl?token={q(token)}",
        f"trl @ git+https://{q(token)}@github.com/huggingface/trl.git@v0.12.2#egg=trl",
    ]
    env = tmp_path / "environment.yml"
    env.write_text(
        "name: x\nchannels:\n  - " + (demo / "channel").as_uri() + "\ndependencies:\n"
        "  - python=3.11\n  - pytorch=2.5.1=*cuda*\n  - pytorch-cuda=12.1\n  - pip\n  - pip:\n"
        + "".join(f"    - {r}\n" for r in reqs)
    )
    base = ["create", "-p", str(tmp_path / "work" / "env"), "-f", str(env), "--cuda", "12.1"]
    runs = [
        run_cli([*base, "--dry-run"], tmp_path, timeout=SLOW),
        run_cli([*base, "--dry-run", "--json"], tmp_path, timeout=SLOW),
        run_cli(["solve", "-f", str(env), "--cuda", "12.1", "--json"], tmp_path, timeout=SLOW),
    ]
    assert [r.code for r in runs] == [0, 0, 0], [r.err for r in runs]
    assert "pypi.example.org/x.whl" in runs[0].out  # the requirement is shown, its token not
    assert json.loads(runs[1].out)["pip"][1] == "unsloth @ HTTPS://files.example.org/unsloth.whl"
    assert leaks(tmp_path / "work", *runs) == []


def test_the_pip_stage_uses_an_index_token_and_never_shows_it(demo: Path, tmp_path: Path) -> None:
    token = TOKENS["ascii"]
    with ChannelServer(demo, token=token) as server:
        index = f"http://user:{token}@{server.netloc}/simple"
        r = run_cli(
            [
                *demo_create((demo / "channel").as_uri(), demo, tmp_path / "work" / "env"),
                "--pip-index-url", index, "--no-verify",
            ],
            tmp_path,
            timeout=SLOW,
        )  # fmt: skip
        assert any(h.path.startswith("/simple/") and h.authorized for h in server.hits)
    assert r.code == 0, r.err
    assert f"{server.base}/simple" in r.err  # the pip stage says where, without the token
    assert leaks(tmp_path, r) == []


# ----------------------------------------------------------------------------- errors quoting it


def _lock_with(line: str) -> str:
    return f"# platform: linux-64\n@EXPLICIT\n{line}\n"


T = TOKENS["ascii"]
ERRORS = {
    "channel-no-scheme": (["solve", "-c", f"user:{T}@mirror.example.org/chan"], "channel"),
    "channel-upper-case": (["solve", "-c", f"HTTPS://u:{T}@h.example.org/t/{T}/c"], "channel"),
    "find-links-url-offline": (
        [
            *["create", "-p", "env", "--offline", "-c", "DEMO", "--cuda", "12.1", "-y"],
            *["--pip-find-links", f"https://u:{T}@h.org/w"],
        ],
        "--pip-find-links names a URL",
    ),
    "lock-line-not-a-package": (
        ["create", "-p", "env", "--from-lock", "lock.txt", "-y"],
        "is not a package URL",
    ),
    "env-file-bad-spec-with-url": (
        ["create", "-p", "env", "-f", "environment.yml", "-y", "--offline"],
        "",
    ),
    # schemes a channel cannot have here: refused before any network, quoted without the token
    "channel-ftp": (["solve", "-c", f"ftp://u:{T}@127.0.0.1:21/chan"], "channel"),
    "channel-s3": (["solve", "-c", f"s3://key:{T}@bucket/chan"], "channel"),
    "channel-oci-ipv6": (["solve", "-c", f"oci://u:{T}@[::1]:5000/chan"], "channel"),
    "pip-index-url-in-a-file": (
        ["create", "-p", "env", "-f", "environment.yml", "-y", "--offline", "-c", "DEMO"],
        "",
    ),
}
FILES = {
    "lock-line-not-a-package": (
        "lock.txt",
        _lock_with(f"https://u:{T}@h.example.org/t/{T}/c/linux-64/notapackage#{'a' * 64}"),
    ),
    "env-file-bad-spec-with-url": (
        "environment.yml",
        f"name: x\nchannels:\n  - https://u:{T}@h.example.org/t/{T}/c?token={T}\n"
        f"dependencies:\n  - https://u:{T}@h.example.org/c::pytorch[[[\n",
    ),
    "pip-index-url-in-a-file": (
        "environment.yml",
        "name: x\ndependencies:\n  - python=3.11\n  - pip\n  - pip:\n"
        f"    - --index-url https://u:{T}@pypi.example.org/simple\n    - unsloth\n",
    ),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_an_error_quoting_a_url_shows_no_token(demo: Path, tmp_path: Path, case: str) -> None:
    argv = [a.replace("DEMO", (demo / "channel").as_uri()) for a in ERRORS[case][0]]
    says = ERRORS[case][1]
    work = tmp_path / "work"
    work.mkdir()
    if case in FILES:
        name, text = FILES[case]
        (work / name).write_text(text)
    before = snapshot(work)
    r = run_cli(argv, tmp_path, cwd=work)
    assert_refused(r, says, code=None)
    assert snapshot(work) == before
    assert CORE not in r.out + r.err  # and nothing was written (the snapshot)


def test_tokens_in_a_lock_pip_urls_are_used_nowhere_and_shown_nowhere(
    demo: Path, tmp_path: Path
) -> None:
    """A lock whose pip wheels name URLs with credentials (explicit ``# pip`` lines, as a
    conda-lock ``manager: pip`` package would): the plan, the dry run's JSON, the create, the
    marker it writes and an export of the env never show them."""
    import hashlib

    token = TOKENS["unicode"]
    lines = ["# platform: linux-64", "@EXPLICIT"]
    for subdir in ("linux-64", "noarch"):
        doc = json.loads((demo / "channel" / subdir / "repodata.json").read_text())
        for fn, rec in sorted(doc["packages"].items()):
            if "cpu" not in rec["build"]:
                lines.append(f"{(demo / 'channel').as_uri()}/{subdir}/{fn}#{rec['sha256']}")
    for whl in sorted((demo / "wheels").glob("*.whl")):
        name, version = whl.name.split("-")[:2]
        sha = hashlib.sha256(whl.read_bytes()).hexdigest()
        url = f"https://u:{q(token)}@pypi.example.org/t/{q(token)}/{whl.name}?token={q(token)}"
        lines.append(f"# pip {name}=={version} @ {url}#sha256={sha}")
    lock = tmp_path / "lock.txt"
    lock.write_text("\n".join(lines) + "\n")
    env = tmp_path / "work" / "env"
    base = ["create", "-p", str(env), "--from-lock", str(lock), "--yes", "--offline"]
    wheels = ["--pip-find-links", str(demo / "wheels")]
    runs = [
        run_cli([*base, *wheels, "--dry-run"], tmp_path, timeout=SLOW),
        run_cli([*base, *wheels, "--dry-run", "--json"], tmp_path, timeout=SLOW),
        run_cli([*base, *wheels, "--no-verify"], tmp_path, timeout=SLOW),
    ]
    assert [r.code for r in runs] == [0, 0, 0], [r.err for r in runs]
    runs += [
        run_cli(["export", "-p", str(env), "--format", f], tmp_path)
        for f in ("explicit", "conda-lock", "environment")
    ]
    runs.append(run_cli(["doctor", "-p", str(env), "--json"], tmp_path))
    assert leaks(tmp_path / "work", *runs) == []


@pytest.mark.conda
@pytest.mark.parametrize("how", ["path", "basic"])
def test_inside_conda_a_token_is_used_and_never_shown(
    demo: Path, tmp_path: Path, how: str
) -> None:
    """conda's transaction downloads with the token; nothing we print or write, nor the env
    conda builds, holds it (conda's own package cache does, as for any conda install)."""
    from tests.conda import realconda
    from tests.conftest import CondaSandbox

    box = CondaSandbox(tmp_path / "_conda")
    token = TOKENS["ascii"]
    work = tmp_path / "work"
    work.mkdir()
    with ChannelServer(demo, token=token) as server:
        base = channel_url(server, token, how)
        lines = ["# platform: linux-64", "@EXPLICIT"]
        for subdir in ("linux-64", "noarch"):
            doc = json.loads((demo / "channel" / subdir / "repodata.json").read_text())
            for fn, rec in sorted(doc["packages"].items()):
                if "cpu" not in rec["build"]:
                    lines.append(f"{base}/{subdir}/{fn}#{rec['sha256']}")
        lock = tmp_path / "lock.txt"
        lock.write_text("\n".join(lines) + "\n")
        env = work / "env"
        r = realconda.conda(
            box, "unsloth", "create", "-p", str(env), "--from-lock", str(lock), "--no-verify",
            "--pip-find-links", str(demo / "wheels"), "--yes",
        )  # fmt: skip
        assert r.code == 0, r
        assert all(h.authorized for h in server.hits) and len(server.hits) == 9
    runs = [
        Run(r.code, r.out, r.err, 0.0, False),
        *(
            Run(x.code, x.out, x.err, 0.0, False)
            for x in (
                realconda.conda(box, "unsloth", "export", "-p", str(env), "--format", "explicit"),
                realconda.conda(box, "unsloth", "doctor", "-p", str(env), "--json"),
            )
        ),
    ]
    assert leaks(work, *runs) == []

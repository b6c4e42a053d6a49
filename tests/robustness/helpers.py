"""Helpers for the robustness tests: run the real CLI in a child process (so a hang or a memory
blow-up is bounded and seen, not suffered), snapshot a file tree including directories, links
and special files, and check the shape of a refusal."""

from __future__ import annotations

import os
import resource
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

TIME_LIMIT_S = 30.0  # a refusal must come well within this (it takes well under a second)
MEMORY_LIMIT = 2 << 30  # address space of the child: reading /dev/zero must not eat the host


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str
    seconds: float
    timed_out: bool


def environ(tmp: Path, **extra: str) -> dict[str, str]:
    for d in ("home", "tmpdir", "envs", "cache"):
        (tmp / d).mkdir(parents=True, exist_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CONDA_", "MAMBA_", "PIP_")) and k != "PYTHONIOENCODING"
    }
    env.update(
        HOME=str(tmp / "home"),
        TMPDIR=str(tmp / "tmpdir"),
        CONDA_ENVS_PATH=str(tmp / "envs"),
        CONDA_UNSLOTH_CACHE=str(tmp / "cache"),
        CONDA_UNSLOTH_NVML="0",
        CONDA_UNSLOTH_NVIDIA_SMI="",
    )
    env.update(extra)
    return env


def _limits() -> None:  # in the child, before exec
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_cli(
    args: list[str],
    tmp: Path,
    *,
    cwd: Path | None = None,
    timeout: float = TIME_LIMIT_S,
    **env: str,
) -> Run:
    """``python -m conda_unsloth ARGS`` with a clean environment rooted in ``tmp``, at most
    ``timeout`` seconds (TIME_LIMIT_S) and 2 GiB of address space."""
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "conda_unsloth", *args],
            capture_output=True,
            text=True,
            env=environ(tmp, **env),
            cwd=cwd or tmp,
            timeout=timeout,
            preexec_fn=_limits,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        return Run(
            -1,
            _text(exc.stdout),
            _text(exc.stderr),
            time.monotonic() - t0,
            timed_out=True,
        )
    return Run(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0, False)


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode(errors="replace")


Snapshot = dict[str, tuple[str, bytes | str | int]]


def snapshot(root: Path) -> Snapshot:
    """Every entry under ``root`` (not following links): directories, files with their
    content, links with their target, special files with their type; ``tests.conftest.tree``
    sees files only, so it misses an empty directory left behind or a FIFO turned into a file."""
    out: Snapshot = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("file", p.read_bytes())
            else:
                out[rel] = ("special", stat.S_IFMT(st.st_mode))
    return out


def assert_refused(
    r: Run, says: str, *, code: int | None = 2, seconds: float = TIME_LIMIT_S / 3
) -> str:
    """One error line containing ``says`` (hint lines may follow), a non-zero exit (``code``
    when given), no traceback, and within ``seconds`` (a refusal that first solves, downloads
    or reads a lock's packages gets more). Returns the error line."""
    assert not r.timed_out, f"still running after the time limit: {r.err[-500:]}"
    assert r.code != 0, f"exited 0: {r.out[-300:]} {r.err[-300:]}"
    if code is not None:
        assert r.code == code, f"exit {r.code}: {r.err[-800:]}"
    assert "Traceback" not in r.err + r.out, r.err[-2000:]
    lines = [ln for ln in r.err.strip().splitlines() if not ln.startswith(("==> ", "notice: "))]
    assert lines, "no error message"
    assert lines[0].startswith("conda-unsloth: error: "), lines
    assert says in lines[0], f"{says!r} not in {lines[0]!r}"
    assert all(ln.startswith("hint: ") for ln in lines[1:]), lines
    assert r.seconds < seconds, f"took {r.seconds:.1f}s"
    return lines[0]


# ----------------------------------------------------------------------------- a channel server


@dataclass(frozen=True)
class Hit:
    path: str  # the request line's path, as sent (query included)
    authorized: bool
    status: int


class ChannelServer:
    """A local HTTP server on 127.0.0.1 (or ``host``, say ``::1``) that serves ``root`` and counts every request: the
    witness of "no network" under ``--offline`` (zero hits), and of a token that is used for
    downloads while never printed. With ``token`` it answers only requests carrying it, in
    any of the forms a conda channel URL can carry a credential: ``/t/<token>/`` in the path,
    ``?token=<token>`` in the query, or HTTP basic auth ``<user>:<token>`` (from ``user:pass@``
    in the URL). Anything else is a 401, counted like the rest."""

    def __init__(
        self, root: Path, token: str | None = None, user: str = "user", host: str = "127.0.0.1"
    ) -> None:
        import socket
        import threading
        from http.server import ThreadingHTTPServer

        self.root, self.token, self.user, self.host = root, token, user, host

        class Server(ThreadingHTTPServer):
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        self.hits: list[Hit] = []
        self._lock = threading.Lock()
        self._server = Server((host, 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> ChannelServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self._server.server_address[1]}"

    @property
    def base(self) -> str:
        return f"http://{self.netloc}"

    def _record(self, hit: Hit) -> None:
        with self._lock:
            self.hits.append(hit)

    def _authorized(self, path: str, query: str, header: str | None) -> tuple[bool, str]:
        """(whether the request carries the token, the path with a /t/<token>/ part removed)."""
        import base64
        from urllib.parse import parse_qs, unquote

        if self.token is None:
            return True, path
        parts = path.split("/")
        if len(parts) > 3 and parts[1] == "t" and unquote(parts[2]) == self.token:
            return True, "/" + "/".join(parts[3:])
        if self.token in parse_qs(query).get("token", []):
            return True, path
        if header and header.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                return False, path
            if unquote(user) == self.user and unquote(password) == self.token:
                return True, path
        return False, path

    def _handler(self) -> type:
        from http.server import BaseHTTPRequestHandler
        from urllib.parse import unquote, urlsplit

        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                return None

            def do_HEAD(self) -> None:
                self._serve(body=False)

            def do_GET(self) -> None:
                self._serve(body=True)

            def _serve(self, body: bool) -> None:
                split = urlsplit(self.path)
                ok, path = server._authorized(
                    split.path, split.query, self.headers.get("Authorization")
                )
                target = (server.root / unquote(path).lstrip("/")).resolve()
                status = 401
                data = b""
                if ok:
                    inside = server.root.resolve() in target.parents
                    status = 200 if inside and target.is_file() else 404
                    data = target.read_bytes() if status == 200 else b""
                server._record(Hit(self.path, ok, status))
                self.send_response(status)
                if status == 401:
                    self.send_header("WWW-Authenticate", 'Basic realm="channel"')
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

        return Handler


# ----------------------------------------------------------------------------- channels


def copy_channel(demo: Path, dest: Path) -> Path:
    """A copy of the demo's channel (``tests.envbuild``) that a test may change."""
    import shutil

    shutil.copytree(demo / "channel", dest)
    return dest


def tamper(channel: Path, name: str, *, keep: tuple[str, ...] = ("md5", "sha256")) -> Tamper:
    """Replace the artifact of the demo package ``name`` in ``channel`` with a valid package of
    the same name, version and build whose payload differs (an extra file, a changed module):
    what a compromised mirror serves. The repodata keeps the ORIGINAL digests that ``keep``
    names (the others are removed from the record)."""
    import hashlib
    import json
    from dataclasses import replace

    from tests.channels import build_artifact
    from tests.envbuild import gpu_stack

    pkg = next(p for p in gpu_stack() if p.name == name and "cpu" not in p.build)
    evil = replace(pkg, files={**pkg.payload(), "share/tampered.txt": b"not what was indexed\n"})
    data = build_artifact(evil)
    path = channel / pkg.subdir / pkg.fn
    original = path.read_bytes()
    path.write_bytes(data)
    repodata = channel / pkg.subdir / "repodata.json"
    doc = json.loads(repodata.read_text())
    record = doc["packages"][pkg.fn]
    for key in ("md5", "sha256"):
        if key not in keep:
            record.pop(key, None)
    repodata.write_text(json.dumps(doc, indent=1, sort_keys=True))
    return Tamper(
        fn=pkg.fn,
        path=path,
        sha256=(hashlib.sha256(original).hexdigest(), hashlib.sha256(data).hexdigest()),
        md5=(hashlib.md5(original).hexdigest(), hashlib.md5(data).hexdigest()),
    )


@dataclass(frozen=True)
class Tamper:
    fn: str
    path: Path
    sha256: tuple[str, str]  # (what the record says, what the file is)
    md5: tuple[str, str]


def demo_create(channel: str, demo: Path, prefix: Path, *extra: str) -> list[str]:
    """`create` arguments for the demo stack from ``channel`` (a URL), offline pip stage."""
    return [
        "create",
        "-p",
        str(prefix),
        "-c",
        channel,
        "--pip-find-links",
        str(demo / "wheels"),
        "--yes",
        "--cuda",
        "12.1",
        *extra,
    ]

"""Byte-compiling what the pip stage installed, as pip does (only the new distributions'
files; uv's ``--compile-bytecode`` would recompile all of site-packages)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from .installers import child_env
from .wheelsources import Sources

_COMPILE = """\
import compileall, sys, warnings
warnings.filterwarnings("ignore")
paths = [p for p in sys.stdin.read().split("\\0") if p]
def one(p):
    return compileall.compile_file(p, force=True, quiet=2)
n = int(sys.argv[1])
if n > 1:
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(n) as ex:
        list(ex.map(one, paths, chunksize=32))
else:
    for p in paths:
        one(p)
"""


def installed_sources(site: Path, folders: Sequence[str]) -> list[str]:
    """The ``.py`` files the new distributions installed (from their RECORD), in site-packages."""
    out: list[str] = []
    base = os.path.realpath(site)
    for folder in folders:
        record = site / folder / "RECORD"
        try:
            text = record.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            rel = line.rsplit(",", 2)[0] if line.count(",") >= 2 else line
            if not rel.endswith(".py"):
                continue
            path = Path(base, rel).resolve()
            if str(path).startswith(base + os.sep) and path.is_file():
                out.append(str(path))
    return out


def compile_installed(prefix: Path, site: Path, folders: Sequence[str], src: Sources) -> int:
    """Byte-compile the new distributions' files (as pip does; uv's ``--compile-bytecode``
    would recompile every file in site-packages, conda's too). Compile errors are ignored, as
    pip and uv ignore them. Returns the number of files.

    When this interpreter is the env's (CPython of the same X.Y: the same magic number and cache
    tag), a few hundred files are compiled here, exactly as the env's python would write them
    (same path recorded, optimization 0, the default invalidation mode); otherwise, or for
    more, the env's python compiles them in worker processes."""
    files = installed_sources(site, folders)
    if not files:
        return 0
    if len(files) <= IN_PROCESS_FILES and same_python(prefix, site):
        for f in files:
            _compile_here(f)
        return len(files)
    workers = max(1, min(os.cpu_count() or 1, len(files) // 200))
    from ..prefixtx import run_child

    env = child_env("pip", src)
    env.pop("PIP_CONFIG_FILE", None)
    try:
        run_child(
            [str(prefix / "bin" / "python"), "-c", _COMPILE, str(workers)],
            input="\0".join(files),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
    except OSError:
        return 0  # compiling is an optimisation: an env that cannot run it failed earlier
    return len(files)


IN_PROCESS_FILES = 400


def same_python(prefix: Path, site: Path) -> bool:
    """The env's python is a CPython of this interpreter's X.Y."""
    tag = sys.implementation.cache_tag
    if (
        sys.implementation.name != "cpython"
        or tag != f"cpython-{site.parent.name[6:].replace('.', '')}"
    ):
        return False
    return not any((prefix / "conda-meta").glob("pypy*.json"))


def _compile_here(path: str) -> None:
    import contextlib
    import py_compile

    src = Path(path)
    cfile = src.parent / "__pycache__" / f"{src.stem}.{sys.implementation.cache_tag}.pyc"
    # as pip and uv: a file that does not compile stays uncompiled
    with contextlib.suppress(py_compile.PyCompileError, OSError, ValueError, SyntaxError):
        py_compile.compile(path, cfile=str(cfile), dfile=path, doraise=True, optimize=0)

"""``@EXPLICIT`` lock (CEP 23): one ``url#sha256`` line per conda package, dependencies first.

conda installs such a file without solving (``conda create -n ENV --file FILE``); the hash is
checked on download. The header carries the platform and the virtual packages the solve saw.
pip packages cannot be part of an explicit file (conda ignores them); they are listed as
comment lines so the file still tells the whole story. Credentials are removed from every URL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from .. import __version__
from ..redact import redact_url

if TYPE_CHECKING:
    from ..solvers.base import Record, SolvedEnv

FORMAT: Final = "explicit"
DEFAULT_FILENAMES: Final = ("explicit.txt",)


def ordered(records: tuple[Record, ...] | list[Record]) -> list[Record]:
    """Records in install order: every package after the packages it depends on (ties and
    cycles broken by name, so the order is deterministic)."""
    by_name = {r.name: r for r in records}
    done: set[str] = set()
    out: list[Record] = []

    def visit(name: str, stack: set[str]) -> None:
        if name in done or name in stack or name not in by_name:
            return
        stack.add(name)
        rec = by_name[name]
        for dep in sorted({d.split()[0] for d in rec.depends if d.split()}):
            visit(dep, stack)
        stack.discard(name)
        done.add(name)
        out.append(rec)

    for name in sorted(by_name):
        visit(name, set())
    return out


def line(rec: Record) -> str:
    """``url#sha256`` (``url#md5`` when the record has no sha256, plain url when neither)."""
    url = redact_url(rec.url)
    digest = rec.sha256 or rec.md5
    return f"{url}#{digest}" if digest else url


def export(solved: SolvedEnv) -> str:
    lines = [
        "# This file may be used to create an environment using:",
        "# $ conda create --name <env> --file <this file>",
        f"# platform: {solved.platform}",
        f"# created-by: conda-unsloth {__version__} ({solved.solver})",
        f"# virtual packages: {' '.join(solved.virtual_packages)}",
        "@EXPLICIT",
    ]
    lines += [line(r) for r in ordered(solved.records)]
    if solved.pip:
        lines.append("# pip packages (not installed by conda from this file; install with")
        lines.append("# pip install --no-deps after creating the environment):")
        for p in solved.pip:
            ref = f" @ {redact_url(p.url)}" if p.url else ""
            digest = f"#sha256={p.sha256}" if p.url and p.sha256 else ""
            lines.append(f"# pip {p.name}=={p.version}{ref}{digest}")
    return "\n".join(lines) + "\n"

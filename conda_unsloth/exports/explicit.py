"""``@EXPLICIT`` lock (CEP 23): one ``url#sha256`` line per conda package, dependencies first.

conda and micromamba install such a file without solving (``conda create -n ENV --file FILE``,
``micromamba create -n ENV --file FILE``); both check the hash (tests/micromamba); conda reads the bare ``#<sha256>`` form only from conda 24.9 on (older
conda refuses the line), which the header says. The header carries the platform and the virtual
packages the solve saw. pip packages cannot be part of an explicit file (conda ignores them);
they are listed as ``# pip REQUIREMENT`` comment lines, one requirement a line, so the file
still tells the whole story: pins (with ``@ wheel-url#sha256=...`` when known) and, verbatim,
requirements that are not ``name==version`` pins. Credentials are removed from every URL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from .. import __version__
from ..redact import redact_text, redact_url

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


def pip_unpinned(solved: SolvedEnv) -> tuple[str, ...]:
    """The env's pip requirements that are not ``name==version`` pins, verbatim (the solvers
    put them in ``extra["pip_unpinned"]``); every lock format carries them."""
    return tuple(str(r) for r in solved.extra.get("pip_unpinned", ()))


def export(solved: SolvedEnv) -> str:
    lines = [
        "# This file may be used to create an environment using:",
        "# $ conda create --name <env> --file <this file>",
        "# (needs conda >= 24.9 for the #<sha256> checksums; with an older conda use the",
        "# conda-lock format)",
        "# $ micromamba create --name <env> --file <this file>",
        "# (both install exactly these files, check each sha256 and solve nothing; neither",
        "# installs the `# pip` lines below)",
        f"# platform: {solved.platform}",
        f"# created-by: conda-unsloth {__version__} ({solved.solver})",
        f"# virtual packages: {' '.join(solved.virtual_packages)}",
        "@EXPLICIT",
    ]
    lines += [line(r) for r in ordered(solved.records)]
    unpinned = pip_unpinned(solved)
    if solved.pip or unpinned:
        # (exports/lockread.py knows these two lines: keep their words)
        lines.append("# pip packages (not installed by conda from this file; install with")
        lines.append("# pip install --no-deps after creating the environment):")
        for p in solved.pip:
            ref = f" @ {redact_url(p.url)}" if p.url else ""
            digest = f"#sha256={p.sha256}" if p.url and p.sha256 else ""
            lines.append(f"# pip {p.name}=={p.version}{ref}{digest}")
        for req in unpinned:
            lines.append(f"# pip {redact_text(req)}")
    return "\n".join(lines) + "\n"

"""The command-line interface, shared by ``conda unsloth`` (conda plugin) and the standalone
``conda-unsloth`` / ``python -m conda_unsloth``.

One module per verb (``cli/<verb>.py``) defines ``DESCRIPTION``,
``configure_parser(parser, conda)`` and ``execute(args) -> int``; its name, aliases and one-line
help are in :data:`VERBS`, so a command imports only its own verb's module. Modules starting
with ``_`` are helpers. Verb modules import only argparse-level code at module level; their
heavy imports happen inside ``execute``.
"""

from __future__ import annotations

import argparse
import functools
import importlib
from typing import TYPE_CHECKING

from .. import __version__

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import ModuleType
    from typing import Any

    from ..runtime import Runtime

PROG = "conda-unsloth"
DESCRIPTION = (
    "Create, verify and diagnose conda GPU environments for Unsloth: a pytorch CUDA build, the "
    "xformers built for exactly that pytorch, triton, bitsandbytes and Unsloth's pip companions."
)


# (verb = module name, aliases, one-line help), in the order `--help` lists them.
VERBS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("create", (), "create a verified Unsloth GPU environment in one command"),
    ("env", ("plan",), "plan a consistent stack for a GPU target and write an environment.yml"),
    (
        "solve",
        ("lock",),
        "resolve the stack for a GPU target with libmamba or rattler, validate it, write a lock",
    ),
    (
        "verify",
        (),
        "verify an environment on the GPU (torch, CUDA arch, xformers, triton, bitsandbytes, "
        "unsloth)",
    ),
    (
        "export",
        (),
        "export an installed environment as @EXPLICIT, conda-lock v1 or a pinned environment.yml",
    ),
    ("doctor", (), "diagnose an existing environment: known-bad combinations and their fix"),
    (
        "module",
        ("modulefile",),
        "write an Lmod or Environment Modules modulefile for an environment (HPC)",
    ),
)


def verb_module(name: str) -> ModuleType:
    return importlib.import_module(f"{__name__}.{name}")


def _execute_verb(name: str, args: argparse.Namespace, runtime: Runtime) -> int:
    return int(verb_module(name).execute(args, runtime) or 0)


def configure_parser(
    parser: argparse.ArgumentParser, conda: bool = False, only: str | None = None
) -> None:
    """Attach the verbs to ``parser`` (conda's subcommand parser, or our standalone one).
    With ``only`` (the verb on the command line), only that verb is imported and built: building
    every verb costs more than a plan's own work. An ``only`` that names no verb builds them
    all, so that argparse's "invalid choice" lists them."""
    sub = parser.add_subparsers(dest="subcmd", metavar="COMMAND", title="commands")
    known = any(only == name or only in aliases for name, aliases, _ in VERBS)
    for name, aliases, summary in VERBS:
        if known and only != name and only not in aliases:
            continue
        mod = verb_module(name)
        p = sub.add_parser(
            name,
            aliases=list(aliases),
            help=summary,
            description=mod.DESCRIPTION,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        mod.configure_parser(p, conda)
        p.set_defaults(func=functools.partial(_execute_verb, name))
    parser.set_defaults(func=lambda args, runtime: _print_help(parser))


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 0


def execute(args: argparse.Namespace, runtime: Runtime) -> int:
    """Run the verb the parsed ``args`` chose, in ``runtime`` (conda's or standalone).

    Every verb runs with credentials removed from what it writes on stdout/stderr and from the
    error it raises (both entry points print that error): ``redact.redacted_output``."""
    from ..errors import UnslothError
    from ..redact import redact_obj, redact_text, redacted_output

    func: Any = args.func
    with redacted_output():
        try:
            return int(func(args, runtime) or 0)
        except UnslothError as exc:
            exc.message = redact_text(exc.message)
            exc.args = (exc.message,)
            exc.hints = tuple(redact_text(h) for h in exc.hints)
            exc.details = redact_obj(exc.details)
            raise


def generate_parser(
    parser_class: type[argparse.ArgumentParser] | None = None,
    argv: Sequence[str] | None = None,
) -> argparse.ArgumentParser:
    """The standalone parser (also used to generate docs). Given ``argv``, only the verb it
    names gets its options (see :func:`configure_parser`)."""
    cls = parser_class or argparse.ArgumentParser
    parser = cls(
        prog=PROG,
        description=DESCRIPTION,
    )
    parser.add_argument("-V", "--version", action="version", version=f"{PROG} {__version__}")
    only = next((a for a in argv if not a.startswith("-")), None) if argv is not None else None
    configure_parser(parser, conda=False, only=only)
    known = {a for name, aliases, _ in VERBS for a in (name, *aliases)}
    if only in known and hasattr(parser, "verb"):
        parser.verb = only  # _Parser (the standalone entry point) names it in a bad flag's hint
    return parser

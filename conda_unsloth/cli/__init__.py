"""The command-line interface, shared by ``conda unsloth`` (conda plugin) and the standalone
``conda-unsloth`` / ``python -m conda_unsloth``.

One module per verb (``cli/<verb>.py``) defines ``NAME``, ``ALIASES``, ``HELP``, ``ORDER``,
``configure_parser(parser, conda)`` and ``execute(args) -> int``; modules starting with ``_``
are helpers. Verb modules import only argparse-level code at module level; their heavy imports
happen inside ``execute``.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from typing import TYPE_CHECKING, Any

from .. import __version__

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import ModuleType

PROG = "conda-unsloth"
DESCRIPTION = (
    "Create, verify and diagnose conda GPU environments for Unsloth: a pytorch CUDA build, the "
    "xformers built for exactly that pytorch, triton, bitsandbytes and Unsloth's pip companions."
)


def verb_modules() -> list[ModuleType]:
    mods = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        mods.append(importlib.import_module(f"{__name__}.{info.name}"))
    return sorted(mods, key=lambda m: (getattr(m, "ORDER", 100), m.NAME))


def configure_parser(
    parser: argparse.ArgumentParser, conda: bool = False, only: str | None = None
) -> None:
    """Attach the verbs to ``parser`` (conda's subcommand parser, or our standalone one).
    With ``only`` (the verb on the command line), the other verbs get their name and help but
    not their options: building every verb's options costs more than a plan's own work."""
    sub = parser.add_subparsers(dest="subcmd", metavar="COMMAND", title="commands")
    for mod in verb_modules():
        aliases = list(getattr(mod, "ALIASES", ()))
        p = sub.add_parser(
            mod.NAME,
            aliases=aliases,
            help=mod.HELP,
            description=getattr(mod, "DESCRIPTION", mod.HELP),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if only is None or only == mod.NAME or only in aliases:
            mod.configure_parser(p, conda)
        p.set_defaults(func=mod.execute)
    parser.set_defaults(func=lambda args: _print_help(parser))


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 0


def execute(args: argparse.Namespace) -> int:
    """Entry point for conda's subcommand plugin: run the chosen verb."""
    func: Any = args.func
    return int(func(args) or 0)


def generate_parser(
    parser_class: type[argparse.ArgumentParser] | None = None,
    argv: Sequence[str] | None = None,
) -> argparse.ArgumentParser:
    """The standalone parser (also used to generate docs). Given ``argv``, only the verb it
    names gets its options (see :func:`configure_parser`)."""
    cls = parser_class or argparse.ArgumentParser
    parser = cls(prog=PROG, description=DESCRIPTION)
    parser.add_argument("-V", "--version", action="version", version=f"{PROG} {__version__}")
    only = next((a for a in argv if not a.startswith("-")), None) if argv is not None else None
    configure_parser(parser, conda=False, only=only)
    return parser

"""`conda unsloth doctor`: name the known problem in an existing env and give the exact fix."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from . import _common

if TYPE_CHECKING:
    from ..runtime import Runtime

DESCRIPTION = """\
Read what is installed in an environment (conda records in conda-meta/ and the Python
distributions in site-packages, telling conda packages from pip-installed ones; nothing is
imported or run), check it against the known issues of the knowledge base (and the GPU and
driver of this host, when there is one), and print each problem with the commands that fix it
for this environment.

Exit status: 0 healthy (or only warnings), 1 an error-level problem was found, 2 bad input
(no such environment, a corrupt or unreadable conda-meta record, a malformed
CONDA_OVERRIDE_CUDA). With --json, stdout is one JSON document: the report or the error.
Fix commands are printed with every env name, path and spec shell-quoted.

examples:
  conda unsloth doctor -n unsloth_env
  conda unsloth doctor -p /apps/unsloth/2024.9 --json
"""


def configure_parser(p: argparse.ArgumentParser, conda: bool = False) -> None:
    _common.add_prefix_options(p, conda)
    _common.add_output_options(p, conda)
    p.add_argument(
        "--no-host",
        action="store_true",
        help="do not look at this host's GPU and driver (package checks only)",
    )
    p.add_argument("--knowledge", metavar="DIR", help=argparse.SUPPRESS)


def execute(args: argparse.Namespace, runtime: Runtime) -> int:
    from pathlib import Path

    from .. import doctor
    from ..prefix import resolve_existing
    from . import _shared

    name = getattr(args, "name", None)
    prefix = resolve_existing(name, getattr(args, "prefix", None), runtime.envs_dirs())
    kb = _shared.knowledge(args)
    host = None if args.no_host else doctor.host_facts()
    diag = doctor.diagnose(Path(prefix), kb, host=host, name=name)
    # fix commands name the command this user runs (conda-unsloth standalone)
    if args.json:
        _shared.emit_json(_shared.hinted(diag.to_json(), runtime))
    else:
        text = doctor.render(diag, verbose=not getattr(args, "quiet", False))
        print(_shared.hinted(text, runtime), end="")
    return diag.exit_code

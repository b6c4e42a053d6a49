"""`conda unsloth export`: write a lock or a pinned environment.yml for an installed env."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _common

if TYPE_CHECKING:
    import argparse

    from ..runtime import Runtime

DESCRIPTION = """\
Export what is installed in an environment (its conda-meta records and pip distributions, with
the marker conda-unsloth left there) so it can be rebuilt elsewhere:

  explicit     @EXPLICIT url#sha256 lines (CEP 23); pip pins as comment lines
  conda-lock   conda-lock v1 (CEP 37): conda packages with md5 + sha256, pip wheels with sha256
               where known (pins without a wheel URL go to metadata.custom_metadata)
  environment  environment.yml with every package pinned to name=version=build, plus pip pins

Channel tokens (/t/<token>/) and user:password@ are removed from every URL.
The format follows -o's file name when --format is not given (explicit.txt, conda-lock.yml,
environment.yml); otherwise explicit.

examples:
  conda unsloth export -n unsloth --format conda-lock -o conda-lock.yml
  conda unsloth export -p /apps/unsloth/2024.9 -o explicit.txt
  conda unsloth create -n copy --from-lock conda-lock.yml
"""


def configure_parser(p: argparse.ArgumentParser, conda: bool = False) -> None:
    from .. import exports as formats

    _common.add_prefix_options(p, conda)
    p.add_argument(
        "--format",
        choices=formats.names(),
        default=None,
        help="explicit, conda-lock or environment (default: from -o's name, else explicit)",
    )
    p.add_argument(
        "-o", "--output", "--file", metavar="FILE", help="file to write (default: stdout)"
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace FILE even if it was not written by conda-unsloth",
    )
    _common.add_output_options(p, conda)


# ----------------------------------------------------------------------------- verb


def execute(args: argparse.Namespace, runtime: Runtime) -> int:
    import sys

    from .. import exports as formats
    from .. import prefix as prefixmod
    from ..errors import SpecError
    from ..exports import installed
    from ..outputs import OutputFile
    from . import _shared

    fmt = formats.for_output(args.format, args.output)
    out = Path(args.output).expanduser() if args.output else None
    target = None
    if args.output is not None:  # the one output policy (outputs.py), before any work
        given = os.path.expanduser(args.output)  # noqa: PTH111 - keeps a trailing "/"
        example = fmt.default_filenames[0]
        target = OutputFile.of(given, "-o", force=args.force, example=example).check()
    env_prefix = prefixmod.resolve_existing(args.name, args.prefix, runtime.envs_dirs())
    solved = installed.solved_from_prefix(env_prefix)
    if not solved.records:
        raise SpecError(f"{env_prefix} has no conda packages to export")
    text = installed.render_installed(solved, fmt, env_prefix)
    if target is not None:
        target.write(text, dry_run=args.dry_run)
    unlocked = [p for p in solved.pip if not (p.url and p.sha256)]
    if args.json:
        doc: dict[str, Any] = {
            "prefix": str(env_prefix),
            "format": fmt.name,
            "path": str(out) if out else None,
            "written": bool(out) and not args.dry_run,
            "platform": solved.platform,
            "conda_packages": len(solved.records),
            "pip_packages": len(solved.pip),
            "pip_without_wheel_hash": [f"{p.name}=={p.version}" for p in unlocked],
        }
        if out is None:
            doc["content"] = text
        _shared.emit_json(doc)
        return 0
    if out is None:
        sys.stdout.write(text)
        return 0
    verb = "would write" if args.dry_run else "wrote"
    print(
        f"{verb} {out} ({fmt.name}: {len(solved.records)} conda packages, {len(solved.pip)} pip)"
    )
    if unlocked and not args.quiet:
        print(
            f"notice: {len(unlocked)} pip package(s) have no known wheel URL/sha256 "
            f"({', '.join(f'{p.name}=={p.version}' for p in unlocked[:3])}"
            f"{', ...' if len(unlocked) > 3 else ''}); they are pinned by version only",
            file=sys.stderr,
        )
    return 0

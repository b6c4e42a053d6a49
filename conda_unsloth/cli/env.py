"""`conda unsloth env`: plan a consistent Unsloth GPU stack and write an environment.yml."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from . import _common

if TYPE_CHECKING:
    import argparse

    from ..runtime import Runtime

DESCRIPTION = """\
Decide python, pytorch (CUDA build), pytorch-cuda / cuda-version, the xformers build made for
exactly that pytorch, triton, and Unsloth with its pip companions, then write an environment.yml
(plus a pip constraints file next to it) that plain `conda env create -f` can use.

examples:
  conda unsloth env                                # pytorch profile, CUDA from the driver or 12.1
  conda unsloth env --cuda 12.1 -o env.yml
  conda unsloth env --profile conda-forge --cuda 12.9 -o env.yml
  conda unsloth env --json --dry-run               # the plan as data, nothing written
"""


def configure_parser(p: argparse.ArgumentParser, conda: bool = False) -> None:
    p.add_argument("-n", "--name", help="environment name written into the file")
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        default="environment.yml",
        help="file to write (default: environment.yml); the pip constraints go to "
        "FILE's stem + .pip-constraints.txt",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace FILE even if it was not written by conda-unsloth",
    )
    _common.add_target_options(p)
    _common.add_output_options(p, conda)


def execute(args: argparse.Namespace, runtime: Runtime) -> int:
    from .. import spec as specmod
    from ..select import select
    from . import _shared

    sel = select(_shared.request(args), _shared.host(), _shared.knowledge(args))
    out = args.output
    constraints = specmod.constraints_path_for(out)
    env_spec = specmod.from_selection(sel, args.name, os.path.basename(constraints))
    # both files through the one output policy; a dry run checks them and writes nothing
    files = specmod.write_files(env_spec, out, force=args.force, dry_run=args.dry_run)
    if args.json:
        doc = sel.to_json()
        # every line the file holds, the profile's extra pins and pip included
        rows = _shared.spec_rows(env_spec)
        keys = ("name", "version", "build", "channel", "why")
        doc["conda"] = [
            {**dict(zip(keys, r, strict=True)), "channel": r[3].removeprefix("conda").strip()}
            for r in rows
            if r[3].startswith("conda")
        ]
        doc["pip"] = [{"name": r[0], "version": r[1], "why": r[4]} for r in rows if r[3] == "pip"]
        doc["files"] = [str(f) for f in files]
        doc["environment_yml"] = specmod.to_yaml(env_spec)
        doc["pip_constraints"] = specmod.constraints_text(env_spec)
        _shared.emit_json(doc)
        return 0
    if not args.quiet:
        _shared.print_notices(sel.notices)
    if not args.quiet:
        _shared.print_plan(sel, env_spec)
    if files:
        _shared.echo(f"wrote {files[0]} and {files[1]}")
        _shared.echo(
            f"next: CONDA_CHANNEL_PRIORITY=strict conda env create -f {files[0]}"
            + (" -n NAME" if not args.name else "")
        )
    else:
        print(specmod.to_yaml(env_spec), end="")
    return 0

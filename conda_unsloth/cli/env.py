"""`conda unsloth env`: plan a consistent Unsloth GPU stack and write an environment.yml."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from . import _common

if TYPE_CHECKING:
    import argparse

    from ..runtime import Runtime
    from ..spec import EnvSpec

DESCRIPTION = """\
Decide python, pytorch (CUDA build), pytorch-cuda / cuda-version, the xformers build made for
exactly that pytorch, triton, and Unsloth with its pip companions, then write an environment.yml
that conda, micromamba/mamba and conda-lock all read the same way (its header names the command
for each), or the file your tool reads best (--for).

examples:
  conda unsloth env                                # pytorch profile, CUDA from the driver or 12.1
  conda unsloth env --cuda 12.1 -o env.yml
  conda unsloth env --profile conda-forge --cuda 12.9 -o env.yml
  conda unsloth env --for micromamba -o env.yml    # with nodefaults: `micromamba create -f env.yml`
  conda unsloth env --for pixi                     # pixi.toml
  conda unsloth env --json --dry-run               # the plan as data, nothing written
"""

# --for TOOL: the default output file for each (the rest write environment.yml)
DEFAULT_OUTPUT = {"pixi": "pixi.toml"}


def configure_parser(p: argparse.ArgumentParser, conda: bool = False) -> None:
    p.add_argument("-n", "--name", help="environment name written into the file")
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="file to write (default: environment.yml; pixi.toml with --for pixi)",
    )
    p.add_argument(
        "--for",
        dest="for_tool",
        choices=("conda", "micromamba", "pixi"),
        help="write the file for this tool: conda (env.yml, conda's commands), micromamba "
        "(env.yml with nodefaults, which micromamba/mamba need to leave .condarc channels "
        "out), pixi (pixi.toml); default: an env.yml every tool reads the same way",
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
    tool = args.for_tool
    out = args.output
    if out is None:  # an empty -o is refused by the output policy, not replaced
        out = DEFAULT_OUTPUT.get(tool or "", "environment.yml")
    env_spec = specmod.from_selection(sel, args.name, tool)
    if tool == "pixi":
        from ..exports import pixi
        from ..outputs import OutputFile, write_all

        text = pixi.render(sel, env_spec, args.name)
        target = OutputFile.of(out, "-o", force=args.force, example="pixi.toml").check()
        files = [os.fspath(out)] if write_all([(target, text)], dry_run=args.dry_run) else []
    else:
        text = specmod.to_yaml(env_spec)
        # through the one output policy; a dry run checks the file and writes nothing
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
        doc["for"] = tool
        if tool == "pixi":
            doc["pixi_toml"] = text
        else:
            doc["environment_yml"] = text
        doc["pip_constraints"] = specmod.constraints_text(env_spec)
        _shared.emit_json(doc)
        return 0
    if not args.quiet:
        _shared.print_notices(sel.notices)
    if not args.quiet:
        _shared.print_plan(sel, env_spec)
    if files:
        _shared.echo(f"wrote {files[0]}")
        _shared.echo(f"next: {next_command(tool, files[0], env_spec)}")
    else:
        print(text, end="")
    return 0


def next_command(tool: str | None, path: str, env_spec: EnvSpec) -> str:
    """The command that builds ``path`` with the tool it was written for."""
    from shlex import quote  # paths as one shell word each: a space must not split them

    name = "" if env_spec.name else " -n NAME"
    if tool == "pixi":
        return f"cd {quote(os.path.dirname(path) or '.')} && pixi install"
    if tool == "micromamba":
        return f"micromamba create{name} -f {quote(path)} --strict-channel-priority"
    return f"CONDA_CHANNEL_PRIORITY=strict conda env create{name} -f {quote(path)}"

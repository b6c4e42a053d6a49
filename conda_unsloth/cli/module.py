"""`conda unsloth module`: write an Lmod (Lua) or Environment Modules (Tcl) modulefile for an
installed environment."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from . import _common

if TYPE_CHECKING:
    import argparse

    from ..runtime import Runtime

DESCRIPTION = """\
Write a modulefile that does what `conda activate` does: PREFIX/bin first on PATH,
CONDA_PREFIX set, the env's etc/conda/activate.d scripts applied (source_sh / source-sh, undone
on unload), and nothing on LD_LIBRARY_PATH. A module family (default conda_env) keeps two
conda environments from being loaded together.

The file goes to DIR/NAME.lua (Lmod) or DIR/NAME (Tcl): unsloth/2024.9 -> DIR/unsloth/2024.9.lua.

The GPUs the env passed `conda unsloth verify` on (its Slurm fleet verification, recorded in
the env's marker) are listed in the module's whatis and help. --require-verified P1,P2 writes
the module only when the env passed on every one of those partitions (node features, GRES
types), as it is now; otherwise nothing is written and the error names the command to run.

examples:
  conda unsloth module -p /apps/unsloth/2024.9 unsloth/2024.9 -o /apps/modulefiles
  conda unsloth module -n unsloth --format tcl -o ~/modulefiles
  conda unsloth module -p /apps/unsloth/2024.9 unsloth/2024.9 -o /apps/modulefiles --require-verified v100,a100,h100
  module use /apps/modulefiles && module load unsloth/2024.9
"""


def configure_parser(p: argparse.ArgumentParser, conda: bool = False) -> None:
    p.add_argument(
        "module_name",
        nargs="?",
        metavar="MODULE",
        help="module name NAME/VERSION (default: unsloth/<the env's unsloth version>)",
    )
    _common.add_prefix_options(p, conda)
    p.add_argument(
        "--format",
        choices=("auto", "lmod", "tcl"),
        default="auto",
        help="lmod (Lua) or tcl (Environment Modules); auto: lmod when $LMOD_CMD is set, tcl "
        "when $MODULES_CMD is set, else lmod",
    )
    p.add_argument(
        "-o",
        "--output-dir",
        metavar="DIR",
        default=".",
        help="modulefile tree to write into (must exist; default: current directory)",
    )
    p.add_argument(
        "--family",
        default=None,
        help="module family shared by all conda environments (default: conda_env)",
    )
    p.add_argument(
        "--allow-user-site",
        action="store_true",
        help="do not set PYTHONNOUSERSITE=1 (by default ~/.local packages are kept out)",
    )
    p.add_argument(
        "--require-verified",
        metavar="LIST",
        help="write the module only if the env passed the GPU verification on each of these "
        "partitions (node features, GRES types): conda unsloth verify --sbatch ... --partitions",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace the file even if it was not written by conda-unsloth",
    )
    _common.add_output_options(p, conda)


def _format(requested: str) -> str:
    if requested != "auto":
        return requested
    if os.environ.get("LMOD_CMD"):
        return "lmod"
    if os.environ.get("MODULES_CMD"):
        return "tcl"
    return "lmod"


def execute(args: argparse.Namespace, runtime: Runtime) -> int:
    import sys

    from .. import prefix as prefixmod
    from ..errors import UsageError
    from ..exports import modulefile as mf
    from ..outputs import OutputFile, refuse_control
    from . import _shared

    fmt = _format(args.format)
    family = mf.validate_family(args.family or mf.DEFAULT_FAMILY)
    env_prefix = prefixmod.resolve_existing(args.name, args.prefix, runtime.envs_dirs())
    facts = mf.read_facts(env_prefix)
    name = args.module_name
    if not name:
        version = facts.versions.get("unsloth", "").split(" ")[0]
        name = f"unsloth/{version or env_prefix.name}"
    out_dir = Path(args.output_dir).expanduser()
    refuse_control(args.output_dir, "-o")
    path = mf.output_path(out_dir, name, fmt)
    if args.require_verified is not None:
        from ..exports.slurm import parse_fleet

        required = parse_fleet(args.require_verified, "--require-verified")
        mf.require_verified(env_prefix, name, required)
    text = mf.render(
        fmt, name, facts, family, user_site=args.allow_user_site, command=runtime.command
    )

    written = False
    if not args.dry_run:
        if not out_dir.is_dir():
            raise UsageError(
                f"-o {out_dir}: directory does not exist", hints=[f"mkdir -p {out_dir}"]
            )
        # the one output policy (outputs.py); NAME/VERSION directories are made under -o DIR
        # and removed again if the write fails
        OutputFile.of(
            path,
            "module file",
            force=args.force,
            mark=mf.GENERATED_MARK,
            example="MODULE",
            make_parents_under=out_dir,
        ).write(text)
        written = True

    if args.json:
        _shared.emit_json(
            {
                "module": name,
                "format": fmt,
                "family": family,
                "path": str(path),
                "written": written,
                "environment": facts.to_json(),
                "verified_on": [v.name for v in facts.verified],
                "modulefile": text,
            }
        )
        return 0
    if not args.quiet:
        for script in mf.scripts_touching_ld_library_path(facts):
            print(
                f"notice: {script} sets LD_LIBRARY_PATH; the module applies it as conda "
                "activate would",
                file=sys.stderr,
            )
    if not written:
        print(text, end="")
        return 0
    verified = ", ".join(v.short() for v in facts.verified)
    print(f"wrote {path} ({fmt}" + (f"; verified on {verified})" if verified else ")"))
    if not args.quiet:
        print(f"next: module use {out_dir.absolute()} && module load {name}")
    return 0

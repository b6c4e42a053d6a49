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

  bundle       one tar file for a machine without network: the explicit lock, a local channel
               with exactly the env's package files (indexed), the pip stage's wheels and the
               pip constraints; `create --from-bundle FILE` rebuilds the env from it offline.
               Package files come from conda's package caches (--pkgs-dir, CONDA_PKGS_DIRS) or
               a local channel, wheels from the marker's URLs or --pip-find-links; each is
               checked by sha256, and one found nowhere is an error (nothing is written)

Channel tokens (/t/<token>/) and user:password@ are removed from every URL.
The format follows -o's file name when --format is not given (explicit.txt, conda-lock.yml,
environment.yml, *.tar for bundle); otherwise explicit.

examples:
  conda unsloth export -n unsloth --format conda-lock -o conda-lock.yml
  conda unsloth export -p /apps/unsloth/2024.9 -o explicit.txt
  conda unsloth create -n copy --from-lock conda-lock.yml
  conda unsloth export -p /apps/unsloth/2024.12 --format bundle -o unsloth-2024.12.tar
  conda unsloth create -p /apps/unsloth/2024.12 --from-bundle unsloth-2024.12.tar
"""


def configure_parser(p: argparse.ArgumentParser, conda: bool = False) -> None:
    from .. import exports as formats

    _common.add_prefix_options(p, conda)
    p.add_argument(
        "--format",
        choices=[*formats.names(), "bundle"],
        default=None,
        help="explicit, conda-lock, environment or bundle (default: from -o's name, else "
        "explicit)",
    )
    p.add_argument(
        "-o", "--output", "--file", metavar="FILE", help="file to write (default: stdout)"
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace FILE even if it was not written by conda-unsloth",
    )
    # --- bundle (exports/bundle.py)
    b = p.add_argument_group("bundle (--format bundle)")
    b.add_argument(
        "--pkgs-dir",
        metavar="DIR",
        action="append",
        default=[],
        help="a package cache holding the env's package files (repeatable; searched first, "
        "then CONDA_PKGS_DIRS, conda's pkgs dirs, ~/.conda/pkgs)",
    )
    b.add_argument(
        "--pip-find-links",
        metavar="DIR",
        action="append",
        default=[],
        help="a folder holding the env's wheels (repeatable; besides the marker's wheel URLs)",
    )
    # --- end bundle
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

    if args.format == "bundle" or (
        args.format is None and (args.output or "").endswith(bundle_suffixes())
    ):
        return _bundle(args, runtime)
    if args.pkgs_dir or args.pip_find_links:
        from ..errors import UsageError

        raise UsageError("--pkgs-dir and --pip-find-links only apply with --format bundle")
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


# ----------------------------------------------------------------------------- bundle


def bundle_suffixes() -> tuple[str, ...]:
    from ..exports.bundle import SUFFIXES

    return SUFFIXES


def _bundle(args: argparse.Namespace, runtime: Runtime) -> int:
    """``--format bundle``: one tar file (exports/bundle.py)."""
    import sys

    from .. import prefix as prefixmod
    from ..errors import UsageError
    from ..exports import bundle
    from ..outputs import GENERATED_MARK, OutputFile
    from ..units import human_size
    from . import _shared

    if not args.output:
        raise UsageError(
            "a bundle is a binary file: give -o FILE.tar",
            hints=["conda unsloth export -p PREFIX --format bundle -o unsloth.tar"],
        )
    given = os.path.expanduser(args.output)  # noqa: PTH111 - keeps a trailing "/"
    target = OutputFile.of(
        given, "-o", force=args.force, example="unsloth.tar", mark=GENERATED_MARK
    ).check()
    env_prefix = prefixmod.resolve_existing(args.name, args.prefix, runtime.envs_dirs())
    dirs = bundle.package_dirs(
        [Path(d) for d in args.pkgs_dir], [*runtime.envs_dirs(), *_root_envs(runtime)]
    )
    plan = bundle.plan(
        env_prefix,
        pkgs_dirs=dirs,
        find_links=[Path(d).expanduser() for d in args.pip_find_links],
    )
    digest, size = (None, plan.size) if args.dry_run else bundle.write(plan, target.real())
    doc: dict[str, Any] = {
        "prefix": str(env_prefix),
        "format": "bundle",
        "path": str(Path(given)),
        "written": not args.dry_run,
        "conda_packages": len(plan.packages),
        "wheels": len(plan.wheels),
        "bytes": size,
        "sha256": digest,
        "sources": sorted({str(m.source.parent) for m in (*plan.packages, *plan.wheels)}),
    }
    if args.json:
        _shared.emit_json(doc)
        return 0
    verb = "would write" if args.dry_run else "wrote"
    print(
        f"{verb} {given} (bundle: {len(plan.packages)} conda packages, {len(plan.wheels)} "
        f"wheels, {human_size(size)})"
    )
    if digest and not args.quiet:
        print(f"sha256 {digest}  (compare after copying: sha256sum {Path(given).name})")
        print(f"next: {runtime.command} create -p PREFIX --from-bundle {given}", file=sys.stderr)
    return 0


def _root_envs(runtime: Runtime) -> list[Path]:
    """``ROOT/envs`` of conda's root prefixes (inside conda): their ROOT/pkgs is searched."""
    return [r / "envs" for r in runtime.roots()]

"""`conda unsloth solve`: resolve the planned (or a given) environment for the target, prove it is
the intended stack, and optionally write a lock file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _common

if TYPE_CHECKING:
    import argparse

    from ..exports import Format
    from ..outputs import OutputFile
    from ..pipeline import Solution
    from ..runtime import Runtime

DESCRIPTION = """\
Turn the planned stack (the same flags as `conda unsloth env`) or an existing environment.yml
(-f) into a fully resolved package set for the target's platform and virtual packages (not this
host's), check that it is the stack we meant (a CUDA pytorch of the target CUDA, the xformers
built for exactly that pytorch, the triton pytorch pins, no known-bad combination), print it,
and with --lock write an @EXPLICIT, conda-lock v1 or fully pinned environment.yml lock.
Nothing is written unless the solution passed validation, and --lock never replaces a file that
conda-unsloth did not write (unless --force) nor the -f input (never).

With -f, the target CUDA is --cuda, else an exact cuda-version / pytorch-cuda pin of the file;
with only a range pin (cuda-version>=12.6,<13) or none, it is the CUDA of the solved pytorch.

pip requirements are not resolved (conda solves the conda part only): name==version pins are
locked by version; any other requirement (unsloth, transformers>=4.46, pkg @ git+https://...)
is kept verbatim in every format (explicit: a `# pip REQUIREMENT` comment line; conda-lock:
metadata.custom_metadata.pip_requirements, one per line; environment: the pip: list) and a
notice names them.

examples:
  conda unsloth solve --cuda 12.1
  conda unsloth solve -f environment.yml --lock explicit.txt
  conda unsloth solve --cuda 12.1 -c file:///srv/mirror/pytorch -c conda-forge --offline
  conda unsloth solve --profile conda-forge --lock conda-lock.yml --format conda-lock --json
"""


def configure_parser(p: argparse.ArgumentParser, conda: bool = False) -> None:
    from .. import exports as formats

    p.add_argument(
        "-f",
        "--file",
        metavar="ENV_YML",
        help="solve this environment.yml instead of the plan (its channels unless -c is given)",
    )
    p.add_argument(
        "--solver",
        choices=("libmamba", "rattler"),
        dest="unsloth_solver",
        help="solver backend (default: libmamba inside conda, rattler elsewhere)",
    )
    p.add_argument(
        "--lock",
        metavar="FILE",
        help="write the solution as a lock file (after validation passed)",
    )
    p.add_argument(
        "--format",
        choices=[f.name for f in formats.FORMATS],
        dest="lock_format",
        help="lock format (default: from FILE's name, as `export -o` does: explicit.txt, "
        "conda-lock.yml, environment.yml; *lock*.yml -> conda-lock, other *.yml -> "
        "environment; else explicit)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="let --lock replace a file that was not written by conda-unsloth (never the -f "
        "input)",
    )
    p.add_argument(
        "--offline",
        action="store_true",
        help="use cached repodata only; never touch the network",
    )
    _common.add_channel_options(p, conda)
    _common.add_target_options(p)
    _common.add_output_options(p, conda)


def lock_output(path: Path, source: Path | None = None, force: bool = False) -> OutputFile:
    """The --lock file, checked before solving by the one output policy (outputs.py): never
    the -f input ``source``, never a special file, never a file conda-unsloth did not write
    (unless ``force``)."""
    from ..outputs import OutputFile

    inputs = [(source, "-f")] if source is not None else []
    return OutputFile.of(
        path, "--lock", force=force, inputs=inputs, example="explicit.txt"
    ).check()


def solve(args: argparse.Namespace, runtime: Runtime) -> Solution:
    """Plan or read the spec, solve it, validate it. Raises on any failure."""
    from .. import pipeline
    from . import _shared

    kb = _shared.knowledge(args)
    host = _shared.host()
    if args.file:
        plan = pipeline.plan_file(Path(args.file), host, kb, **_shared.target_flags(args))
    else:
        plan = pipeline.plan_request(_shared.request(args), host, kb)
    return pipeline.solve(
        plan,
        runtime.solver(args.unsloth_solver),
        kb,
        offline=bool(getattr(args, "offline", False)),
        channels=args.channel,
    )


def to_json(
    solution: Solution, lock: Path | None, fmt: Format, dry_run: bool = False
) -> dict[str, Any]:
    from ..redact import redact_url

    solved, target = solution.solved, solution.target
    assert target is not None  # a solve always has one

    def rec(r: Any) -> dict[str, Any]:
        doc: dict[str, Any] = r.to_json()
        doc["url"] = redact_url(doc["url"])
        return doc

    return {
        "solver": solved.solver,
        "platform": solved.platform,
        "target": target.to_json(),
        "channels": list(solved.channels),
        "virtual_packages": list(solved.virtual_packages),
        "seconds": round(solved.seconds, 4),
        "validation": "passed",
        "checked": list(solution.checked),
        "packages": [rec(r) for r in solved.records],
        "pip": [{"name": p.name, "version": p.version} for p in solved.pip],
        "pip_unpinned": list(solved.extra.get("pip_unpinned", ())),
        "lock": {"file": str(lock), "format": fmt.name, "written": not dry_run} if lock else None,
        "notices": list(solution.notices),
    }


def execute(args: argparse.Namespace, runtime: Runtime) -> int:

    from .. import exports as formats
    from . import _shared

    lock = Path(args.lock) if args.lock else None
    fmt = formats.for_output(args.lock_format, args.lock)
    target = None
    if lock is not None:
        target = lock_output(lock, Path(args.file) if args.file else None, bool(args.force))
    solution = solve(args, runtime)
    solved = solution.solved
    if target is not None:
        source = (args.file or "conda-unsloth plan",)
        target.write(formats.render(solved, fmt, sources=source), dry_run=args.dry_run)
    if args.json:
        _shared.emit_json(to_json(solution, lock, fmt, args.dry_run))
        return 0
    if not args.quiet:
        _shared.print_notices(solution.notices)
    print(
        f"solved {len(solved.records)} packages for {solved.platform} with {solved.solver} in "
        f"{solved.seconds:.2f} s · virtual packages: {' '.join(solved.virtual_packages)}"
    )
    rows: list[tuple[str, ...]] = [
        (r.name, r.version, r.build, r.channel_name) for r in solved.records
    ]
    rows += [(p.name, p.version, "", "pypi (pip)") for p in solved.pip]
    rows += [(r, "(not pinned)", "", "pypi (pip)") for r in solved.extra.get("pip_unpinned", ())]
    _shared.table(rows, ("name", "version", "build", "channel"))
    print("validation: passed")
    for item in solution.checked:
        print(f"  - {item}")
    if lock is not None:
        print(f"{'would write' if args.dry_run else 'wrote'} {lock} ({fmt.name})")
    return 0

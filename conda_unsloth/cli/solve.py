"""`conda unsloth solve`: resolve the planned (or a given) environment for the target, prove it is
the intended stack, and optionally write a lock file."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _common

if TYPE_CHECKING:
    import argparse

    from ..knowledge import Knowledge
    from ..select import Target
    from ..solvers.base import SolvedEnv
    from ..spec import EnvSpec

FORMATS = ("explicit", "conda-lock", "environment")
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
        choices=FORMATS,
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
    _common.add_output_options(p, conda, dry_run=False)


def check_lock_path(path: Path, source: Path | None = None, force: bool = False) -> None:
    """Fail before solving if the lock file cannot be written, is the -f input ``source``, or
    exists and was not written by conda-unsloth (the ``export`` verb's guard; ``force``
    lifts only that last one)."""
    import os

    from ..errors import UsageError
    from ..spec import refuse_foreign

    parent = path.parent if str(path.parent) else Path()
    if path.is_dir():
        raise UsageError(
            f"--lock {path}: is a directory; give a file name like {path}/explicit.txt"
        )
    if not parent.is_dir():
        raise UsageError(
            f"--lock {path}: directory {parent} does not exist", hints=[f"mkdir -p {parent}"]
        )
    if not os.access(parent, os.W_OK | os.X_OK) or (
        path.exists() and not os.access(path, os.W_OK)
    ):
        raise UsageError(f"--lock {path}: not writable (permission denied)")
    if source is not None and path.exists() and source.exists() and path.samefile(source):
        raise UsageError(
            f"--lock {path} is the -f input; refusing to overwrite it",
            hints=["give the lock another name, e.g. --lock explicit.txt"],
        )
    refuse_foreign(path, force, f"--lock {path}", "--lock")


def lock_format(path: Path, fmt: str | None) -> str:
    """The lock format: ``fmt``, else from the file name exactly as ``export -o`` picks it."""
    from .export import _format

    return _format(fmt, str(path))


_CUDA_PIN = re.compile(r"^(?:[\w./:-]+::)?(pytorch-cuda|cuda-version)(?=$|[\s=<>!~\[])(.*)$")
# an exact pin: "=12.1", "==12.1", "12.1", "12.1.*", optionally followed by "=BUILD"
_EXACT_CUDA = re.compile(r"^(?:==?)?(\d+\.\d+)(?:\.\*)?(?:=\S*)?$")
_SUBDIR_QUAL = re.compile(
    r"^[^:]*/(linux-64|linux-aarch64|linux-ppc64le|osx-64|osx-arm64|win-64)::"
)


def _spec_from_file(path: Path, args: argparse.Namespace, kb: Knowledge) -> tuple[EnvSpec, Target]:
    from .. import spec as specmod
    from ..errors import SelectionError, SpecError
    from ..select import DEFAULT_PROFILE, Request, resolve_target
    from . import _shared

    env = specmod.read(path)
    platform = args.platform or "linux-64"
    for s in env.conda_specs():
        m = _SUBDIR_QUAL.match(s)
        if m and m.group(1) != platform:
            raise SpecError(
                f"environment file {path}: '{s}' is for platform {m.group(1)}, the target is "
                f"{platform}",
                hints=["Unsloth GPU environments are built for linux-64 only"],
            )
    profile_name = args.profile
    cuda = args.cuda
    pinned_by = None
    for s in env.conda_specs():
        m = _CUDA_PIN.match(s.replace(" ", ""))
        if m:
            profile_name = profile_name or (
                "pytorch" if m.group(1) == "pytorch-cuda" else "conda-forge"
            )
            exact = _EXACT_CUDA.match(m.group(2))
            if cuda is None and exact:
                cuda, pinned_by = exact.group(1), s
        py = re.match(r"^python\s*=+\s*(3\.\d+)", s.replace(" ", ""))
        if py:
            env.python = py.group(1)
    profile_name = profile_name or DEFAULT_PROFILE
    if profile_name not in kb.profiles:
        from ..errors import UsageError

        raise UsageError(
            f"--profile '{profile_name}' is not a profile; choose one of {', '.join(kb.profiles)}"
        )
    if args.platform is not None and args.platform != "linux-64":
        raise SelectionError(
            f"--platform {args.platform}: Unsloth GPU environments are built for linux-64 only",
            hints=["use --platform linux-64"],
        )
    req = Request(
        profile=profile_name,
        cuda=cuda,
        gpu_archs=tuple(args.gpu_arch or ()),
        platform=args.platform,
    )
    target, _notes = resolve_target(req, kb.profiles[profile_name], _shared.host(), kb)
    env.profile, env.cuda = profile_name, target.cuda
    if cuda is None:  # no --cuda, no exact pin: the solved pytorch decides (see cuda_from_solve)
        target = replace(target, cuda_source=FROM_SOLVE)
    elif pinned_by is not None:
        target = replace(target, cuda_source=f"'{pinned_by}' in {path.name}")
    return env, target


FROM_SOLVE = "the solved pytorch (no --cuda, no exact CUDA pin in the file)"


def cuda_from_solve(solved: SolvedEnv, target: Target) -> Target:
    """For a file without an exact CUDA pin (and no --cuda): the target CUDA is the solved
    pytorch's, so a range pin like ``cuda-version>=12.6,<13`` validates against what it got."""
    from ..rules import torch_cuda

    pt = solved.record("pytorch")
    cuda = torch_cuda(pt.to_package()) if pt is not None else None
    if cuda is None:
        return target
    return replace(target, cuda=cuda)


def solve(args: argparse.Namespace) -> tuple[SolvedEnv, Target, list[str]]:
    """Plan or read the spec, solve it, validate it. Raises on any failure."""
    from .. import spec as specmod
    from ..errors import UnsolvableError
    from ..solvers import get_solver
    from ..validate import ValidationError, explain_unsolvable, validate
    from . import _shared

    notices: list[str] = []
    kb = _shared.knowledge(args)
    solver = get_solver(args.unsloth_solver)
    if args.file:
        env, target = _spec_from_file(Path(args.file), args, kb)
    else:
        sel, kb = _shared.plan(args)
        notices += list(sel.notices)
        env = specmod.from_selection(sel, None, None)
        target = sel.target
    if args.channel:
        env = replace(env, channels=list(args.channel))
    try:
        solved = solver.solve(env, target, offline=bool(getattr(args, "offline", False)))
    except UnsolvableError as exc:
        raise explain_unsolvable(exc, env, target, kb) from None
    notices += list(solved.extra.get("notes", ()))
    if target.cuda_source == FROM_SOLVE:
        solved_target = cuda_from_solve(solved, target)
        if solved_target is not target:
            target = solved_target
            notices.append(
                f"target CUDA {target.cuda}: from {FROM_SOLVE}; --cuda X.Y requires one"
            )
        else:  # a CPU or unrecognised pytorch: validation names it against the default
            target = replace(target, cuda_source="profile default")
    unpinned = list(solved.extra.get("pip_unpinned", ()))
    if unpinned:
        notices.append(
            f"{len(unpinned)} pip requirement(s) are not name==version pins and are kept "
            f"verbatim, not locked: {', '.join(unpinned)}"
        )
    try:
        validate(solved, kb, target=target)
    except ValidationError as exc:
        if not args.file or args.cuda:
            raise
        raise ValidationError(
            exc.message,
            hints=[
                *exc.hints,
                f"the target CUDA was {target.cuda} ({target.cuda_source}); choose it with "
                f"conda unsloth solve -f {args.file} --cuda X.Y",
            ],
            **exc.details,
        ) from None
    return solved, target, notices


def render(solved: SolvedEnv, fmt: str, source: str | None = None) -> str:
    if fmt == "explicit":
        from ..exports import explicit

        return explicit.export(solved)
    if fmt == "conda-lock":
        from ..exports import condalock

        return condalock.export(solved, sources=(source or "conda-unsloth plan",))
    from ..exports import environment

    return environment.export(solved)


def to_json(
    solved: SolvedEnv,
    target: Target,
    lock: Path | None,
    fmt: str | None,
    notices: list[str] | None = None,
) -> dict[str, Any]:
    from ..redact import redact_url

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
        "packages": [rec(r) for r in solved.records],
        "pip": [{"name": p.name, "version": p.version} for p in solved.pip],
        "pip_unpinned": list(solved.extra.get("pip_unpinned", ())),
        "lock": {"file": str(lock), "format": fmt} if lock else None,
        "notices": list(notices or ()),
    }


def execute(args: argparse.Namespace) -> int:
    import sys

    from .. import spec as specmod
    from . import _shared

    lock = Path(args.lock) if args.lock else None
    fmt = lock_format(lock, args.lock_format) if lock else None
    if lock is not None:
        check_lock_path(lock, Path(args.file) if args.file else None, bool(args.force))
    solved, target, notices = solve(args)
    if lock is not None and fmt is not None:
        specmod.write_atomic(lock, render(solved, fmt, args.file))
    if args.json:
        _shared.emit_json(to_json(solved, target, lock, fmt, notices))
        return 0
    if not args.quiet:
        for n in notices:
            print(f"notice: {n}", file=sys.stderr)
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
    print("validation: passed (CUDA pytorch, matching xformers and triton, no known issue)")
    if lock is not None:
        print(f"wrote {lock} ({fmt})")
    return 0

"""`conda unsloth create`: plan → solve (or read a lock) → confirm → install → pip stage →
marker → verify → report. Nothing is lost: see conda_unsloth/install.py."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _common

if TYPE_CHECKING:
    from ..knowledge import Knowledge
    from ..select import Target
    from ..solvers.base import SolvedEnv

DESCRIPTION = """\
Plan the stack for your GPU (see `env`), solve it, install it, install Unsloth's pip companions
so that pip can never replace conda's torch, then verify the env on the GPU.

An existing environment is never touched without --force, and then only replaced after the new
one was built and verified. A failed or interrupted create leaves nothing behind.

examples:
  conda unsloth create -n unsloth
  conda unsloth create -p /apps/unsloth/2024.12 --cuda 12.1 --gpu-arch 8.0 --no-verify --yes
  conda unsloth create -n unsloth --from-lock unsloth.conda-lock.yml
  conda-unsloth create -p ./env -c file:///srv/channel --offline --pip-find-links ./wheels --yes
"""


def configure_parser(p: argparse.ArgumentParser, conda: bool = False) -> None:
    _common.add_prefix_options(p, conda)
    src = p.add_argument_group("what to install")
    src.add_argument(
        "-f",
        "--file",
        metavar="ENV_YML",
        help="create from an environment.yml "
        "(e.g. one written by `conda unsloth env`) instead of planning",
    )
    src.add_argument(
        "--from-lock",
        metavar="LOCK",
        help="install exactly this lock (explicit or "
        "conda-lock), no solve; every package's sha256 is checked",
    )
    src.add_argument(
        "--solver",
        choices=("rattler", "libmamba"),
        dest="unsloth_solver",
        help="solver backend (default: libmamba inside conda, rattler standalone)",
    )
    _common.add_target_options(p)
    _common.add_channel_options(p, conda)
    b = p.add_argument_group("build")
    b.add_argument(
        "--force",
        action="store_true",
        help="replace an existing environment, only after the new one was built and verified",
    )
    b.add_argument(
        "--keep-failed",
        action="store_true",
        help="keep a failed env for inspection (marked failed)",
    )
    b.add_argument(
        "--no-verify",
        action="store_true",
        help="skip the GPU verification (e.g. on a "
        "login node; run `conda unsloth verify --sbatch` later)",
    )
    b.add_argument(
        "--offline",
        action="store_true",
        help="use only local channels, caches and --pip-find-links wheels",
    )
    b.add_argument(
        "--pip-find-links",
        metavar="DIR",
        action="append",
        default=[],
        help="local wheel directory for the pip stage (repeatable; implies no index)",
    )
    b.add_argument("--pip-index-url", metavar="URL", help="PyPI mirror for the pip stage")
    if not conda:
        _common.add_output_options(p, conda=False)
    else:
        from conda.cli.helpers import add_output_and_prompt_options

        add_output_and_prompt_options(p)


def _peak_rss_mb() -> float:
    """Peak resident memory so far of this process and of its finished children (pip), MB."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, kids) / 1024, 1)


def _progress(args: argparse.Namespace) -> Any:
    import sys

    quiet = args.json or getattr(args, "quiet", False)

    def say(msg: str) -> None:
        if not quiet:
            print(f"==> {msg}", file=sys.stderr, flush=True)

    return say


def _target_for_file(args: argparse.Namespace, kb: Knowledge, channels: list[str]) -> Target:
    from ..select import Request, resolve_target
    from . import _shared

    profile = args.profile or ("conda-forge" if channels[:1] == ["conda-forge"] else "pytorch")
    req = Request(
        profile=profile,
        cuda=args.cuda,
        gpu_archs=tuple(args.gpu_arch or ()),
        platform=args.platform,
    )
    target, _ = resolve_target(req, kb.profiles[profile], _shared.host(), kb)
    return target


def _constraints(solved: SolvedEnv, extra: list[str]) -> list[str]:
    """Pin every Python distribution conda installed to conda's version."""
    names = {"pytorch": "torch", "torchtriton": "triton"}
    out = dict.fromkeys(extra)
    for r in solved.records:
        if r.name == "python" or not any(d.split()[0] == "python" for d in r.depends):
            continue
        out[f"{names.get(r.name, r.name)}=={r.version}"] = None
    return list(out)


def execute(args: argparse.Namespace) -> int:
    from .. import install, marker, prefixtx
    from .. import prefix as prefixmod
    from .. import spec as specmod
    from ..errors import UsageError
    from ..solvers import get_solver
    from ..validate import validate
    from . import _shared

    say = _progress(args)
    t_start = time.monotonic()
    seconds: dict[str, float] = {}
    peak_mb: dict[str, float] = {}
    prefix = prefixmod.new_prefix(args.name, args.prefix)
    if prefixtx.pending(prefix):
        if args.dry_run:
            say(f"an earlier create of {prefix} was killed; a real run will finish its clean-up")
        else:
            prefixtx.recover(prefix, say)
    replacing = prefixtx.check_target(prefix, args.force)
    if args.from_lock and args.file:
        raise UsageError("give either -f ENV_YML or --from-lock LOCK, not both")
    kb = _shared.knowledge(args)
    selection = None
    request: dict[str, Any] = {
        k: getattr(args, k)
        for k in (
            "profile",
            "cuda",
            "python",
            "torch",
            "xformers",
            "unsloth",
            "file",
            "from_lock",
            "channel",
        )
        if getattr(args, k, None)
    }

    t0 = time.monotonic()
    if args.from_lock:
        from ..exports.lockread import read_lock

        say(f"reading lock {args.from_lock}")
        solved = read_lock(Path(args.from_lock), platform=args.platform or "linux-64")
        install.verify_local_hashes(list(solved.records))
        target = None
    else:
        if args.file:
            env_spec = specmod.read(Path(args.file))
            target = _target_for_file(args, kb, env_spec.channels)
        else:
            selection, _ = _shared.plan(args)
            target = selection.target
            env_spec = specmod.from_selection(selection, args.name, None)
            if not args.quiet and not args.json:
                _shared.notices(selection, False)
        if args.channel:
            env_spec.channels = list(args.channel)
        say(f"solving for {target.platform}, CUDA {target.cuda} ({', '.join(env_spec.channels)})")
        solver = get_solver(args.unsloth_solver)
        solved = solver.solve(env_spec, target, offline=args.offline)
        validate(solved, kb, target=target)
    seconds["solve"] = time.monotonic() - t0
    peak_mb["solve"] = _peak_rss_mb()

    locked_pip: list[Any] | None = None
    if args.from_lock:
        unhashed = list(solved.extra.get("pip_requirements", []))
        if unhashed:  # the lock pins pip packages without wheel hashes: resolve them (and the
            # hashed ones) against conda's pins, as a plan would
            pip_reqs = [p.requirement() for p in solved.pip] + unhashed
            say(
                "the lock's pip part has no wheel hashes: resolving it with pip against conda's pins"
            )
        else:
            pip_reqs, locked_pip = [], list(solved.pip)
    else:
        pip_reqs = env_spec.pip_requirements()
    constraints = _constraints(
        solved, [] if args.from_lock else [d.spec for d in env_spec.pip_constraints]
    )
    pip_shown = pip_reqs if locked_pip is None else [p.requirement() for p in locked_pip]
    plan_doc: dict[str, Any] = {
        "prefix": str(prefix),
        "replaces_existing": replacing,
        "conda": [r.to_json() for r in solved.records],
        "pip": pip_shown,
        "solver": solved.solver,
    }
    if not args.json and not args.quiet:
        _shared.table(
            [(r.name, r.version, r.build, r.channel_name) for r in solved.records],
            ("package", "version", "build", "channel"),
        )
        for req in pip_shown:
            print(f"pip  {req}")
        print(
            f"prefix: {prefix}"
            + (" (replacing the existing env after verification)" if replacing else "")
        )
    if args.dry_run:
        if args.json:
            _shared.emit_json({"dry_run": True, **plan_doc})
        return 0
    if not args.yes:
        if not install.stdin_is_interactive():
            raise UsageError(
                "not a terminal and no --yes: nothing was changed",
                hints=["add --yes to create without asking"],
            )
        answer = input("Proceed ([y]/n)? ").strip().lower()
        if answer not in ("", "y", "yes"):
            print("nothing was changed")
            return 1

    opts = install.CreateOptions(
        prefix=prefix,
        force=args.force,
        keep_failed=args.keep_failed,
        offline=args.offline,
        pip_find_links=tuple(args.pip_find_links),
        pip_index_url=args.pip_index_url,
        require_hashes=locked_pip is not None,
        progress=say,
    )
    verification: dict[str, Any] | None = None
    base_marker = {
        "request": request,
        "target": target.to_json() if target else None,
        "profile": selection.profile.name if selection else None,
        "knowledge_revision": kb.revision,
        "solver": solved.solver,
        "lock_digest": install.lock_digest(solved),
        "channels": list(solved.channels),
    }

    def mark_failed(exc: BaseException) -> None:
        marker.write(
            prefix,
            {
                **base_marker,
                "status": "failed",
                "failure": install.describe_failure(exc),
                "created": install.now(),
            },
        )

    with (
        prefixtx.prefix_lock(prefix),
        prefixtx.signals_raise(),
        _same_target(prefix, args.force, replacing),
        prefixtx.transaction(prefix, replacing, args.keep_failed, mark_failed, say),
    ):
        t0 = time.monotonic()
        say(f"installing {len(solved.records)} conda packages into {prefix}")
        install.install_records(
            list(solved.records),
            prefix,
            None,
            solved.platform,
            show_progress=sys.stderr.isatty() and not (args.json or args.quiet),
        )
        seconds["install"] = time.monotonic() - t0
        peak_mb["install"] = _peak_rss_mb()
        t0 = time.monotonic()
        pip_installed: list[Any] = []
        if pip_reqs or locked_pip:
            say("pip stage (--no-deps, conda's packages pinned)")
            pip_installed = install.pip_stage(
                prefix,
                pip_reqs,
                constraints,
                opts,
                locked=locked_pip,
            )
            install.post_pip_checks(prefix)
        seconds["pip"] = time.monotonic() - t0
        peak_mb["pip"] = _peak_rss_mb()
        marker_doc = {
            **base_marker,
            "status": "built",
            "created": install.now(),
            "pip": [
                {"name": p.name, "version": p.version, "url": p.url, "sha256": p.sha256}
                for p in pip_installed
            ],
        }
        marker.write(prefix, marker_doc)
        t0 = time.monotonic()
        verification = _verify(args, prefix, target, say)
        seconds["verify"] = time.monotonic() - t0
        peak_mb["verify"] = _peak_rss_mb()
        marker.write(prefix, {**marker_doc, "status": "ok", "verification": verification})
    seconds["total"] = time.monotonic() - t_start
    result = {
        "prefix": str(prefix),
        "status": "ok",
        "replaced_existing": replacing,
        "conda_packages": len(solved.records),
        "pip_packages": [f"{p.name}=={p.version}" for p in pip_installed],
        "verification": verification,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "peak_rss_mb": peak_mb,
        "marker": str(marker.path_for(prefix)),
    }
    if args.json:
        _shared.emit_json(result)
    else:
        verdict = verification["verdict"] if verification else "skipped"
        print(
            f"created {prefix} ({len(solved.records)} conda + {len(pip_installed)} pip packages, "
            f"verification: {verdict}) in {seconds['total']:.1f} s"
        )
        name = args.name or str(prefix)
        print(f"next: conda activate {name}")
    return 0


@contextlib.contextmanager
def _same_target(prefix: Path, force: bool, replacing: bool) -> Iterator[None]:
    """Under the lock, the prefix must still be what we planned against (another create may
    have built it while we solved or asked)."""
    from .. import prefixtx
    from ..errors import PrefixError

    if prefixtx.check_target(prefix, force) != replacing:
        raise PrefixError(f"{prefix} changed while this create was planning; nothing was changed")
    yield


def _verify(
    args: argparse.Namespace, prefix: Path, target: Target | None, say: Any
) -> dict[str, Any]:
    """Run the post-install GPU verification in the new env; a failed required check fails the
    create (which then rolls back)."""
    from ..install import now
    from . import _shared

    if args.no_verify:
        return {"verdict": "skipped", "reason": "--no-verify", "time": now()}
    host = _shared.host()
    if not host.gpus and host.driver_cuda is None:
        say("no GPU on this host: verification skipped (run `conda unsloth verify` on a GPU node)")
        return {"verdict": "skipped", "reason": "no GPU visible on this host", "time": now()}
    from ..errors import VerifyError
    from ..exports.slurm import default_report
    from ..spec import write_atomic
    from ..verify import report as reportmod
    from ..verify import run_verification

    say("verifying on the GPU")
    report = run_verification(prefix, expect_cuda=target.cuda if target else None)
    report_file = default_report(prefix)
    write_atomic(report_file, reportmod.dumps(report))
    summary = reportmod.marker_record(report, report_file)
    if not report.ok:
        raise VerifyError(
            "verification failed: " + ", ".join(summary["failed"]),
            hints=[
                f"conda unsloth verify -p {prefix} shows each check and its fix",
                "--keep-failed keeps the env for inspection",
            ],
        )
    return summary

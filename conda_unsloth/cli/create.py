"""`conda unsloth create`: plan → solve (or read a lock) → confirm → install → pip stage →
marker → verify → report. Nothing is lost: see conda_unsloth/install.py."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _common

if TYPE_CHECKING:
    from ..pipeline import Built, Prepared
    from ..runtime import Runtime

DESCRIPTION = """\
Plan the stack for your GPU (see `env`), solve it, install it, install Unsloth's pip companions
so that pip can never replace conda's torch, then verify the env on the GPU.

An existing environment is never touched without --force, and then only replaced after the new
one was built and verified. A failed or interrupted create leaves nothing behind.

examples:
  conda unsloth create -n unsloth
  conda unsloth create -p /apps/unsloth/2024.12 --cuda 12.1 --gpu-arch 8.0 --no-verify --yes
  conda unsloth create -n unsloth --from-lock unsloth.conda-lock.yml
  conda unsloth create -p /apps/unsloth/2024.12 --from-bundle unsloth-2024.12.tar
  conda-unsloth create -p ./env -c file:///srv/channel --offline --pip-find-links ./wheels --yes
  conda-unsloth create -n unsloth --installer micromamba
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
    src.add_argument(  # --- bundle (exports/bundle.py)
        "--from-bundle",
        metavar="FILE",
        help="install an air-gapped bundle (`conda unsloth export --format bundle`): no "
        "network, no solve; every file's sha256 is checked",
    )
    src.add_argument(
        "--solver",
        choices=("rattler", "libmamba", "micromamba"),
        dest="unsloth_solver",
        help="solver backend (default: libmamba inside conda, rattler standalone; micromamba: "
        "libmamba through micromamba, the default with --installer micromamba)",
    )
    # issue 21: micromamba as installer (the choice itself is runtime.Runtime.with_installer)
    src.add_argument(
        "--installer",
        choices=("rattler", "micromamba", "conda"),
        dest="unsloth_installer",
        help="what installs the conda packages: conda (its transaction; inside conda, the "
        "default), rattler (py-rattler; standalone default) or micromamba ($MAMBA_EXE or "
        "PATH; standalone default when there is micromamba and no conda), which then also "
        "solves",
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
    b.add_argument(
        "--pip-index-url",
        metavar="URL",
        help="PyPI mirror for the pip stage (default: PIP_INDEX_URL, else PyPI)",
    )
    b.add_argument(
        "--pip-installer",
        choices=("auto", "uv", "pip"),
        default="auto",
        help="what installs the pip companions: uv (from the env, PATH or the uv Python "
        "package) or the env's pip; auto: uv when there is one (default)",
    )
    _common.add_output_options(p, conda)


def _peak_rss_mb() -> float:
    """Peak resident memory so far, MB: the larger of this process's own high-water mark
    (VmHWM, which exec resets: ``ru_maxrss`` would keep whatever the process that started us
    held) and the largest finished child's (uv/pip, rattler). Not the sum of the tree (the
    benchmarks measure that from outside)."""
    import resource

    own = None
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    own = int(line.split()[1])  # kB
    except (OSError, ValueError, IndexError):
        own = None
    if own is None:  # no /proc (macOS reports bytes there; Linux kB)
        raw = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        own = raw // 1024 if sys.platform == "darwin" else raw
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if sys.platform == "darwin":
        kids //= 1024
    return round(max(own, kids) / 1024, 1)


REQUEST_KEYS = (
    "profile",
    "cuda",
    "python",
    "torch",
    "xformers",
    "unsloth",
    "file",
    "from_lock",
    "from_bundle",
    "channel",
    "unsloth_installer",
)


def _planning_flags(args: argparse.Namespace) -> list[str]:
    """The planning flags this command line gives (for pipeline.check_inputs)."""
    dests = {
        "--profile": "profile", "--cuda": "cuda", "--python": "python", "--torch": "torch",
        "--xformers": "xformers", "--unsloth": "unsloth", "--gpu-arch": "gpu_arch",
        "-c": "channel", "--solver": "unsloth_solver",
    }  # fmt: skip
    return [flag for flag, dest in dests.items() if getattr(args, dest, None) not in (None, [])]


def execute(args: argparse.Namespace, runtime: Runtime) -> int:
    if args.from_bundle is None:
        return _execute(args, runtime, None)
    # --- bundle: checked and extracted for as long as the create runs; no network at all
    from .. import pipeline
    from .. import prefix as prefixmod

    pipeline.check_inputs(args.file, args.from_lock, args.from_bundle, _planning_flags(args))
    prefixmod.check_target(
        prefixmod.new_prefix(args.name, args.prefix, runtime.envs_dirs()),
        args.force,
        runtime.roots(),
    )
    from ..exports import bundle

    # extracted into a temp dir for as long as the create runs, every file checked against its
    # sha256: the Solution, the wheelhouse for the pip stage and the bundle channel's runtime
    with bundle.opened(
        Path(args.from_bundle).expanduser().absolute(), args.platform or "linux-64"
    ) as opened:
        args.offline = True
        args.pip_find_links = [*args.pip_find_links, str(opened.wheels)]
        return _execute(args, opened.runtime(runtime), opened)


def _execute(args: argparse.Namespace, runtime: Runtime, opened: Any) -> int:
    from .. import pipeline, prefixtx, tempdirs
    from .. import prefix as prefixmod
    from ..install import PipOptions
    from . import _shared

    say = _shared.progress(args)
    t_start = time.monotonic()
    if not runtime.conda or args.unsloth_installer not in (None, "conda"):  # issue 21
        runtime = runtime.with_installer(args.unsloth_installer, args.unsloth_solver)
    pipeline.check_inputs(args.file, args.from_lock, args.from_bundle, _planning_flags(args))
    prefix = prefixmod.new_prefix(args.name, args.prefix, runtime.envs_dirs())
    if prefixmod.pending(prefix):
        if args.dry_run:
            say(f"an earlier create of {prefix} was killed; a real run will finish its clean-up")
        else:
            prefixtx.recover(prefix, say)
    if not args.dry_run:
        tempdirs.sweep_stale_tempdirs()  # what killed creates left in $TMPDIR
    prefixmod.check_target(prefix, args.force, runtime.roots())
    kb = _shared.knowledge(args)
    host = _shared.host()
    t0 = time.monotonic()
    plan = None
    if opened is not None:  # --from-bundle
        say(f"read bundle {args.from_bundle}: {len(opened.solution.solved.records)} packages")
        solution = opened.solution
    elif args.from_lock:
        say(f"reading lock {args.from_lock}")
        solution = pipeline.read_lock(Path(args.from_lock), args.platform or "linux-64")
    else:
        if args.file:
            plan = pipeline.plan_file(Path(args.file), host, kb, **_shared.target_flags(args))
        else:
            plan = pipeline.plan_request(_shared.request(args), host, kb, args.name)
        if not args.quiet and not args.json:
            _shared.print_notices(plan.notices)
        channels = list(args.channel) if args.channel else list(plan.spec.channels)
        say(f"solving for {plan.target.platform}, CUDA {plan.target.cuda} ({', '.join(channels)})")
        solution = pipeline.solve(
            plan,
            runtime.solver(args.unsloth_solver),
            kb,
            offline=args.offline,
            channels=args.channel,
        )
    seconds = {"solve": time.monotonic() - t0}
    peak = {"solve": _peak_rss_mb()}
    prep = pipeline.prepare_create(
        prefix, args.force, solution, plan, runtime.roots(), offline=bool(args.offline)
    )
    for note in prep.notices:
        say(note)
    if not args.json and not args.quiet:
        _print_plan(prep)
    if args.dry_run:
        if args.json:
            _shared.emit_json({"dry_run": True, **prep.to_json()})
        return 0
    if not _confirmed(args, runtime):
        print("nothing was changed")
        return 1
    opts = pipeline.BuildOptions(
        force=args.force,
        keep_failed=args.keep_failed,
        verify=not args.no_verify,
        pip=PipOptions(
            tuple(args.pip_find_links),
            args.pip_index_url,
            offline=args.offline,
            installer=args.pip_installer,
        ),
        show_progress=runtime.conda and not (args.json or args.quiet),
        request={k: getattr(args, k) for k in REQUEST_KEYS if getattr(args, k, None)},
    )
    built = pipeline.build(
        prep, opts, runtime, kb, host, say=say, step=_shared.step(args, runtime)
    )
    seconds.update(built.seconds)
    seconds["total"] = time.monotonic() - t_start
    peak["total"] = _peak_rss_mb()
    _report(args, built, seconds, peak, runtime)
    return 0


def _print_plan(prep: Prepared) -> None:
    from ..units import human_size
    from . import _shared

    solved = prep.solution.solved
    _shared.table(
        [
            (
                r.name,
                r.version,
                r.build,
                r.channel_name,
                human_size(r.size) if r.size else "?",
            )
            for r in solved.records
        ],
        ("package", "version", "build", "channel", "size"),
    )
    total = sum(r.size or 0 for r in solved.records)
    unknown = sum(1 for r in solved.records if not r.size)
    _shared.echo(
        f"conda: {len(solved.records)} packages, up to {human_size(total)} to download "
        "(cached packages are not downloaded again)"
        + (f"; {unknown} without a recorded size" if unknown else "")
    )
    if prep.pip_shown:
        from ..redact import redact_text

        locked = prep.locked_pip is not None
        rows: list[tuple[str, ...]] = [(redact_text(r), "pip") for r in prep.pip_shown]
        _shared.table(rows, ("requirement", "installer"))
        _shared.echo(
            f"pip: {len(prep.pip_shown)} "
            + (
                "locked wheels (hashes checked)"
                if locked
                else "requirements; their dependencies are resolved at the pip stage, "
                "against conda's pins"
            )
        )
    _shared.echo(
        f"prefix: {prep.prefix}"
        + (" (replacing the existing env after verification)" if prep.replacing else "")
    )


def _confirmed(args: argparse.Namespace, runtime: Runtime) -> bool:
    from ..errors import UsageError
    from ..install import stdin_is_interactive

    if args.yes or args.json:  # as conda: --json never prompts
        return True
    if not stdin_is_interactive():
        raise UsageError(
            "not a terminal and no --yes: nothing was changed",
            hints=["add --yes to create without asking"],
        )
    return input("Proceed ([y]/n)? ").strip().lower() in ("", "y", "yes")


def _report(
    args: argparse.Namespace,
    built: Built,
    seconds: dict[str, float],
    peak: dict[str, float],
    runtime: Runtime,
) -> None:
    from . import _shared

    if args.json:
        _shared.emit_json(
            {
                "prefix": str(built.prefix),
                "status": "ok",
                "replaced_existing": built.replaced,
                "conda_packages": built.conda_packages,
                "pip_packages": [f"{p.name}=={p.version}" for p in built.pip],
                "verification": built.verification,
                "seconds": {k: round(v, 3) for k, v in seconds.items()},
                "peak_rss_mb": peak,
                "marker": str(built.marker),
            }
        )
        return
    verdict = built.verification.get("verdict", "skipped")
    requested = len(built.pip_requested)
    extra = len(built.pip) - requested
    pip = f"{len(built.pip)} pip packages" + (
        f" ({requested} requested + {extra} {'dependency' if extra == 1 else 'dependencies'})"
        if extra > 0 and requested
        else ""
    )
    _shared.echo(
        f"created {built.prefix} ({built.conda_packages} conda + {pip}, verification: "
        f"{verdict}) in {seconds['total']:.1f} s"
    )
    _shared.echo(f"next: {_shared.activate_hint(args.name, built.prefix, runtime)}")

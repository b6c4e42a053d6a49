"""The pipeline, stage by stage, as functions with typed results:

```
plan (a request, or an environment file)  -> Plan       (spec + target)
solve + validate (or read a lock)         -> Solution   (records + what validation checked)
prepare the create                        -> Prepared   (the pip part, constraints, the prefix)
build: install -> pip stage -> mark -> verify, inside prefixtx.transaction -> Built
```

The verbs in ``cli/`` parse arguments, call these and render what they return; the
:class:`~conda_unsloth.runtime.Runtime` brings what differs inside conda (solver, installer).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import PrefixError, UsageError, VerifyError
from .target import CudaFrom, Target

if TYPE_CHECKING:
    from .host import Host
    from .install import PipOptions
    from .knowledge import Knowledge
    from .runtime import Runtime
    from .select import Request, Selection
    from .solvers.base import PipPackage, SolvedEnv, Solver
    from .spec import EnvSpec

Progress = Callable[[str], None]
# a long step: a context manager that shows ``msg`` while the step runs (the CLI's spinner)
Step = Callable[[str], "contextlib.AbstractContextManager[None]"]


def _quiet(msg: str) -> None:
    return None


def announce(say: Progress) -> Step:
    """A Step that only says what starts (no spinner): for logs, --quiet, and inside conda,
    whose own progress lines must not interleave with a spinner."""

    @contextlib.contextmanager
    def step(msg: str) -> Iterator[None]:
        say(msg)
        yield

    return step


# ----------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class Plan:
    """What to solve: the environment spec and the target it is for."""

    spec: EnvSpec
    target: Target
    profile: str
    selection: Selection | None = None  # None when the spec came from a file
    source: str | None = None  # the environment file, when there is one
    notices: tuple[str, ...] = ()


def plan_request(req: Request, host: Host, kb: Knowledge, name: str | None = None) -> Plan:
    """A plan from the command line's request (the knowledge base decides every pin)."""
    from . import spec as specmod
    from .select import select

    sel = select(req, host, kb)
    env = specmod.from_selection(sel, name, None)
    return Plan(env, sel.target, sel.profile.name, sel, None, sel.notices)


def plan_file(
    path: Path,
    host: Host,
    kb: Knowledge,
    *,
    profile: str | None = None,
    cuda: str | None = None,
    archs: tuple[str, ...] = (),
    platform: str | None = None,
) -> Plan:
    """A plan from an environment file: its pins are read once (``target.target_from_spec``);
    ``--cuda``/``--profile`` given on the command line win over them."""
    from . import spec as specmod
    from .target import target_from_spec

    env = specmod.read(path)
    target, prof, _pins, notices = target_from_spec(
        env, path.name, host, kb, profile=profile, cuda=cuda, archs=archs, platform=platform
    )
    return Plan(env, target, prof, None, str(path), tuple(notices))


# ----------------------------------------------------------------------------- solve


@dataclass(frozen=True)
class Solution:
    """A solved (or locked) environment and what validation checked on it."""

    solved: SolvedEnv
    target: Target | None  # None for a lock: it was validated when it was written
    checked: tuple[str, ...] = ()
    notices: tuple[str, ...] = ()


def solve(
    plan: Plan,
    solver: Solver,
    kb: Knowledge,
    *,
    offline: bool = False,
    channels: list[str] | None = None,
) -> Solution:
    """Solve ``plan`` for its target (``channels`` replace the spec's) and validate the
    result. Raises UnsolvableError (with our hints) or ValidationError."""
    from .errors import UnsolvableError
    from .validate import ValidationError, explain_unsolvable, validate

    env = replace(plan.spec, channels=list(channels)) if channels else plan.spec
    target = plan.target
    notices = list(plan.notices)
    try:
        solved = solver.solve(env, target, offline=offline)
    except UnsolvableError as exc:
        raise explain_unsolvable(exc, env, target, kb, plan.profile) from None
    notices += list(solved.extra.get("notes", ()))
    if target.cuda_from is CudaFrom.SOLVE:
        cuda = solved_cuda(solved)
        if cuda is not None:
            target = target.with_solved_cuda(cuda)
            notices.append(f"target CUDA {cuda}: from the solved pytorch ({target.why})")
    unpinned = list(solved.extra.get("pip_unpinned", ()))
    if unpinned:
        notices.append(
            f"{len(unpinned)} pip requirement(s) are not name==version pins and are kept "
            f"verbatim, not locked: {', '.join(unpinned)}"
        )
    try:
        checked = validate(solved, kb, target)
    except ValidationError as exc:
        if plan.source is None or target.cuda_from is CudaFrom.FLAG:
            raise
        raise ValidationError(
            exc.message,
            hints=[
                *exc.hints,
                f"the target CUDA was {target.cuda} ({target.cuda_source}); choose it with "
                f"conda unsloth solve -f {plan.source} --cuda X.Y",
            ],
            **exc.details,
        ) from None
    return Solution(solved, target, checked, tuple(notices))


def solved_cuda(solved: SolvedEnv) -> str | None:
    """The CUDA of the solved pytorch (None: none, a CPU build or an unknown one)."""
    from .knowledge.packages import torch_cuda

    pt = solved.record("pytorch")
    return torch_cuda(pt.to_package()) if pt is not None else None


def read_lock(path: Path, platform: str) -> Solution:
    """A lock file as a Solution: no solve; every local package's sha256 is checked now."""
    from .exports.lockread import read_lock as read
    from .install import verify_local_hashes

    solved = read(path, platform=platform)
    verify_local_hashes(list(solved.records))
    return Solution(solved, None, ("every package file matches its sha256 in the lock",))


# ----------------------------------------------------------------------------- create


@dataclass(frozen=True)
class Prepared:
    """A create, decided and not yet begun: what the user is asked to confirm."""

    prefix: Path
    replacing: bool
    solution: Solution
    plan: Plan | None  # None for --from-lock
    pip_requirements: tuple[str, ...]  # to resolve with pip (empty when the lock has hashes)
    locked_pip: tuple[PipPackage, ...] | None  # the lock's hashed wheels, installed as they are
    constraints: tuple[str, ...]
    notices: tuple[str, ...] = ()

    @property
    def pip_shown(self) -> list[str]:
        if self.locked_pip is None:
            return list(self.pip_requirements)
        return [p.requirement() for p in self.locked_pip]

    def to_json(self) -> dict[str, Any]:
        solved = self.solution.solved
        target = self.solution.target
        return {
            "prefix": str(self.prefix),
            "replaces_existing": self.replacing,
            "target": target.to_json() if target else None,
            "checked": list(self.solution.checked),
            "conda": [r.to_json() for r in solved.records],
            "pip": self.pip_shown,
            "solver": solved.solver,
        }


def constraints_for(solved: SolvedEnv, extra: list[str]) -> list[str]:
    """Pin every Python distribution conda installed to conda's version."""
    names = {"pytorch": "torch", "torchtriton": "triton"}
    out = dict.fromkeys(extra)
    for r in solved.records:
        if r.name == "python" or not any(d.split()[0] == "python" for d in r.depends):
            continue
        out[f"{names.get(r.name, r.name)}=={r.version}"] = None
    return list(out)


def _usable_url(url: str | None, offline: bool) -> bool:
    """Whether a lock's wheel is installed from the URL it records: a ``file://`` URL when that
    file is here (a lock written on another machine names its files), any other only online."""
    if not url:
        return False
    if url[:7].lower() == "file://":
        from .install import local_path

        return local_path(url).is_file()
    return not offline


def prepare_create(
    prefix: Path,
    force: bool,
    solution: Solution,
    plan: Plan | None,
    roots: list[Path],
    offline: bool = False,
) -> Prepared:
    """Decide the pip part of a create and check the prefix can be created (or, with
    ``force``, replaced; never one of ``roots``). A lock's hashed wheels come from the URLs it
    records (:func:`_usable_url`); the rest come from the wheel folders by name, version and
    sha256 (a wheel found nowhere is refused before anything is built)."""
    from . import prefix as prefixmod

    replacing = prefixmod.check_target(prefix, force, roots)
    solved = solution.solved
    locked: tuple[PipPackage, ...] | None = None
    notices: list[str] = []
    if plan is None:  # a lock
        unhashed = list(solved.extra.get("pip_requirements", []))
        if unhashed:  # the lock pins pip packages without wheel hashes: resolve them (and the
            # hashed ones) against conda's pins, as a plan would
            reqs = tuple([p.requirement() for p in solved.pip] + unhashed)
            notices.append(
                "the lock's pip part has no wheel hashes: resolving it with pip against "
                "conda's pins"
            )
        else:  # each wheel from the URL the lock records, checked against its sha256
            reqs = ()
            locked = tuple(
                replace(p, direct=True) if _usable_url(p.url, offline) else p for p in solved.pip
            )
        constraints = constraints_for(solved, [])
    else:
        reqs = tuple(plan.spec.pip_requirements())
        constraints = constraints_for(solved, [d.spec for d in plan.spec.pip_constraints])
    return Prepared(
        prefix, replacing, solution, plan, reqs, locked, tuple(constraints), tuple(notices)
    )


@dataclass(frozen=True)
class Built:
    prefix: Path
    replaced: bool
    conda_packages: int
    pip: tuple[PipPackage, ...]
    verification: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)
    marker: Path | None = None
    pip_requested: tuple[str, ...] = ()  # the requirements asked for (their closure is `pip`)


def _pip_options() -> PipOptions:
    from .install import PipOptions  # the install module only when a create builds

    return PipOptions()


@dataclass(frozen=True)
class BuildOptions:
    force: bool = False
    keep_failed: bool = False
    verify: bool = True
    pip: PipOptions = field(default_factory=lambda: _pip_options())
    show_progress: bool = False  # conda's own progress output (inside conda)
    request: dict[str, Any] = field(default_factory=dict)  # what was asked, for the marker


def build(
    prep: Prepared,
    opts: BuildOptions,
    runtime: Runtime,
    kb: Knowledge,
    host: Host,
    *,
    say: Progress = _quiet,
    step: Step | None = None,
) -> Built:
    """Install, run the pip stage, write the marker and verify, all inside the prefix's
    transaction (lock, journal, rollback): a failure or an interrupt leaves nothing behind
    (``keep_failed`` keeps it, marked failed), and an env being replaced is put back."""
    from . import install, marker, prefixtx, signals

    step = step or announce(say)
    prefix, solved = prep.prefix, prep.solution.solved
    target = prep.solution.target
    seconds: dict[str, float] = {}
    selection = prep.plan.selection if prep.plan else None
    base_marker = {
        "request": opts.request,
        "target": target.to_json() if target else None,
        "profile": prep.plan.profile if prep.plan else None,
        "knowledge_revision": kb.revision,
        "solver": solved.solver,
        "lock_digest": install.lock_digest(solved),
        "channels": list(solved.channels),
    }
    if selection is not None:
        base_marker["profile"] = selection.profile.name

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

    # before anything is built (issue 16): every package file is the one its record
    # describes; offline, nothing would be downloaded (no socket to anything but file://)
    install.check_package_files(solved.records)
    if opts.pip.offline and not runtime.conda:  # inside conda, --offline is conda's offline
        install.check_offline(solved.records, prefix)
    if prep.pip_requirements or prep.locked_pip:
        own_urls = prep.locked_pip is not None and all(p.direct and p.url for p in prep.locked_pip)
        install.check_pip_stage(
            opts.pip,
            [r.name for r in solved.records],
            say,
            requirements=[
                *prep.pip_requirements,
                *(p.requirement() for p in prep.locked_pip or ()),
            ],
            locked=prep.locked_pip or (),
            own_urls=own_urls and not prep.pip_requirements,
        )
    with (
        prefixtx.prefix_lock(prefix),
        signals.signals_raise(),
        _same_target(prefix, opts.force, prep.replacing, runtime.roots()),
        prefixtx.transaction(prefix, prep.replacing, opts.keep_failed, mark_failed, say),
    ):
        t0 = time.monotonic()
        if runtime.installer_name == "rattler":  # its cache, node-local for a network mount
            _cache, moved = install.package_cache_for(prefix)
            if moved:
                say(moved)
        with (
            step(f"installing {len(solved.records)} conda packages into {prefix}"),
            install.offline_scope(opts.pip.offline),
        ):
            runtime.install(list(solved.records), prefix, opts.show_progress)
        seconds["install"] = time.monotonic() - t0
        t0 = time.monotonic()
        pip_installed: list[PipPackage] = []
        if prep.pip_requirements or prep.locked_pip:
            wanted = len(prep.pip_requirements or prep.locked_pip or ())
            with step(f"pip stage: {wanted} requirements (--no-deps, conda's packages pinned)"):
                pip_installed = install.pip_stage(
                    prefix,
                    list(prep.pip_requirements),
                    list(prep.constraints),
                    opts.pip,
                    locked=list(prep.locked_pip) if prep.locked_pip is not None else None,
                    require_hashes=prep.locked_pip is not None,
                    say=say,
                )
                install.post_pip_checks(prefix)
            say(f"pip stage: installed {len(pip_installed)} packages")
        seconds["pip"] = time.monotonic() - t0
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
        verification = verify_new_env(prefix, target, host, opts.verify, runtime, say)
        seconds["verify"] = time.monotonic() - t0
        marker.write(prefix, {**marker_doc, "status": "ok", "verification": verification})
    return Built(
        prefix,
        prep.replacing,
        len(solved.records),
        tuple(pip_installed),
        verification,
        seconds,
        marker.path_for(prefix),
        tuple(prep.pip_shown),
    )


@contextlib.contextmanager
def _same_target(prefix: Path, force: bool, replacing: bool, roots: list[Path]) -> Iterator[None]:
    """Under the lock, the prefix must still be what we planned against (another create may
    have built it while we solved or asked)."""
    from . import prefix as prefixmod

    if prefixmod.check_target(prefix, force, roots) != replacing:
        raise PrefixError(f"{prefix} changed while this create was planning; nothing was changed")
    yield


def verify_new_env(
    prefix: Path,
    target: Target | None,
    host: Host,
    wanted: bool,
    runtime: Runtime,
    say: Progress = _quiet,
) -> dict[str, Any]:
    """The post-install GPU verification: skipped (and recorded as such) with --no-verify or
    when this host has no GPU to run it on (also when CONDA_OVERRIDE_CUDA says the env is for
    another machine); a failed required check raises VerifyError (the create rolls back)."""
    from .install import now

    if not wanted:
        return {"verdict": "skipped", "reason": "--no-verify", "time": now()}
    if not host.gpus:
        reason = "no GPU visible on this host"
        if host.source == "CONDA_OVERRIDE_CUDA" and host.driver_cuda:
            reason = (
                f"building for another machine (CONDA_OVERRIDE_CUDA={host.driver_cuda}) on a "
                "host without a GPU"
            )
        say(f"{reason}: verification skipped (run `{runtime.command} verify` on a GPU node)")
        return {"verdict": "skipped", "reason": reason, "time": now()}
    from .exports.slurm import default_report
    from .outputs import write_atomic
    from .verify import report as reportmod
    from .verify import run_verification

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


# what decides the stack where a create does not plan it: -f decides the versions (the target
# flags still apply: --profile, --cuda, --gpu-arch, --platform), a lock or bundle everything
DECIDED_BY_FILE = ("--python", "--torch", "--xformers", "--unsloth")
DECIDED_BY_LOCK = (*DECIDED_BY_FILE, "--profile", "--cuda", "--gpu-arch", "-c", "--solver")


def check_inputs(
    file: str | None,
    from_lock: str | None,
    from_bundle: str | None = None,
    flags: Sequence[str] = (),
) -> None:
    """One source for a create (``-f``, ``--from-lock`` or ``--from-bundle``; a name given empty
    is refused, never taken as "not given"), and no planning flag (``flags``: those the user
    gave) that this source would silently ignore."""
    pairs = (("-f", file), ("--from-lock", from_lock), ("--from-bundle", from_bundle))
    for flag, value in pairs:
        if value is not None and not value.strip():
            raise UsageError(f"{flag} is empty: give a file name")
    given = [flag for flag, value in pairs if value]
    if len(given) > 1:
        raise UsageError(
            "give one of -f ENV_YML, --from-lock LOCK or --from-bundle FILE, not both "
            f"{given[0]} and {given[1]}"
        )
    if not given:
        return
    decided = DECIDED_BY_FILE if given[0] == "-f" else DECIDED_BY_LOCK
    ignored = [f for f in flags if f in decided]
    if ignored:
        what = "the file pins them" if given[0] == "-f" else "it decides the whole env"
        raise UsageError(
            f"{', '.join(ignored)} do not apply with {given[0]}: {what}",
            hints=[f"leave {', '.join(ignored)} out, or plan instead of {given[0]}"],
        )

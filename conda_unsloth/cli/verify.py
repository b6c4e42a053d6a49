"""`conda unsloth verify`: run the GPU verification probe inside an environment, or write a
Slurm job that runs it on a compute node."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _common

if TYPE_CHECKING:
    import argparse

    from ..runtime import Runtime
    from ..verify.report import VerifyReport

DESCRIPTION = """\
Run the verification probe with the environment's own python (`PREFIX/bin/python -I probe.py`):
torch is one CUDA build of the expected CUDA, the GPU is visible and has kernels in this torch,
matmul in fp32/fp16/bf16 against float64, the xformers bias dispatch under inference_mode (the
0.0.27 "Multiple dispatch failed" bug), the xformers C++/CUDA extension and
memory_efficient_attention within xformers' tolerances, a Triton kernel, a bitsandbytes 4-bit
round trip, and `import unsloth` on CUDA. Each failed check names a known issue and its fix.
The report is stored in PREFIX/conda-meta/conda-unsloth-verify and the verdict in the
env's marker ("partial" when --checks ran only some checks). Exit code 0 only when every
required check passed. Without a usable GPU the GPU checks fail (F18; F5 for a driver that is
too old; F4 for a CPU build of torch).

On a login node without a GPU, --sbatch FILE writes a Slurm job that runs the same
verification on a compute node (submit it with `sbatch FILE`, or add --submit). With
--partitions (or --constraints, --gpu-types) it is one job array, one task per partition (node
feature, GRES type), each writing its own report REPORT.<name>; --submit sends each task to its
target (the array is submitted held, each task moved, then released) and --wait waits for them
and records their reports. --from-report records reports written earlier (several files, a
directory or a glob): each Slurm report goes into the marker's fleet under its partition, with
the GPU, its arch, the driver, every check and the verdict. A job that sees no GPU fails
(gpu.visible, F18): a partition is only verified by a job that found a GPU there.

examples:
  conda unsloth verify -n unsloth
  conda unsloth verify -p /apps/unsloth/2024.9 --json
  conda unsloth verify -n unsloth --checks xformers,seed --expect-cuda 12.1
  conda unsloth verify -p /apps/unsloth/2024.9 --sbatch verify.sbatch --partition gpu --account proj1
  conda unsloth verify -p /apps/unsloth/2024.9 --from-report /apps/unsloth/2024.9/conda-meta/conda-unsloth-verify
  conda unsloth verify -p /apps/unsloth/2024.9 --sbatch fleet.sbatch --partitions v100,a100,h100 --submit --wait
  conda unsloth verify -p /apps/unsloth/2024.9 --from-report /apps/unsloth/2024.9/conda-meta/
"""


def configure_parser(p: argparse.ArgumentParser, conda: bool = False) -> None:
    _common.add_prefix_options(p, conda)
    g = p.add_argument_group("verification")
    g.add_argument(
        "--checks",
        action="append",
        default=[],
        metavar="LIST",
        help="comma-separated checks, id prefixes or groups (repeatable; default: all; "
        "--list-checks shows them)",
    )
    g.add_argument("--list-checks", action="store_true", help="list the checks and exit")
    g.add_argument(
        "--expect-cuda",
        metavar="X.Y",
        help="CUDA version torch must be built for (default: the target recorded in the env's "
        "marker, if any)",
    )
    g.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help="seconds each check may take (default 120; 300 for import unsloth)",
    )
    g.add_argument(
        "--report",
        metavar="FILE",
        help="where to store the JSON report (default PREFIX/conda-meta/conda-unsloth-verify)",
    )
    g.add_argument(
        "--from-report",
        metavar="FILE",
        nargs="+",
        help="do not run the probe: show and record reports written earlier (e.g. by --sbatch): "
        "files, a directory (its conda-unsloth-verify* files) or a quoted glob; a report of "
        "another environment is refused unless --force",
    )
    s = p.add_argument_group("Slurm (run the verification on a compute node)")
    s.add_argument(
        "--sbatch", metavar="FILE", help="write a Slurm batch script instead of running"
    )
    s.add_argument("--partition", metavar="P", help="#SBATCH --partition")
    s.add_argument("--gres", metavar="GRES", help="#SBATCH --gres (default gpu:1)")
    s.add_argument(
        "--time",
        metavar="T",
        help="#SBATCH --time (default: the longest group's per-check timeouts added up, plus "
        "5 minutes; 00:23:00 for all checks)",
    )
    s.add_argument("--account", metavar="A", help="#SBATCH --account")
    s.add_argument("--constraint", metavar="FEATURE", help="#SBATCH --constraint (one feature)")
    fleet = s.add_mutually_exclusive_group()
    fleet.add_argument(
        "--partitions",
        metavar="LIST",
        help="one job array task per partition (e.g. v100,a100,h100), each its own report",
    )
    fleet.add_argument(
        "--constraints",
        metavar="LIST",
        help="one job array task per node feature (--constraint), each its own report",
    )
    fleet.add_argument(
        "--gpu-types",
        metavar="LIST",
        help="one job array task per GRES type (gpu:TYPE:N), each its own report",
    )
    s.add_argument(
        "--submit",
        action="store_true",
        help="submit the script (a fleet: held, each task moved to its target, released) and "
        "print the job id",
    )
    s.add_argument(
        "--wait",
        action="store_true",
        help="with --submit: wait until every task ended, then record their reports",
    )
    s.add_argument(
        "--force",
        action="store_true",
        help="replace FILE even if conda-unsloth did not write it; with --from-report, accept a "
        "report written by another environment's python",
    )
    _common.add_output_options(p, conda)


MAX_TIMEOUT_S = 86_400


def _validate(args: argparse.Namespace) -> list[str]:
    from ..errors import UsageError
    from ..target import parse_cuda
    from ..verify import probe

    if args.expect_cuda is not None:
        args.expect_cuda = parse_cuda(
            args.expect_cuda, "--expect-cuda", what="a CUDA version X.Y (e.g. 12.1)"
        )
    if args.timeout is not None and not 0 < args.timeout <= MAX_TIMEOUT_S:
        raise UsageError(
            f"--timeout must be a positive number of seconds, at most {MAX_TIMEOUT_S} (one "
            f"day), not {args.timeout:g}"
        )
    tokens = [t.strip() for item in args.checks for t in item.split(",") if t.strip()]
    try:
        probe.select(tokens)
    except ValueError as exc:
        raise UsageError(str(exc), hints=["conda unsloth verify --list-checks"]) from None
    # a value given empty (`--sbatch "$JOB"` with JOB unset) is a mistake, never "not given"
    for flag in ("sbatch", "from_report", "report"):
        value = getattr(args, flag, None)
        values = value if isinstance(value, list) else [] if value is None else [value]
        if any(not str(v).strip() for v in values):
            raise UsageError(f"--{flag.replace('_', '-')} is empty: give a file name")
    names = ("partition", "gres", "time", "account", "constraint", "partitions", "constraints")
    given = [n for n in (*names, "gpu_types") if getattr(args, n) is not None]
    for n in given:
        if not str(getattr(args, n)).strip():
            raise UsageError(f"--{n.replace('_', '-')} is empty: give a value or leave it out")
    slurm_only = [f"--{n}" for n in given]
    slurm_only += [f"--{n}" for n in ("submit", "wait") if getattr(args, n)]
    slurm_only = [n.replace("_", "-") for n in slurm_only]
    if slurm_only and args.sbatch is None:
        raise UsageError(f"{', '.join(slurm_only)} only apply with --sbatch FILE")
    if args.sbatch is not None and args.from_report:
        raise UsageError("--sbatch and --from-report do not go together")
    if args.wait and not args.submit:
        raise UsageError("--wait only applies with --submit")
    return tokens


def _expect_cuda(args: argparse.Namespace, prefix: Path) -> str | None:
    if args.expect_cuda:
        return str(args.expect_cuda)
    from .. import marker
    from ..target import is_cuda

    data = marker.read(prefix) or {}
    target = data.get("target")
    cuda = target.get("cuda") if isinstance(target, dict) else None
    return cuda if is_cuda(cuda) else None  # a marker we did not write: no expectation


def _warn(msg: str, quiet: bool) -> None:
    if not quiet:
        print(f"conda-unsloth: warning: {msg}", file=sys.stderr)


def execute(args: argparse.Namespace, runtime: Runtime) -> int:
    from ..prefix import resolve_existing
    from ..verify import probe

    if args.list_checks:
        if args.json:
            from . import _shared

            _shared.emit_json(
                {
                    "checks": [
                        {"id": c.id, "group": c.group, "title": c.title} for c in probe.CHECKS
                    ]
                }
            )
            return 0
        for c in probe.CHECKS:
            print(f"{c.id:<26} {c.group:<9} {c.title}")
        return 0
    tokens = _validate(args)
    prefix = resolve_existing(args.name, args.prefix, runtime.envs_dirs())
    if args.sbatch is not None:
        return _sbatch(args, prefix, tokens, runtime)
    if args.dry_run:
        return _dry_run(args, prefix, tokens)
    return _run(args, prefix, tokens, runtime)


def _dry_run(args: argparse.Namespace, prefix: Path, tokens: list[str]) -> int:
    """What a verification would run and record; runs and writes nothing."""
    from ..exports import slurm
    from ..verify import probe
    from . import _shared

    checks = [c.id for c in probe.select(tokens)]
    report = Path(args.report).expanduser().absolute() if args.report else None
    doc = {
        "prefix": str(prefix),
        "checks": checks,
        "report_file": str(report or slurm.default_report(prefix)),
        "expect_cuda": _expect_cuda(args, prefix),
        "dry_run": True,
    }
    if args.json:
        _shared.emit_json(doc)
    else:
        print(f"would verify {prefix}: {len(checks)} checks ({', '.join(checks)})")
        print(f"would record the report in {doc['report_file']} (a dry run writes nothing)")
    return 0


def _fleet(args: argparse.Namespace) -> tuple[str | None, tuple[str, ...]]:
    from ..exports import slurm

    for kind, attr in (
        ("partition", "partitions"),
        ("constraint", "constraints"),
        ("gpu-type", "gpu_types"),
    ):
        value = getattr(args, attr)
        if value is not None:
            return kind, slurm.parse_fleet(value, slurm.FLEET_FLAGS[kind])
    return None, ()


def _sbatch(args: argparse.Namespace, prefix: Path, tokens: list[str], runtime: Runtime) -> int:
    from ..exports import slurm, slurmsubmit
    from . import _shared

    out = Path(args.sbatch).expanduser()
    slurm.output(out, force=args.force)  # the output policy, before any work
    report = (
        Path(args.report).expanduser().absolute() if args.report else slurm.default_report(prefix)
    )
    slurm.check_report_dir(report, explicit=bool(args.report))
    kind, names = _fleet(args)
    job = slurm.SlurmJob(
        prefix=prefix,
        report=report,
        partition=args.partition,
        gres=args.gres or "gpu:1",
        time=args.time or slurm.default_time(tuple(tokens), args.timeout),
        account=args.account,
        expect_cuda=_expect_cuda(args, prefix),
        checks=tuple(tokens),
        timeout=args.timeout,
        constraint=args.constraint,
        fleet=names,
        fleet_kind=kind,
        command=runtime.command,
    )
    slurm.write(job, out, force=args.force, dry_run=args.dry_run)
    reports = {k: str(v) for k, v in job.reports().items()} or {"": str(report)}
    # as a shell runs them: ${J} is the job id the first command prints
    commands = [" ".join(c).replace("{J}", "${J}") for c in slurmsubmit.submission(job, str(out))]
    if args.submit and not args.dry_run:
        return _submit(args, prefix, job, out, runtime)
    if args.json:
        _shared.emit_json(
            {
                "sbatch": str(out),
                "prefix": str(prefix),
                "report": str(report),
                "reports": reports if job.fleet else None,
                "submit": commands,
                "written": not args.dry_run,
            }
        )
    elif args.dry_run:
        print(f"would write {out} (a dry run writes nothing)")
        if args.submit:
            for cmd in commands:
                print(f"would run: {cmd}")
    else:
        print(f"wrote {out}")
        shown = f"{report}.<name>" if job.fleet else str(report)
        if job.fleet:
            flag = slurm.FLEET_FLAGS[job.fleet_kind or "partition"]
            print(
                f"next: {runtime.command} verify -p {prefix} --sbatch {out} {flag} "
                f"{','.join(job.fleet)} --submit --wait"
            )
            print("  or submit it by hand:")
            for cmd in commands:
                print(f"  {cmd}")
            print("  (J: the job id the first command prints)")
        else:
            print(f"next: sbatch {out}   (report: {report})")
        print(f"then: {runtime.command} verify -p {prefix} --from-report {shown}")
    return 0


def _submit(
    args: argparse.Namespace,
    prefix: Path,
    job: Any,
    script: Path,
    runtime: Runtime,
) -> int:
    """Submit the written script; with --wait, record the reports its tasks wrote."""
    from ..exports import slurmsubmit
    from . import _shared

    done = slurmsubmit.submit(job, script, wait=args.wait)
    if not args.json and not args.quiet:
        for cmd in done.commands:
            print(f"ran: {' '.join(cmd)}", file=sys.stderr)
    if not args.wait:
        if args.json:
            _shared.emit_json({"sbatch": str(script), "job_id": done.job_id, "waited": False})
        else:
            print(f"submitted job {done.job_id}")
            shown = f"{job.report}.<name>" if job.fleet else str(job.report)
            print(f"then: {runtime.command} verify -p {prefix} --from-report {shown}")
        return 0
    expected = job.reports() if job.fleet else {"": job.report}
    found: list[tuple[Path, VerifyReport]] = []
    missing: dict[str, str] = {}
    for name, path in expected.items():
        label = name or "job"
        if not path.is_file():
            missing[label] = f"no report at {path}"
            continue
        rep = _load_from_report(path, prefix, force=args.force)
        ids = (rep.slurm.get("array_job_id"), rep.slurm.get("job_id"))
        if done.job_id not in ids:
            missing[label] = f"{path} is from job {ids[0] or ids[1] or '?'}, not {done.job_id}"
            continue
        found.append((path, rep))
    code = _record_reports(args, prefix, found, job_id=done.job_id, missing=missing)
    return code if not missing else max(code, 1)


def _same_path(a: str, b: Path) -> bool:
    try:
        return Path(a).resolve() == b.resolve()
    except (OSError, RuntimeError):
        return Path(a) == b


def _load_from_report(source: Path, prefix: Path, *, force: bool) -> VerifyReport:
    """A report given with --from-report: malformed, empty, or from another env's python is
    bad input (exit 2); ``--force`` accepts another env's report."""
    from ..errors import UsageError, VerifyError
    from ..verify import report as reportmod

    try:
        report = reportmod.load(source)
    except VerifyError as exc:
        raise UsageError(exc.message, hints=list(exc.hints)) from None
    where = report.python.get("prefix")
    if isinstance(where, str) and where and not _same_path(where, prefix):
        if not force:
            raise UsageError(
                f"--from-report {source} was written by the python of {where}, not of {prefix}",
                hints=[
                    f"conda unsloth verify -p {where} --from-report {source}",
                    "--force records it anyway",
                ],
            )
        _warn(
            f"--from-report {source} was written by the python of {where}, not of {prefix}", False
        )
    return report


def _report_files(given: list[str]) -> list[Path]:
    """--from-report's arguments as files: a directory gives its ``conda-unsloth-verify*``
    reports, a pattern that is not a file is expanded as a glob; UsageError when one gives
    nothing."""
    import glob

    from ..errors import UsageError

    out: list[Path] = []
    for item in given:
        path = Path(item).expanduser().absolute()
        if path.is_dir():
            found = sorted(
                p
                for p in path.glob("conda-unsloth-verify*")
                if p.is_file() and not p.name.endswith((".tmp", ".slurm"))
            )
            if not found:
                raise UsageError(f"--from-report {item}: no conda-unsloth-verify* report in it")
            out += found
        elif not path.exists() and glob.has_magic(item):
            pattern = Path(item).expanduser()
            base = Path(pattern.anchor) if pattern.is_absolute() else Path.cwd()
            rel = str(pattern.relative_to(pattern.anchor)) if pattern.is_absolute() else item
            hits = sorted(h.absolute() for h in base.glob(rel) if h.is_file())
            if not hits:
                raise UsageError(f"--from-report {item!r}: no file matches")
            out += hits
        else:
            out.append(path)
    return list(dict.fromkeys(out))


def _record_reports(
    args: argparse.Namespace,
    prefix: Path,
    loaded: list[tuple[Path, VerifyReport]],
    *,
    job_id: str | None = None,
    missing: dict[str, str] | None = None,
) -> int:
    """Record several reports: each Slurm report in the marker's fleet under its name, and
    the marker's verification as the worst of them; print one line each."""
    from .. import marker
    from ..verify import report as reportmod
    from . import _shared

    records: dict[str, dict[str, Any]] = {}
    created: dict[str, str] = {}
    plain: list[tuple[Path, VerifyReport]] = []
    digest = marker.env_digest(prefix)
    for path, rep in loaded:
        key = reportmod.fleet_key(rep)
        if key is None:
            plain.append((path, rep))
            continue
        if key in records and created[key] >= rep.created:
            continue  # the newer report of the same target wins
        records[key] = {**reportmod.fleet_record(rep, path), "env_digest": digest}
        created[key] = rep.created
    verdicts = [rep.verdict for _, rep in loaded]
    worst = (
        "fail"
        if "fail" in verdicts or not loaded
        else ("pass" if all(v == "pass" for v in verdicts) else "partial")
    )
    summary: dict[str, Any] = {
        "verdict": worst,
        "checks": sorted({c.id for _, rep in loaded for c in rep.checks}),
        "time": max((rep.created for _, rep in loaded), default=None),
        "failed": [
            f"{reportmod.fleet_key(rep) or path.name}:{c.id}"
            for path, rep in loaded
            for c in rep.failed_required()
        ],
        "reports": [str(path) for path, _ in loaded],
        "fleet": sorted(records),
    }
    fleet: dict[str, dict[str, Any]] = {}
    try:
        if loaded:
            fleet = marker.update_fleet(prefix, records, verification=summary)
    except OSError as exc:
        _warn(
            f"could not record the verdicts in {marker.path_for(prefix)}: {exc.strerror}",
            args.quiet,
        )
    if args.json:
        _shared.emit_json(
            {
                "prefix": str(prefix),
                "job_id": job_id,
                "verdict": worst if not missing else "fail",
                "reports": {str(p): r.verdict for p, r in loaded},
                "recorded": records,
                "fleet": fleet,
                "missing": missing or {},
            }
        )
    else:
        for name, record in records.items():
            print(reportmod.fleet_line(name, record))
        for path, rep in plain:
            print(f"{path}: {rep.verdict} (not from a Slurm job: no fleet entry)")
        for name, why in (missing or {}).items():
            print(f"{name}: no report ({why})")
        if loaded:
            print(f"recorded {len(loaded)} report(s) in {marker.path_for(prefix)}")
    ok = bool(loaded) and all(rep.ok for _, rep in loaded)
    return 0 if ok else 1


def _run(args: argparse.Namespace, prefix: Path, tokens: list[str], runtime: Runtime) -> int:
    from .. import marker
    from ..exports import slurm
    from ..outputs import write_atomic
    from ..verify import python_of, run_probe
    from ..verify import report as reportmod
    from . import _shared

    kb = _shared.knowledge(args)
    report_path = (
        Path(args.report).expanduser().absolute() if args.report else slurm.default_report(prefix)
    )
    if args.report:  # the one output policy, before the probe runs
        from ..outputs import OutputFile

        OutputFile.of(report_path, "--report", force=args.force).check()
    source: Path | None = None
    if args.from_report:
        sources = _report_files(args.from_report)
        if len(sources) > 1:
            if args.report:
                from ..errors import UsageError

                raise UsageError("--report FILE takes one --from-report, not several")
            loaded = [(src, _load_from_report(src, prefix, force=args.force)) for src in sources]
            return _record_reports(args, prefix, loaded)
        source = sources[0]
        report = _load_from_report(source, prefix, force=args.force)
        report_path = source if not args.report else report_path
    else:
        python = python_of(prefix)
        if not args.quiet and not args.json:
            print(f"verifying {prefix} (this takes up to a minute on a GPU)", file=sys.stderr)
        report = run_probe(
            python, expect_cuda=_expect_cuda(args, prefix), checks=tokens, timeout=args.timeout
        )
    saved: Path | None = report_path
    if not (args.from_report and report_path == source):
        try:
            write_atomic(report_path, reportmod.dumps(report))
        except OSError as exc:
            saved = None
            _warn(f"could not store the report in {report_path}: {exc.strerror}", args.quiet)
    key = reportmod.fleet_key(report)
    try:
        record = reportmod.marker_record(report, saved)
        if key is not None:
            fleet_record = {
                **reportmod.fleet_record(report, saved),
                "env_digest": marker.env_digest(prefix),
            }
            marker.update_fleet(prefix, {key: fleet_record}, verification=record)
        else:
            marker.update(prefix, verification=record)
    except OSError as exc:
        _warn(
            f"could not record the verdict in {marker.path_for(prefix)}: {exc.strerror}",
            args.quiet,
        )
    from ..doctor import EnvRef

    env = EnvRef(prefix, args.name if not args.prefix else None)
    if args.json:
        doc: dict[str, Any] = report.to_json()
        doc["verdict"] = report.verdict
        doc["prefix"] = str(prefix)
        doc["report_file"] = str(saved) if saved else None
        doc["remedies"] = [r.to_json(env) for r in reportmod.remedies(report, kb)]
        _shared.emit_json(_shared.hinted(doc, runtime))
    else:
        # on a terminal long details fold at its width; into a file or a pipe they stay whole
        width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
        text = reportmod.render(
            report, kb, width=None if width is None else max(width, 80), env=env
        )
        print(_shared.hinted(text, runtime))  # remedies as this user runs us
        if saved:
            print(f"report: {saved}")
        if key is not None:
            print(reportmod.fleet_line(key, reportmod.fleet_record(report, saved)))
    return report.exit_code

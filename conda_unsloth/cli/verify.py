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
verification on a compute node (submit it with `sbatch FILE`).

examples:
  conda unsloth verify -n unsloth
  conda unsloth verify -p /apps/unsloth/2024.9 --json
  conda unsloth verify -n unsloth --checks xformers,seed --expect-cuda 12.1
  conda unsloth verify -p /apps/unsloth/2024.9 --sbatch verify.sbatch --partition gpu --account proj1
  conda unsloth verify -p /apps/unsloth/2024.9 --from-report /apps/unsloth/2024.9/conda-meta/conda-unsloth-verify
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
        help="do not run the probe: show and record a report written earlier (e.g. by --sbatch); "
        "a report of another environment is refused unless --force",
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
    slurm_only = [f"--{n}" for n in ("partition", "gres", "time", "account") if getattr(args, n)]
    if slurm_only and not args.sbatch:
        raise UsageError(f"{', '.join(slurm_only)} only apply with --sbatch FILE")
    if args.sbatch and args.from_report:
        raise UsageError("--sbatch and --from-report do not go together")
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
    if args.sbatch:
        return _sbatch(args, prefix, tokens)
    if args.dry_run:
        return _dry_run(args, prefix, tokens)
    return _run(args, prefix, tokens)


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


def _sbatch(args: argparse.Namespace, prefix: Path, tokens: list[str]) -> int:
    from ..exports import slurm
    from . import _shared

    out = Path(args.sbatch).expanduser()
    slurm.output(out, force=args.force)  # the output policy, before any work
    report = (
        Path(args.report).expanduser().absolute() if args.report else slurm.default_report(prefix)
    )
    slurm.check_report_dir(report, explicit=bool(args.report))
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
    )
    slurm.write(job, out, force=args.force, dry_run=args.dry_run)
    if args.json:
        _shared.emit_json(
            {
                "sbatch": str(out),
                "prefix": str(prefix),
                "report": str(report),
                "written": not args.dry_run,
            }
        )
    elif args.dry_run:
        print(f"would write {out} (a dry run writes nothing)")
    else:
        print(f"wrote {out}")
        print(f"next: sbatch {out}   (report: {report})")
        print(f"then: conda unsloth verify -p {prefix} --from-report {report}")
    return 0


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


def _run(args: argparse.Namespace, prefix: Path, tokens: list[str]) -> int:
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
    if args.from_report:
        source = Path(args.from_report).expanduser().absolute()
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
    if not (args.from_report and report_path == Path(args.from_report).expanduser().absolute()):
        try:
            write_atomic(report_path, reportmod.dumps(report))
        except OSError as exc:
            saved = None
            _warn(f"could not store the report in {report_path}: {exc.strerror}", args.quiet)
    try:
        marker.update(prefix, verification=reportmod.marker_record(report, saved))
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
        _shared.emit_json(doc)
    else:
        width = shutil.get_terminal_size((140, 24)).columns
        print(reportmod.render(report, kb, width=max(width, 80), env=env))
        if saved:
            print(f"report: {saved}")
    return report.exit_code

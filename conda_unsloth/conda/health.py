"""The ``conda doctor`` health check: the same diagnosis as ``conda unsloth doctor``, package
rules only (cheap: reads conda-meta and site-packages metadata, runs nothing, asks no GPU).

conda (>= 23.11) calls ``action(prefix, verbose)``, which prints its own ✅/❌ lines; conda
>= 26.1 also calls ``fixer(prefix, args, confirm)`` under ``conda doctor --fix``. The only
mechanical, safe fix is F10's ``mkl<2024.1`` (installed with conda's own install API,
in-process, after ``confirm()``); everything else is printed as a plan, never run.

Nothing here imports conda at module level; ``health_check_kwargs`` builds the
``CondaHealthCheck`` arguments for whichever fields the running conda has.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UnslothError

if TYPE_CHECKING:
    import argparse

    from ..doctor import Diagnosed, Diagnosis

NAME = "unsloth"
SUMMARY = "Known-bad Unsloth GPU stacks (xformers/torch/CUDA/unsloth requirements)"
FIX = "Install mkl<2024.1 next to pytorch-channel builds; print the commands for the rest"
# conda >= 26.1 has these in conda.base.constants; older condas do not, so define our own.
OK_MARK = "✅"
X_MARK = "❌"
MECHANICAL = frozenset({"mkl_too_new"})  # rule kinds the fixer may apply itself

Installer = Callable[["argparse.Namespace", list[str]], int]


def _diagnose(prefix: str) -> Diagnosis:
    from .. import doctor, knowledge

    return doctor.diagnose(Path(prefix), knowledge.load(), host=None, scopes=("packages",))


def action(prefix: str, verbose: bool) -> None:
    """Print the check's result for ``prefix``; silent for an env without torch/unsloth.
    Never raises for a prefix we cannot read: that becomes a ❌ line."""
    try:
        diag = _diagnose(prefix)
    except UnslothError as exc:
        print(f"{X_MARK} Unsloth stack: {exc.message}\n")
        return
    except OSError as exc:
        print(f"{X_MARK} Unsloth stack: cannot read {prefix}: {exc}\n")
        return
    if not diag.inventory.has_gpu_stack():
        return
    if not diag.findings:
        print(f"{OK_MARK} Unsloth stack: no known-bad combination found.\n")
        return
    print(f"{X_MARK} Unsloth stack: {len(diag.findings)} known problem(s):\n")
    for item in diag.findings:
        f = item.finding
        print(f"  {f.id} ({f.issue.severity}): {f.issue.title}")
        print(f"    found: {f.detail}")
        if verbose:
            for e in f.evidence:
                print(f"    evidence: {e}")
            print(f"    why: {f.issue.fix}")
        for cmd in item.fix:
            print(f"    fix: {cmd}")
    print(f"\n  details: conda unsloth doctor {diag.env.flag}\n")


def fixer(prefix: str, args: argparse.Namespace, confirm: Callable[[str], None]) -> int:
    """``conda doctor --fix``: apply the mechanical fix (mkl) after ``confirm``; print the plan
    for the rest. Returns 1 while problems that need a rebuild or pip remain."""
    return fix(prefix, args, confirm, install=conda_install)


def fix(
    prefix: str,
    args: argparse.Namespace,
    confirm: Callable[[str], None],
    install: Installer,
) -> int:
    try:
        diag = _diagnose(prefix)
    except UnslothError as exc:
        print(f"Unsloth stack: {exc.message}")
        return 1
    if not diag.inventory.has_gpu_stack():
        print("No torch, xformers or unsloth in this environment: nothing to fix.")
        return 0
    if not diag.findings:
        print("No known-bad Unsloth stack combination found.")
        return 0
    mechanical = [d for d in diag.findings if d.finding.issue.check.get("kind") in MECHANICAL]
    manual = [d for d in diag.findings if d not in mechanical]
    if manual:
        print("Not fixed automatically (they need a rebuild or pip); run:")
        for item in manual:
            for cmd in item.fix:
                print(f"  {cmd}    # {item.finding.id}")
    if not mechanical:
        return 1
    specs = list(dict.fromkeys(_spec(d) for d in mechanical))
    print(f"Will install {', '.join(specs)} into {prefix} (conda install, pinned):")
    for item in mechanical:
        print(f"  {item.finding.id}: {item.finding.detail}")
    confirm(f"Install {' '.join(specs)} into {prefix}?")
    rc = install(args, specs)
    return rc if rc != 0 else (1 if manual else 0)


def _spec(item: Diagnosed) -> str:
    """The conda spec that applies a mechanical fix (F10: ``mkl<2024.1``)."""
    check = item.finding.issue.check
    return f"mkl<{check.get('max', '2024.1')}"


def conda_install(args: argparse.Namespace, specs: list[str]) -> int:
    """Install ``specs`` into the doctor's target env with conda's own install API
    (``conda.cli.install.reinstall_packages``, conda >= 26.1, the release that has fixers)."""
    from conda.cli.install import reinstall_packages

    return int(reinstall_packages(args, specs))


def health_check_kwargs(fields: Iterable[str]) -> dict[str, Any]:
    """Arguments for ``CondaHealthCheck`` limited to the fields this conda defines
    (``fixer``/``summary``/``fix`` arrived in 26.1; passing an unknown one is a TypeError)."""
    available = set(fields)
    kwargs: dict[str, Any] = {"name": NAME, "action": action}
    optional: dict[str, Any] = {"fixer": fixer, "summary": SUMMARY, "fix": FIX}
    kwargs.update({k: v for k, v in optional.items() if k in available})
    return kwargs

"""The post-command guard: after `conda install/update/remove/create` and `conda env
create/update` on an environment that conda-unsloth built (it has our marker), re-run the static
known-issue rules on what is now installed and warn with the fix. A single stat for any other
prefix.

A guard must not turn a successful conda command into a failure, and conda does not wrap
post-command hooks: nothing here raises (any ``Exception`` becomes one warning line; Ctrl-C
still stops it) or blocks (the inventory opens regular files only, reads them bounded, and runs
nothing from the env; no GPU or driver is asked)."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

# The names conda passes to post-command hooks (conda/cli/conda_argparse.py do_call: a built-in's
# `main_<name>` module, `conda env update` -> "env_update"). conda 26.7.1 passes "install",
# "update" (also for `conda upgrade`), "remove" (also for `conda uninstall` and `conda env
# remove`, whose prefix is gone by then: silent), "create" (also for `conda env create`) and
# "env_update" (checked in tests/conda/test_guard_e2e.py); older condas named `conda env
# create` "env_create", and "upgrade"/"uninstall" cost nothing to keep.
RUN_FOR = frozenset(
    {"install", "update", "upgrade", "remove", "uninstall", "create", "env_create", "env_update"}
)


def shown(command: str) -> str:
    """The command as the user typed it: "env_update" -> "env update"."""
    return command.replace("_", " ")


def _ours(prefix: Path) -> bool:
    """Does ``prefix`` carry our marker (a regular file)? One stat; False when it cannot tell."""
    from .. import marker

    try:
        return stat.S_ISREG(marker.path_for(prefix).stat().st_mode)
    except (OSError, ValueError):
        return False


def check_prefix(prefix: Path, command: str = "") -> list[str]:
    """Warning lines for ``prefix`` (empty when it is not ours or is healthy). Never raises."""
    try:
        if not _ours(prefix):
            return []
        from .. import doctor, knowledge

        diag = doctor.diagnose(prefix, knowledge.load(), host=None, scopes=("packages",))
        lines = []
        for item in diag.findings:
            f = item.finding
            lines.append(
                f"conda-unsloth warning: `conda {shown(command)}` left {prefix} with {f.id}: "
                f"{f.issue.title} ({f.detail})"
            )
            lines.extend(f"  fix: {cmd}" for cmd in item.fix)
        return lines
    except Exception as exc:  # a guard never fails the conda command it follows
        why = " ".join(str(getattr(exc, "message", exc)).split()) or type(exc).__name__
        return [f"conda-unsloth: could not check {prefix} after `conda {shown(command)}`: {why}"]


def post_command(command: str) -> None:
    """conda's post-command hook: reads the target prefix from conda's context. Never raises."""
    try:
        from conda.base.context import context

        prefix = Path(context.target_prefix)
    except Exception:
        return
    try:
        for line in check_prefix(prefix, command):
            print(line, file=sys.stderr)
    except Exception:  # stderr closed or unwritable: stay silent
        return

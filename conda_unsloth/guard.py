"""The post-command guard: after `conda install/update/remove/create` and `conda env
create/update` on an environment that conda-unsloth built (it has our marker), re-run the static
known-issue rules on what is now installed and warn with the fix. A single stat for any other
prefix; never raises (a guard must not turn a successful conda command into a failure)."""

from __future__ import annotations

import sys
from pathlib import Path

# both spellings: conda <= 26.5 names `conda env create` "env_create", 26.7+ "create"
RUN_FOR = frozenset(
    {"install", "update", "upgrade", "remove", "uninstall", "create", "env_create", "env_update"}
)


def check_prefix(prefix: Path, command: str = "") -> list[str]:
    """Warning lines for ``prefix`` (empty when it is not ours or is healthy)."""
    from . import marker

    if not marker.path_for(prefix).is_file():
        return []
    from . import doctor, knowledge

    try:
        diag = doctor.diagnose(prefix, knowledge.load(), host=None, scopes=("packages",))
    except Exception as exc:
        return [f"conda-unsloth: could not check {prefix} after `conda {command}`: {exc}"]
    lines = []
    for item in diag.findings:
        f = item.finding
        lines.append(
            f"conda-unsloth warning: `conda {command}` left {prefix} with {f.id}: "
            f"{f.issue.title} ({f.detail})"
        )
        lines.extend(f"  fix: {cmd}" for cmd in item.fix)
    return lines


def post_command(command: str) -> None:
    """conda's post-command hook: reads the target prefix from conda's context."""
    try:
        from conda.base.context import context

        prefix = Path(context.target_prefix)
    except Exception:
        return
    for line in check_prefix(prefix, command):
        print(line, file=sys.stderr)

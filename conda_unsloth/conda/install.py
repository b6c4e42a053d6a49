"""Inside conda: install a SolvedEnv with conda's own machinery — `conda.misc.explicit`, the code
behind `conda create --file explicit.txt`: package-cache fetch with md5/sha256 verification,
then an `UnlinkLinkTransaction` (which also registers the env). Imported lazily, only in conda."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import InstallError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from ..solvers.base import Record


def explicit_lines(records: Sequence[Record]) -> list[str]:
    lines = ["@EXPLICIT"]
    for r in records:
        digest = f"#{r.sha256}" if r.sha256 else (f"#{r.md5}" if r.md5 else "")
        lines.append(f"{r.url}{digest}")
    return lines


def install_explicit(records: Sequence[Record], prefix: Path, show_progress: bool = False) -> None:
    """Fetch (hash-checked), extract and link ``records`` into ``prefix`` with conda's
    transaction (conda's own progress bars; ``show_progress`` is conda's to decide)."""
    from conda import CondaError
    from conda.misc import explicit

    try:
        explicit(explicit_lines(records), str(prefix))
    except CondaError as exc:
        raise InstallError(f"conda could not install the packages: {exc}") from None

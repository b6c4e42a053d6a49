"""Inside conda: install a SolvedEnv with conda's own machinery — `conda.misc.explicit`, the code
behind `conda create --file explicit.txt`: package-cache fetch with md5/sha256 verification,
then an `UnlinkLinkTransaction` (which also registers the env). Imported lazily, only in conda."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ..errors import InstallError, UnslothError, UsageError

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
        raise install_error(exc, prefix) from None


# issue 16 (h16b): conda's words, on one line and without credentials
_OFFLINE_URL = re.compile(r"EnforceUnusedAdapter called with url (\S+?)\.?\s*$", re.M)


def install_error(exc: Exception, prefix: Path) -> UnslothError:
    """conda's error as ours: one line, credentials removed; a full disk says so and where;
    offline, the package conda would have had to download (``--offline`` is conda's offline
    mode: no network adapter)."""
    from pathlib import Path

    from conda.base.context import context

    from ..install import disk_full
    from ..redact import redact_text, redact_url

    text = str(exc)
    full = disk_full(text, [prefix, *(Path(d) for d in context.pkgs_dirs[:1])])
    if full is not None:
        return full
    urls = list(dict.fromkeys(_OFFLINE_URL.findall(text)))
    if urls:
        fn = urls[0].rsplit("/", 1)[-1]
        return UsageError(
            f"--offline, but {len(urls)} package(s) would be downloaded: {fn} from "
            f"{redact_url(urls[0])} is not in conda's package cache",
            hints=[
                "run the same command once without --offline to fill the package cache, or "
                "use a file:// channel (a local mirror)",
            ],
        )
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return InstallError(redact_text("conda could not install the packages: " + " ".join(lines)))

"""Installing from a bundle: every record fed with its file in the bundle's channel, then the
prefix's conda-meta records given back the URL and channel the source env recorded."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ...solvers.base import Record


def bundle_installer(
    install: Callable[[Sequence[Record], Path, bool], None],
    channel: Path,
    origins: dict[str, tuple[str, str | None]],
) -> Callable[[Sequence[Record], Path, bool], None]:
    """``install`` fed each record with its file in ``channel``; afterwards the prefix's
    conda-meta records get back the URL and channel the source env recorded."""

    def run(records: Sequence[Record], prefix: Path, show_progress: bool) -> None:
        local = []
        base = channel.as_uri()
        for r in records:
            path = channel / r.subdir / r.fn
            local.append(dataclasses.replace(r, url=path.as_uri(), channel=base))
        install(local, prefix, show_progress)
        relabel(prefix, origins)

    return run


def relabel(prefix: Path, origins: dict[str, tuple[str, str | None]]) -> int:
    """Give each conda-meta record of a package in ``origins`` its source URL and channel;
    returns how many were changed."""
    from ...outputs import write_atomic

    changed = 0
    for f in sorted((prefix / "conda-meta").glob("*.json")):
        data = json.loads(f.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            continue
        fn = data.get("fn")
        if not isinstance(fn, str) or fn not in origins:
            continue
        url, channel = origins[fn]
        data["url"] = url
        if channel is not None:
            data["channel"] = channel
        write_atomic(f, json.dumps(data, indent=2) + "\n")
        changed += 1
    return changed

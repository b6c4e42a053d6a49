"""The marker `<prefix>/conda-meta/conda-unsloth` (JSON): what we built, from what, and whether
it verified. Other tools (doctor, the post-command guard, export, module) look for it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import __version__

MARKER_NAME = "conda-unsloth"  # no .json: conda parses every conda-meta/*.json as a package record
SCHEMA = 1


def path_for(prefix: Path) -> Path:
    return prefix / "conda-meta" / MARKER_NAME


def read(prefix: Path) -> dict[str, Any] | None:
    """The marker's content, or None when the prefix has none (or an unreadable one)."""
    p = path_for(prefix)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write(prefix: Path, data: dict[str, Any]) -> Path:
    from .outputs import write_atomic
    from .redact import redact_obj

    # no credential is ever written into the env (the request's channels, a failure message)
    doc = redact_obj(
        {"schema": SCHEMA, "tool": "conda-unsloth", "tool_version": __version__, **data}
    )
    p = path_for(prefix)
    p.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(p, json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return p


def update(prefix: Path, **fields: Any) -> Path:
    """Merge ``fields`` into the marker (creating it if needed)."""
    data = read(prefix) or {}
    data.pop("schema", None)
    data.pop("tool", None)
    data.pop("tool_version", None)
    data.update(fields)
    return write(prefix, data)

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


# ----------------------------------------------------------------------------- fleet
# Slurm verifications, one record per partition / constraint / GPU type the env was verified
# on (``verify --from-report``; see verify/report.py fleet_record): ``marker["fleet"][NAME]``.

FLEET = "fleet"


def fleet(data: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The marker's fleet records (name -> record), the malformed ones left out."""
    raw = (data or {}).get(FLEET)
    if not isinstance(raw, dict):
        return {}
    return {str(k): v for k, v in raw.items() if isinstance(v, dict)}


def update_fleet(
    prefix: Path, records: dict[str, dict[str, Any]], **fields: Any
) -> dict[str, dict[str, Any]]:
    """Merge ``records`` into the marker's fleet (a name's newer record replaces its older
    one) and ``fields`` into the marker; returns the whole fleet."""
    data = read(prefix) or {}
    merged = fleet(data)
    merged.update(records)
    update(prefix, **{FLEET: dict(sorted(merged.items())), **fields})
    return merged


def env_digest(prefix: Path) -> str | None:
    """A digest of what is installed now (every conda record's url and sha256, every pip
    distribution's name and version): a verification recorded with another digest was made on
    another content of the env. None when the prefix cannot be read."""
    import hashlib

    from . import inventory
    from .errors import UnslothError

    try:
        inv = inventory.read(prefix)
    except (UnslothError, OSError):
        return None
    h = hashlib.sha256()
    for r in sorted(inv.records, key=lambda r: r.name):
        h.update(f"conda {r.name} {r.version} {r.build}\n".encode())
    for d in sorted(inv.pip_dists(), key=lambda d: d.name.lower()):
        h.update(f"pip {d.name.lower()} {d.version}\n".encode())
    return h.hexdigest()

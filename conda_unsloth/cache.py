"""Where conda-unsloth keeps what it downloads: ``$CONDA_UNSLOTH_CACHE``, else
``$XDG_CACHE_HOME/conda-unsloth``, else ``~/.cache/conda-unsloth``; one subdirectory per kind
(``rattler`` for repodata, ``pkgs`` for package files)."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "CONDA_UNSLOTH_CACHE"


def cache_dir(kind: str) -> Path:
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser() / kind
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "conda-unsloth" / kind

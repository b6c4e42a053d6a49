"""Fully pinned environment.yml: every conda package as ``name=version=build`` with the solve's
channels in strict priority order, and the pip part (the pins, then verbatim every requirement
that is not a ``name==version`` pin), so plain ``conda env create -f`` rebuilds the same stack
(it still solves, but only one candidate fits each pin). Credentials are removed from URLs. Written with ruamel in conda's own style (``spec._yaml``).
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Final

from .. import __version__
from ..redact import redact_text, redact_url
from .explicit import pip_unpinned

if TYPE_CHECKING:
    from ..solvers.base import SolvedEnv

FORMAT: Final = "environment"
ALIASES: Final = ("environment-yaml", "yaml", "yml")
DEFAULT_FILENAMES: Final = ("environment.yml", "environment.yaml")


def export(solved: SolvedEnv, name: str | None = None) -> str:
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    from ..spec import _yaml

    doc = CommentedMap()
    env_name = name or (solved.spec.name if solved.spec else None)
    if env_name:
        doc["name"] = env_name
    doc["channels"] = CommentedSeq([redact_url(c) for c in solved.channels] + ["nodefaults"])
    deps = CommentedSeq(f"{r.name}={r.version}={r.build}" for r in solved.records)
    unpinned = pip_unpinned(solved)
    if solved.pip or unpinned:
        pip = CommentedSeq(
            [f"{p.name}=={p.version}" for p in solved.pip] + [redact_text(r) for r in unpinned]
        )
        pip_map = CommentedMap()
        pip_map["pip"] = pip
        deps.append(pip_map)
    doc["dependencies"] = deps
    if solved.spec is not None and solved.spec.variables:
        doc["variables"] = CommentedMap(solved.spec.variables)
    doc.yaml_set_start_comment(
        "\n".join(
            [
                f"Fully pinned by conda-unsloth {__version__} ({solved.solver}) for "
                f"{solved.platform}; virtual packages: {' '.join(solved.virtual_packages)}.",
                "Rebuild: CONDA_CHANNEL_PRIORITY=strict conda env create -f THIS_FILE",
            ]
        )
    )
    buf = io.StringIO()
    _yaml().dump(doc, buf)
    return buf.getvalue()

"""Fully pinned environment.yml: every conda package as ``name version build`` (the form conda,
micromamba, rattler and conda-lock all read as exactly that version; ``=version=build`` is
``version.*`` to micromamba) with the solve's channels in strict priority order, and the pip
part: conda's Python distributions pinned for pip (``torch==2.5.1``: satisfied by conda's
package, so no companion can replace it), the pip pins, then verbatim every requirement that
is not a ``name==version`` pin. Plain ``conda env create -f`` and ``micromamba create -f``
rebuild the same stack (they still solve, but only one candidate fits each pin); the header
says how, with the flags each needs to use only these channels (docs/tools.md). No
``nodefaults``: conda 26.7 reads it as a channel. Credentials are removed from URLs. Written
with ruamel in conda's own style (``spec._yaml``).
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
# conda packages whose Python distribution has another name
DIST_NAMES: Final = {"pytorch": "torch", "torchtriton": "triton"}
CONDA_DISTS: Final = ("pytorch", "torchtriton", "triton", "xformers")


def conda_pins(solved: SolvedEnv) -> list[str]:
    """``dist==version`` for conda's torch, triton and xformers in ``solved``."""
    return [
        f"{DIST_NAMES.get(r.name, r.name)}=={r.version}"
        for r in solved.records
        if r.name in CONDA_DISTS
    ]


def export(solved: SolvedEnv, name: str | None = None) -> str:
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    from ..spec import _yaml, commands

    doc = CommentedMap()
    env_name = name or (solved.spec.name if solved.spec else None)
    if env_name:
        doc["name"] = env_name
    channels = [redact_url(c) for c in solved.channels]
    doc["channels"] = CommentedSeq(channels)
    deps = CommentedSeq(f"{r.name} {r.version} {r.build}" for r in solved.records)
    unpinned = pip_unpinned(solved)
    if solved.pip or unpinned:
        pip = CommentedSeq(
            conda_pins(solved)
            + [f"{p.name}=={p.version}" for p in solved.pip]
            + [redact_text(r) for r in unpinned]
        )
        pip_map = CommentedMap()
        pip_map["pip"] = pip
        deps.append(pip_map)
    doc["dependencies"] = deps
    if solved.spec is not None and solved.spec.variables:
        doc["variables"] = CommentedMap(solved.spec.variables)
    cuda = next(
        (vp.split("=")[1] for vp in solved.virtual_packages if vp.startswith("__cuda=")), ""
    )
    how = commands(channels, env_name, cuda or "X.Y")
    doc.yaml_set_start_comment(
        "\n".join(
            [
                f"Fully pinned by conda-unsloth {__version__} ({solved.solver}) for "
                f"{solved.platform}; virtual packages: {' '.join(solved.virtual_packages)}.",
                *how,
            ]
        )
    )
    buf = io.StringIO()
    _yaml().dump(doc, buf)
    return buf.getvalue()

"""The runtime of ``conda unsloth``: conda's libmamba solver (the default; rattler stays
available with ``--solver rattler``), conda's own fetch-verify-link transaction, and conda's
env directories and root prefix from its ``context``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..runtime import Runtime

if TYPE_CHECKING:
    from ..solvers.base import Solver


def _libmamba() -> Solver:
    from .solver import CondaLibmambaSolver

    return CondaLibmambaSolver()


def _rattler() -> Solver:
    from ..solvers.rattler import RattlerSolver

    return RattlerSolver()


def _envs_dirs() -> list[Path]:
    from conda.base.context import context

    return [Path(d) for d in context.envs_dirs]


def _roots() -> list[Path]:
    from conda.base.context import context

    return [Path(context.root_prefix)]


def runtime() -> Runtime:
    from .install import install_explicit

    return Runtime(
        command="conda unsloth",
        conda=True,
        default_solver="libmamba",
        solvers={"libmamba": _libmamba, "rattler": _rattler},
        install=install_explicit,
        envs_dirs=_envs_dirs,
        roots=_roots,
    )

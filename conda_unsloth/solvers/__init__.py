"""Solver backends behind one protocol (``base.Solver``): ``libmamba`` through conda's plugin
manager (the default inside conda) and ``rattler`` through py-rattler (the default elsewhere).
Backends are imported only when chosen."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import UsageError
from ..runmode import in_conda

if TYPE_CHECKING:
    from .base import Solver

NAMES = ("libmamba", "rattler")


def default_solver() -> str:
    return "libmamba" if in_conda() else "rattler"


def get_solver(name: str | None) -> Solver:
    """The backend ``name`` (``libmamba`` or ``rattler``); None picks :func:`default_solver`."""
    chosen = (name or default_solver()).strip().lower()
    if chosen == "rattler":
        from .rattler import RattlerSolver

        return RattlerSolver()
    if chosen == "libmamba":
        from .conda_libmamba import CondaLibmambaSolver, conda_available

        if not conda_available():
            raise UsageError(
                "--solver libmamba needs conda with conda-libmamba-solver; conda is not "
                "installed in this Python",
                hints=["run it as `conda unsloth solve ...`, or use --solver rattler"],
            )
        return CondaLibmambaSolver()
    raise UsageError(f"--solver '{name}' is not a solver; choose one of {', '.join(NAMES)}")

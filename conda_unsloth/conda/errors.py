"""Our errors as conda's, at the hook: conda prints a ``CondaError`` as one message (no "ERROR
REPORT"), as JSON under ``--json``, and exits with its ``return_code``. An unsatisfiable solve
becomes conda's ``UnsatisfiableError`` kind, as a solve by ``conda create`` would."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conda import CondaError
from conda.exceptions import UnsatisfiableError

from ..errors import UnsolvableError

if TYPE_CHECKING:
    from ..errors import UnslothError
    from ..runtime import Runtime


class CondaUnslothError(CondaError):  # type: ignore[misc]
    """Any expected conda-unsloth failure, printed by conda as ``CondaUnslothError: ...``."""

    def __init__(self, message: str, return_code: int, data: dict[str, Any]) -> None:
        super().__init__(message)
        self.return_code = return_code
        self.data = data

    def dump_map(self) -> dict[str, Any]:  # conda's --json error document
        doc: dict[str, Any] = super().dump_map()
        doc.update(self.data)
        return doc


class UnsolvableCondaError(UnsatisfiableError):  # type: ignore[misc]
    """An unsatisfiable solve: the solver's explanation first, then our hints."""

    def __init__(self, message: str, return_code: int, data: dict[str, Any]) -> None:
        CondaError.__init__(self, message)  # UnsatisfiableError's own __init__ formats conflicts
        self.return_code = return_code
        self.data = data
        self.allow_retry = False  # as conda-libmamba-solver's: do not re-solve

    def dump_map(self) -> dict[str, Any]:
        doc: dict[str, Any] = super().dump_map()
        doc.update(self.data)
        return doc


def conda_error(exc: UnslothError, runtime: Runtime) -> CondaError:
    """``exc`` (message and hints, naming ``runtime``'s command) as a conda error."""
    hints = [runtime.hint(h) for h in exc.hints]
    text = "\n".join([runtime.hint(exc.message), *(f"hint: {h}" for h in hints)])
    data = {**exc.to_json(), "hints": hints}
    cls = UnsolvableCondaError if isinstance(exc, UnsolvableError) else CondaUnslothError
    return cls(text, exc.return_code, data)


def os_error(exc: OSError) -> CondaError:
    """An ``OSError`` no verb turned into one of ours (disk full, permission denied, ...) as one
    line, as the standalone entry point prints it (conda would print an error report)."""
    where = f": {exc.filename}" if exc.filename else ""
    message = f"{exc.strerror or exc}{where}"
    data = {"error": type(exc).__name__, "message": message, "hints": [], "exit_code": 1}
    return CondaUnslothError(message, 1, data)


def broken_pipe() -> int:
    """stdout's reader went away (``conda unsloth env | head``): point stdout at /dev/null so
    nothing fails again when it is flushed at exit, and exit 1 as the standalone does."""
    import os
    import sys

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return 1

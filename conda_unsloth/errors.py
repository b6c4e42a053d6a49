"""One error tree for every expected failure.

```
UnslothError                 message + hints (each hint names the next command to run)
├── UsageError               bad flags / values on the command line (exit 2)
├── KnowledgeError           a broken or contradictory knowledge file (exit 2)
├── SpecError                an environment.yml / lock file we cannot use (exit 2)
├── SelectionError           a request the knowledge base refuses, with the nearest valid one (exit 2)
├── HostError                the host cannot run what was asked (driver too old, ...) (exit 2)
├── SolveError               the solver failed; `UnsolvableError` leads with its explanation
│   └── UnsolvableError
├── InstallError             create/install failed (rolled back)
├── PrefixError              a prefix that is missing, not an env, locked, or exists
└── VerifyError              verification could not run
```

When this module is imported inside a running conda (conda is already in ``sys.modules``),
``UnslothError`` subclasses ``conda.CondaError`` so conda prints the message without an
"ERROR REPORT" and uses ``return_code`` as the exit code. Outside conda it is a plain
``Exception``: the core never imports conda.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

_Base: type[Exception]
if "conda" in sys.modules:  # pragma: no cover - exercised only inside conda
    try:
        from conda import CondaError as _CondaError

        _Base = _CondaError
    except ImportError:
        _Base = Exception
else:
    _Base = Exception


class UnslothError(_Base):  # type: ignore[valid-type,misc]
    """Base of every expected failure: a one-line message plus hints."""

    return_code: int = 1

    def __init__(self, message: str, hints: Iterable[str] = (), **details: Any) -> None:
        # CondaError formats with ``message % kwargs`` only when kwargs are passed: pass none,
        # and set our fields afterwards (CondaError.__init__ assigns ``self.message`` itself).
        super().__init__(message)
        self.message = message
        self.hints = tuple(hints)
        self.details = details

    def __str__(self) -> str:
        if not self.hints:
            return self.message
        return self.message + "\n" + "\n".join(f"hint: {h}" for h in self.hints)

    def to_json(self) -> dict[str, Any]:
        return {
            "error": type(self).__name__,
            "message": self.message,
            "hints": list(self.hints),
            "exit_code": self.return_code,
        }


class UsageError(UnslothError):
    return_code = 2


class KnowledgeError(UnslothError):
    return_code = 2


class SpecError(UnslothError):
    return_code = 2


class SelectionError(UnslothError):
    return_code = 2


class HostError(UnslothError):
    return_code = 2


class SolveError(UnslothError):
    return_code = 1


class UnsolvableError(SolveError):
    return_code = 1


class InstallError(UnslothError):
    return_code = 1


class PrefixError(UnslothError):
    return_code = 2


class VerifyError(UnslothError):
    return_code = 1

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

These are plain exceptions: the core never imports conda. The standalone entry point prints
them as one line plus hints; inside conda the plugin's hook converts them to conda's errors
(``conda_unsloth/conda/errors.py``) so conda prints them its way with our exit code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any


class UnslothError(Exception):
    """Base of every expected failure: a one-line message plus hints."""

    return_code: int = 1

    def __init__(self, message: str, hints: Iterable[str] = (), **details: Any) -> None:
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

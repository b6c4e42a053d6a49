"""Signals end a run the way Ctrl-C does: SIGTERM, SIGINT, SIGHUP and SIGQUIT raise
:class:`Interrupted` (a ``KeyboardInterrupt``) in the main thread, so every ``finally`` and
rollback runs; ``signals_held`` lets a short critical step finish first. The standalone entry
point installs the handlers for the whole run; a create's transaction does too."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

CAUGHT_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)


class Interrupted(KeyboardInterrupt):
    """A signal during a create: unwinds through the rollback like KeyboardInterrupt."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


_HOLD = [0]  # >0 while a critical step runs
_PENDING: list[int] = []  # a signal that arrived during a critical step


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """Turn SIGTERM, SIGINT, SIGHUP and SIGQUIT into ``Interrupted`` so cleanup runs; during a
    ``signals_held`` step the signal is remembered and raised right after the step."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if _HOLD[0] > 0:
            _PENDING.append(signum)
            return
        raise Interrupted(signum)

    old = {s: signal.signal(s, handler) for s in CAUGHT_SIGNALS} if _main_thread() else {}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        _PENDING.clear()


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Run a short critical step to its end: a signal that arrives meanwhile is raised after it.
    (Not pthread_sigmask: Python runs handlers in the main thread whichever thread received the
    signal, and rattler's native threads do not share our mask.)"""
    _HOLD[0] += 1
    try:
        yield
    finally:
        _HOLD[0] -= 1
    if _HOLD[0] == 0 and _PENDING:
        raise Interrupted(_PENDING.pop())

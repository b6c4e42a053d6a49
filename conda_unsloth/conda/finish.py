"""Leaving conda's process after a verb that loaded py-rattler (``--solver rattler``).

py-rattler 0.28 runs its async calls on pyo3-async-runtimes' global tokio runtime, a static that
is never shut down: after a failed fetch its worker threads may still be finishing tasks when
CPython finalizes, take the GIL then, and abort the process ("Fatal Python error:
PyGILState_Release ... finalizing", SIGABRT, or SIGSEGV) instead of exiting with our code (about
1 run in 4 of a failing offline solve inside conda; PyO3/pyo3-async-runtimes issue #40). The
standalone entry point leaves with ``os._exit`` (``__main__.entry``); inside conda the plugin's
action returns to conda's ``do_call`` and conda exits through interpreter finalization.

So when rattler was loaded, :func:`finish` and :func:`finish_error` do what conda would still
do after our action (``do_call``: the post-command hooks, only after a success; ``main``: print
an error through conda's ``ExceptionHandler`` and take its exit code), flush, and ``os._exit``.
Without rattler, conda's own path runs unchanged. Skipped in rattler runs only: ``atexit``
handlers (conda registers none for a plugin subcommand) and interpreter finalization.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import NoReturn


def rattler_loaded() -> bool:
    return "rattler" in sys.modules


def finish(rc: int, command: str) -> NoReturn:
    """After a successful action: conda's post-command hooks for ``command`` (as ``do_call``
    runs them), then leave with ``rc``."""
    try:
        from conda.base.context import context

        context.plugin_manager.invoke_post_commands(command)
    except BaseException as exc:  # conda's main would handle it: so do we
        finish_error(exc)
    leave(rc)


def finish_error(exc: BaseException) -> NoReturn:
    """Print ``exc`` exactly as conda's ``main`` would (``ExceptionHandler``: the message, JSON
    under ``--json``, or the error report) and leave with the code conda would return."""
    from conda.exception_handler import ExceptionHandler

    leave(ExceptionHandler().handle_exception(exc, exc.__traceback__))


def exit_code(value: object) -> int:
    """``sys.exit(value)`` semantics: None is 0, an int is itself, anything else is printed to
    stderr and is 1."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    with contextlib.suppress(Exception):
        print(value, file=sys.stderr)
    return 1


def leave(value: object) -> NoReturn:
    """Flush stdout, stderr and the logging handlers, then ``os._exit``: rattler's threads never
    see a finalizing interpreter."""
    import logging

    code = exit_code(value)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe: nothing more can be said
            stream.flush()
    with contextlib.suppress(Exception):
        logging.shutdown()
    os._exit(code)

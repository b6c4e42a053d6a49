"""conda plugin hooks. conda imports this module on *every* command, so it imports nothing but
conda's hook marker and plugin types (both already loaded by conda) and does all real work
lazily inside the hooks. Budget: < 1 ms (bench/bench_import.py measures it).

Without conda installed this module imports cleanly and registers nothing.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not `from typing import ...`: importing typing alone costs ~7 ms
try:
    from conda.plugins import hookimpl
    from conda.plugins import types as _types
except ImportError:  # standalone install: no conda, nothing to register
    hookimpl = None
    _types = None

if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

SUMMARY = "Create, verify and diagnose conda GPU environments for Unsloth."
NAME = "unsloth"


def _action(args: Any) -> int:
    """Run the verb in conda's runtime; our errors leave as conda's (conda/errors.py). After a
    verb that loaded py-rattler, finish conda's remaining steps here and leave with os._exit:
    rattler's threads can abort a finalizing interpreter (conda/finish.py)."""
    from .conda.finish import rattler_loaded

    try:
        rc = _run(args)
    except BaseException as exc:
        if not rattler_loaded():
            raise
        from .conda.finish import finish_error

        finish_error(exc)
    if not rattler_loaded():
        return rc
    from .conda.finish import finish

    finish(rc, NAME)


def _run(args: Any) -> int:
    from .__main__ import tolerant_streams
    from .cli import execute
    from .conda.parser import settle
    from .conda.runtime import runtime
    from .errors import UnslothError

    tolerant_streams()
    settle(args)
    rt = runtime()
    try:
        return execute(args, rt)
    except UnslothError as exc:
        from .conda.errors import conda_error

        raise conda_error(exc, rt) from None
    except BrokenPipeError:  # `conda unsloth env | head`: as the standalone entry point
        from .conda.errors import broken_pipe

        return broken_pipe()
    except OSError as exc:  # disk full, permissions... where no verb names them: one line
        from .conda.errors import os_error

        raise os_error(exc) from None


def _configure_parser(parser: Any) -> None:
    from .cli import configure_parser
    from .conda.parser import defer_to_context

    configure_parser(parser, conda=True)
    defer_to_context(parser)


if hookimpl is not None:

    @hookimpl  # type: ignore[untyped-decorator]
    def conda_subcommands() -> Iterator[Any]:
        yield _types.CondaSubcommand(
            name=NAME,
            summary=SUMMARY,
            action=_action,
            configure_parser=_configure_parser,
        )

    @hookimpl  # type: ignore[untyped-decorator]
    def conda_health_checks() -> Iterator[Any]:
        import dataclasses

        from .conda.health import health_check_kwargs

        # fixer/summary/fix exist only from conda 26.1; an unknown field is a TypeError
        fields = {f.name for f in dataclasses.fields(_types.CondaHealthCheck)}
        yield _types.CondaHealthCheck(**health_check_kwargs(fields))

    @hookimpl  # type: ignore[untyped-decorator]
    def conda_post_commands() -> Iterator[Any]:
        from .conda.guard import RUN_FOR, post_command

        yield _types.CondaPostCommand(
            name="unsloth-guard", action=post_command, run_for=set(RUN_FOR)
        )

    @hookimpl  # type: ignore[untyped-decorator]
    def conda_environment_exporters() -> Iterator[Any]:
        exporter = getattr(_types, "CondaEnvironmentExporter", None)
        if exporter is None:  # conda < 25.7
            return
        import dataclasses

        from .conda.exporters import exporter_kwargs

        fields = {f.name for f in dataclasses.fields(exporter)}
        for kwargs in exporter_kwargs(fields):
            yield exporter(**kwargs)

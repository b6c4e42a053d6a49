"""Standalone entry point: `conda-unsloth ...` / `python -m conda_unsloth ...` (no conda needed)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from .errors import UnslothError, UsageError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import NoReturn


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is a one-line UsageError (exit 2) instead of usage + exit."""

    verb: str | None = None  # the verb on the command line, for the hint of a bad flag

    def error(self, message: str) -> NoReturn:
        prog = f"{self.prog} {self.verb}" if self.verb and " " not in self.prog else self.prog
        raise UsageError(f"{message}", hints=[f"{prog} --help"])


def one_line(text: str) -> str:
    """``text`` with control characters escaped: a message that quotes user input stays one
    line whatever the input held."""
    return "".join(c if c.isprintable() or c == " " else ascii(c)[1:-1] for c in text)


def tolerant_streams() -> None:
    """A path or name our streams' encoding cannot write (PYTHONIOENCODING=ascii, a C locale)
    is written escaped, never a UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    from .cli import execute, generate_parser
    from .runtime import command_of, standalone
    from .signals import signals_raise

    argv = list(sys.argv[1:] if argv is None else argv)
    want_json = "--json" in argv
    tolerant_streams()
    runtime = standalone(command_of())
    try:
        with signals_raise():  # SIGTERM/SIGHUP/SIGQUIT end a run as Ctrl-C does
            parser = generate_parser(_Parser, argv)
            args = parser.parse_args(argv)  # a bad flag: _Parser.error names the verb's help
            return execute(args, runtime)
    except UnslothError as exc:
        hints = [runtime.hint(h) for h in exc.hints]
        if want_json:
            import json

            json.dump({**exc.to_json(), "hints": hints}, sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            print(f"conda-unsloth: error: {one_line(runtime.hint(exc.message))}", file=sys.stderr)
            for h in hints:
                print(f"hint: {one_line(h)}", file=sys.stderr)
        return exc.return_code
    except (
        KeyboardInterrupt
    ) as exc:  # also signals.Interrupted (SIGTERM/SIGHUP), after its rollback
        import signal

        signum = getattr(exc, "signum", signal.SIGINT)
        print(
            f"conda-unsloth: interrupted (signal {signum}); nothing was left half-done",
            file=sys.stderr,
        )
        return 128 + signum
    except BrokenPipeError:
        return 1
    except OSError as exc:  # disk full, permissions, ... outside the places that name them
        where = f": {exc.filename}" if exc.filename else ""
        print(f"conda-unsloth: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1


def entry() -> NoReturn:
    """Console-script entry point. py-rattler 0.28 can crash while the interpreter shuts down
    after a failed fetch (SIGSEGV/SIGABRT instead of our exit code): once it was loaded, leave
    with os._exit after flushing, so the exit code is always ours."""
    rc = main()
    sys.stdout.flush()
    sys.stderr.flush()
    if "rattler" in sys.modules:
        os._exit(rc)
    sys.exit(rc)


if __name__ == "__main__":
    entry()

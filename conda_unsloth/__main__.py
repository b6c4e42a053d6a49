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

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}", hints=[f"{self.prog} --help"])


def main(argv: Sequence[str] | None = None) -> int:
    from .cli import execute, generate_parser

    argv = list(sys.argv[1:] if argv is None else argv)
    want_json = "--json" in argv
    try:
        parser = generate_parser(_Parser, argv)
        args = parser.parse_args(argv)
        return execute(args)
    except UnslothError as exc:
        if want_json:
            import json

            json.dump(exc.to_json(), sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            print(f"conda-unsloth: error: {exc.message}", file=sys.stderr)
            for h in exc.hints:
                print(f"hint: {h}", file=sys.stderr)
        return exc.return_code
    except (
        KeyboardInterrupt
    ) as exc:  # also prefixtx.Interrupted (SIGTERM/SIGHUP), after its rollback
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

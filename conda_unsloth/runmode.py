"""Whether this process is running a verb as ``conda unsloth`` (conda's CLI called the plugin)
or as the standalone ``conda-unsloth``. Inside conda the solver defaults to libmamba, packages
are linked by conda's own transaction and env locations come from conda's ``context``.

The mode is set by the plugin's entry point for the duration of the verb, never guessed from
``sys.modules``: a process that merely imported conda (a test run, a script using both) is not
conda running us, and guessing made standalone runs pick libmamba there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

_in_conda = False


def in_conda() -> bool:
    return _in_conda


@contextlib.contextmanager
def inside_conda() -> Iterator[None]:
    """Run the enclosed verb as ``conda unsloth``; the previous mode is restored afterwards."""
    global _in_conda
    previous, _in_conda = _in_conda, True
    try:
        yield
    finally:
        _in_conda = previous

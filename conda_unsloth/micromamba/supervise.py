"""Run a command in a process group that never outlives conda-unsloth.

``python -m conda_unsloth.micromamba.supervise PARENT_PID FDS CMD...`` is how
:func:`conda_unsloth.micromamba.Micromamba.run` starts micromamba: this process leads a new
session (the caller starts it with ``start_new_session``), so micromamba and every process it
starts (package extraction runs as ``micromamba package extract`` children) share its group.

- The caller interrupted (Ctrl-C, SIGTERM): it kills the whole group itself.
- The caller killed with SIGKILL: the kernel sends this process SIGTERM (PR_SET_PDEATHSIG) and
  it kills the group, so no extraction keeps writing into the package cache and nothing holds
  the prefix lock.
- micromamba ends on its own: its exit code is this process's.

``FDS`` (comma separated, may be empty) are inherited file descriptors to pass on: the
caller's prefix lock, which micromamba holds while it writes into the prefix.
Standard library only: it runs before anything else of ours could be imported.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from types import FrameType

PR_SET_PDEATHSIG = 1


def _kill_group(signum: int = 0, frame: FrameType | None = None) -> None:
    os.killpg(0, signal.SIGKILL)  # this process too: nothing of the group is left


def main(argv: list[str]) -> int:
    parent = int(argv[0])
    fds = tuple(int(f) for f in argv[1].split(",") if f)
    cmd = argv[2:]
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, _kill_group)
    # not Linux (no prctl): the caller's own group kill still covers its interrupts
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the caller died before the line above
        _kill_group()
    proc = subprocess.Popen(cmd, pass_fds=fds)
    code = proc.wait()
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

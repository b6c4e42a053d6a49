"""Link a list of records into a prefix with py-rattler, in a process of its own.

`install.install_with_rattler` runs this as ``python -m conda_unsloth.rattler_install -`` with the
job (JSON) on stdin (``JOB.json`` instead of ``-`` reads a file):
rattler links with worker threads that keep going after the calling Python is interrupted, so
the install lives in a child the parent can kill — and wait for — before it rolls back.
Exit 0 on success; 1 with one line on stderr on failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any


def _records(items: list[dict[str, Any]]) -> list[Any]:
    import rattler

    out = []
    for r in items:
        noarch = r.get("noarch") if r.get("noarch") in ("python", "generic") else None
        pr = rattler.PackageRecord(
            name=r["name"],
            version=r["version"],
            build=rattler.BuildString(r["build"]),
            build_number=int(r.get("build_number") or 0),
            subdir=r["subdir"],
            noarch=noarch,
            depends=list(r.get("depends") or ()),
            constrains=list(r.get("constrains") or ()),
            sha256=bytes.fromhex(r["sha256"]) if r.get("sha256") else None,
            md5=bytes.fromhex(r["md5"]) if r.get("md5") else None,
            size=r.get("size"),
        )
        out.append(rattler.RepoDataRecord(pr, r["fn"], r["url"], r["channel"]))
    return out


def main(argv: list[str]) -> int:
    import rattler

    if argv[0] == "-":  # how install_with_rattler passes it
        job = json.load(sys.stdin)
    else:
        with open(argv[0], encoding="utf-8") as fh:
            job = json.load(fh)
    try:
        asyncio.run(
            rattler.install(
                _records(job["records"]),
                target_prefix=job["prefix"],
                cache_dir=job["cache"],
                show_progress=bool(job.get("progress")),
            )
        )
    except Exception as exc:  # any rattler failure: one line for the parent to report
        text = str(exc).strip()
        print(text.splitlines()[0] if text else type(exc).__name__, file=sys.stderr)
        return 1
    if job.get("progress"):  # rattler's last progress line ends without one
        sys.stderr.write("\n")
    return 0


if __name__ == "__main__":
    # py-rattler 0.28 can crash while the interpreter shuts down (SIGSEGV/SIGABRT, "<no Python
    # frame>"), which would turn a finished install into a failure: leave with os._exit.
    rc = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)

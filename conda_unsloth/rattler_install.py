"""Link a list of records into a prefix with py-rattler, in a process of its own.

`install.install_with_rattler` runs this as ``python -m conda_unsloth.rattler_install -`` with the
job (JSON) on stdin (``JOB.json`` instead of ``-`` reads a file):
rattler links with worker threads that keep going after the calling Python is interrupted, so
the install lives in a child the parent can kill — and wait for — before it rolls back.
Exit 0 on success; 1 with one line on stderr on failure: rattler's whole chain of causes on one
line (the cause that names a full disk or a hash mismatch is in it), credentials removed.

Before anything is linked (the parent has checked ``file://`` packages against their records:
py-rattler 0.28 links a ``file://`` package whatever its bytes are; it checks the sha256, or the
md5, of what it downloads): with ``"offline": true`` every package that is not a ``file://``
one must already be in the package cache under the record's sha256 (``CacheIndex``), or
nothing is installed and no connection is opened. After linking, the ``url`` and ``channel``
of each ``conda-meta/*.json`` record are rewritten without credentials (rattler writes the URL
it downloaded from, token and password included).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
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


async def not_cached(items: list[dict[str, Any]], records: list[Any], cache: str) -> list[str]:
    """The file names of the non-``file://`` records the package cache does not hold (under
    the record's sha256): what rattler would download."""
    import rattler

    remote = [(i, r) for i, r in zip(items, records, strict=True) if not _is_file(i["url"])]
    if not remote:
        return []
    index = await rattler.PackageCache.new_layered([cache]).index()
    return [str(i["fn"]) for i, r in remote if not index.contains_record(r)]


def _is_file(url: str) -> bool:
    return url[:7].lower() == "file://"


def one_line(exc: BaseException) -> str:
    """rattler's message and every cause, on one line, credentials removed."""
    from conda_unsloth.redact import redact_text

    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    lines = [ln.removeprefix("Caused by:").strip() for ln in lines]
    return redact_text(": ".join(dict.fromkeys(lines)) or type(exc).__name__)


def redact_meta(prefix: Path, items: list[dict[str, Any]]) -> None:
    """Rewrite the ``url``/``channel`` of the records just linked without credentials."""
    from conda_unsloth.redact import redact_url

    for item in items:
        fn = str(item["fn"])
        stem = fn.removesuffix(".conda").removesuffix(".tar.bz2")
        path = prefix / "conda-meta" / f"{stem}.json"
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        changed = False
        for key in ("url", "channel"):
            value = doc.get(key)
            if isinstance(value, str) and redact_url(value) != value:
                doc[key] = redact_url(value)
                changed = True
        if changed:
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
            tmp.replace(path)


def main(argv: list[str]) -> int:
    import rattler

    if argv[0] == "-":  # how install_with_rattler passes it
        job = json.load(sys.stdin)
    else:
        with open(argv[0], encoding="utf-8") as fh:
            job = json.load(fh)
    items: list[dict[str, Any]] = job["records"]
    try:
        records = _records(items)
        if job.get("offline"):
            missing = asyncio.run(not_cached(items, records, job["cache"]))
            if missing:
                print(
                    f"offline: {len(missing)} package(s) would be downloaded, e.g. {missing[0]}"
                    " (not a file:// package and not in the package cache)",
                    file=sys.stderr,
                )
                return 3
        asyncio.run(
            rattler.install(
                records,
                target_prefix=job["prefix"],
                cache_dir=job["cache"],
                show_progress=bool(job.get("progress")),
            )
        )
        redact_meta(Path(job["prefix"]), items)
    except Exception as exc:  # any rattler failure: one line for the parent to report
        print(one_line(exc), file=sys.stderr)
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

"""A raw py-rattler solve as a whole process: what a minimal script that solves the same specs,
channels and virtual packages with ``rattler.solve`` costs (the baseline of bench_solve's cold
rows). With ``--install PREFIX`` it also installs the solution with ``rattler.install`` (the
raw side of bench_create).

    python bench/raw_solve.py JOB.json [--install PREFIX --cache DIR]

JOB.json: {"channels": [...], "specs": [...], "platform": "linux-64",
           "virtual_packages": [[name, version, build], ...], "cache": DIR, "offline": false}
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import rattler


def main() -> int:
    with open(sys.argv[1]) as fh:
        job = json.load(fh)
    config = rattler.SourceConfig(
        cache_action="force-cache-only" if job.get("offline") else "cache-or-fetch",
        sharded_enabled=False,
    )
    gateway = rattler.Gateway(cache_dir=job["cache"], default_config=config)
    records = asyncio.run(
        rattler.solve(
            sources=job["channels"],
            specs=[rattler.MatchSpec(s) for s in job["specs"]],
            gateway=gateway,
            platforms=[job["platform"], "noarch"],
            virtual_packages=[
                rattler.GenericVirtualPackage(
                    rattler.PackageName(n), rattler.Version(v), rattler.BuildString(b)
                )
                for n, v, b in job["virtual_packages"]
            ],
            channel_priority=rattler.ChannelPriority.Strict,
        )
    )
    if "--install" in sys.argv:
        prefix = sys.argv[sys.argv.index("--install") + 1]
        cache = sys.argv[sys.argv.index("--cache") + 1]
        asyncio.run(rattler.install(records, target_prefix=prefix, cache_dir=Path(cache)))
    print(len(records))
    return 0


if __name__ == "__main__":
    rc = main()
    sys.stdout.flush()
    # as conda-unsloth leaves (its entry point): py-rattler 0.28 may crash at shutdown
    os._exit(rc)

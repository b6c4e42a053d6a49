"""`conda-unsloth create` with the rattler backend on a local channel (this machine's CPython,
pip and stand-ins for the GPU stack; see tests/envbuild.py): wall time and peak memory by
stage, median of N runs.

    python bench/bench_create.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _util import print_table, save

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests import envbuild

    runs: list[dict[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as d:
        demo = envbuild.build_demo(Path(d))
        env = {**os.environ, "CONDA_UNSLOTH_CACHE": str(demo / "cache"), "CONDA_UNSLOTH_NVML": "0"}
        for i in range(args.runs + 1):  # the first run fills the package cache; not counted
            prefix = demo / f"env{i}"
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "conda_unsloth",
                    *envbuild.create_args(demo, prefix, "--json"),
                ],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            )
            if i:
                doc = json.loads(proc.stdout)
                runs.append({"seconds": doc["seconds"], "peak_rss_mb": doc["peak_rss_mb"]})
    rows = []
    for stage in ("solve", "install", "pip", "verify", "total"):
        secs = [r["seconds"][stage] for r in runs]
        mem = [
            r["peak_rss_mb"].get(stage) for r in runs if r["peak_rss_mb"].get(stage) is not None
        ]
        rows.append(
            {
                "stage": stage,
                "median_s": statistics.median(secs),
                "min_s": min(secs),
                "max_s": max(secs),
                "peak_rss_mb": max(mem) if mem else None,
                "n": len(secs),
            }
        )
    print_table(rows, ["stage", "median_s", "min_s", "max_s", "peak_rss_mb", "n"])
    print("saved", save("create", "python bench/bench_create.py", rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

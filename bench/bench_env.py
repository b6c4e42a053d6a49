"""Wall time of `conda-unsloth env` (plan + write environment.yml) against `python -c pass`
in the same run, median of N runs each. Targets: <= 0.3 s absolute, <= 3x `python -c pass`.

    python bench/bench_env.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from _util import print_table, save, summary


def timed(cmd: list[str], cwd: str) -> float:
    env = {**os.environ, "CONDA_UNSLOTH_NVML": "0"}
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        env_cmd = [
            sys.executable,
            "-m",
            "conda_unsloth",
            "env",
            "--cuda",
            "12.1",
            "-o",
            "env.yml",
            "-q",
        ]
        base_cmd = [sys.executable, "-c", "pass"]
        timed(env_cmd, d)  # warm the file cache
        env_s, base_s = [], []
        for _ in range(args.runs):
            env_s.append(timed(env_cmd, d))
            base_s.append(timed(base_cmd, d))
    e, b = summary(env_s), summary(base_s)
    rows = [
        {
            "measure": "conda-unsloth env --cuda 12.1 (s)",
            **e,
            "target": 0.3,
            "ok": e["median"] <= 0.3,
        },
        {"measure": "python -c pass (s)", **b},
        {
            "measure": "ratio env / python -c pass",
            "median": e["median"] / b["median"],
            "target": 3.0,
            "ok": e["median"] / b["median"] <= 3.0,
        },
    ]
    print_table(rows, ["measure", "median", "min", "max", "n", "target", "ok"])
    print("saved", save("env", "python bench/bench_env.py", rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

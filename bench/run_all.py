"""Run every benchmark in one command; each prints its table and writes JSON under
bench/results/ (bench_verify: --json-out). Targets (from the issues): plugin import <= 1 ms;
`env` <= 150 ms wall; our solve <= 1.1x raw rattler.solve; the whole
verification <= 1.15x a bare `import unsloth` (GPU machine only).

    python bench/run_all.py [--quick]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = ap.parse_args()
    q = args.quick
    runs = [
        ["bench_import.py", "--runs", "10" if q else "25"],
        ["bench_env.py", "--runs", "5" if q else "15"],
        ["bench_solve.py", "--repeat", "10" if q else "30"],
        ["bench_create.py", "--runs", "1" if q else "5"],
        [
            "bench_verify.py",
            "--repeat",
            "1" if q else "3",
            "--json-out",
            str(HERE / "results" / "verify.json"),
        ],
    ]
    failed = []
    for cmd in runs:
        print(f"\n=== {' '.join(cmd)}", flush=True)
        rc = subprocess.run(
            [sys.executable, str(HERE / cmd[0]), *cmd[1:]], cwd=HERE, check=False
        ).returncode
        if rc:
            failed.append(f"{cmd[0]} (exit {rc}: a target missed or an error)")
    print(
        "\n"
        + (
            "all benchmarks within target"
            if not failed
            else "not within target: " + ", ".join(failed)
        )
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

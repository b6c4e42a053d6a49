"""Import cost of conda_unsloth.plugin (imported by conda on every command).

Measures the cumulative time `python -X importtime` reports for the module, median of N runs
(default 25), in a throw-away venv with a regular (non-editable) install of this checkout — what
users get; an editable install adds ~1 ms of path-hook overhead. Target: <= 1 ms. pip is
imported first, so the one-off scan of site-packages that the first import from it pays (about
1 ms on the development machine) is not counted: inside conda, conda has paid it. Without conda
the module's `from conda.plugins import ...` fails fast; the cost inside a real conda, with
conda's modules already loaded, is measured by bench/bench_conda.py.

    python bench/bench_import.py [--runs 25] [--python PATH]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from _util import print_table, save, summary

TARGET_US = 1000
ROOT = Path(__file__).resolve().parent.parent


def one_run(python: str) -> int:
    proc = subprocess.run(
        # pip first: the first import from site-packages pays for scanning that folder (~1 ms
        # here); inside conda, conda itself (in the same site-packages) has paid it already
        [python, "-X", "importtime", "-c", "import pip; import conda_unsloth.plugin"],
        cwd=tempfile.gettempdir(),  # not the checkout: measure the installed module
        capture_output=True,
        text=True,
        check=True,
    )
    total = 0
    for line in proc.stderr.splitlines():
        # "import time: self [us] | cumulative | imported package"
        parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[2].strip() == "conda_unsloth.plugin":
            total = int(parts[1])
    return total


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=25)
    ap.add_argument(
        "--python", help="interpreter with conda_unsloth installed (default: a fresh venv)"
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        python = args.python
        if python is None:
            venv = Path(d) / "venv"
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            python = str(venv / "bin" / "python")
            subprocess.run(
                [python, "-m", "pip", "install", "-q", "--no-deps", str(ROOT)], check=True
            )
        one_run(python)  # warm: compile .pyc files
        samples = [float(one_run(python)) for _ in range(args.runs)]
    s = summary(samples)
    rows = [
        {
            "measure": "conda_unsloth.plugin cumulative import (us)",
            **s,
            "target": TARGET_US,
            "ok": s["median"] <= TARGET_US,
        }
    ]
    print_table(rows, ["measure", "median", "min", "max", "n", "target", "ok"])
    print("saved", save("import", "python bench/bench_import.py", rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

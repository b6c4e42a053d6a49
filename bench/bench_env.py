"""Wall time of `conda-unsloth env` (plan + write environment.yml) against `python -c pass` in
the same run, median of N interleaved runs each. Targets: <= 0.3 s absolute, <= 3x `python -c
pass`.

    python bench/bench_env.py [--runs 21]

What is timed is the installed console script `conda-unsloth` (what a user types), on this
machine's default host detection (NVML, then nvidia-smi). The package is byte-compiled first, as
any install does: an editable install under PYTHONDONTWRITEBYTECODE=1 would otherwise compile
every module on every run. Two more rows put the ratio in context: `python -m conda_unsloth` (adds
runpy), and a bare `python -c "import ..."` of what the verb cannot do without (re, which the
console script itself imports, argparse, _pickle for the knowledge cache, zlib for its key).

What keeps `env` near that floor (each is tested where it lives): records instead of dataclasses
(`record.py`); the knowledge loader answers selection's PEP 440 questions and runs the known-issue
rules over every stack once, at load (so no `packaging`, no rules); no typing, pathlib, json,
tempfile, shutil, signal or pickle.py (the cache is read with `_pickle`) on the path; ctypes only
where an NVIDIA driver node exists.
`python -X importtime $(which conda-unsloth) env` shows what a change brings back.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _util import print_table, save, summary

import conda_unsloth

FLOOR = "import re, argparse, _pickle, zlib"
ARGS = ["env", "--cuda", "12.1", "-o", "env.yml", "-q"]


def timed(cmd: list[str], cwd: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=21)
    args = ap.parse_args()
    compileall.compile_dir(str(Path(conda_unsloth.__file__).parent), quiet=1)
    script = shutil.which("conda-unsloth", path=os.path.dirname(sys.executable))
    if script is None:
        print("conda-unsloth is not installed next to this python: pip install -e .")
        return 2
    cmds = {
        "env": [script, *ARGS],
        "module": [sys.executable, "-m", "conda_unsloth", *ARGS],
        "floor": [sys.executable, "-c", FLOOR],
        "base": [sys.executable, "-c", "pass"],
    }
    samples: dict[str, list[float]] = {k: [] for k in cmds}
    with tempfile.TemporaryDirectory() as d:
        for cmd in cmds.values():
            timed(cmd, d)  # warm the file cache and the knowledge cache
        for _ in range(args.runs):
            for k, cmd in cmds.items():
                samples[k].append(timed(cmd, d))
    s = {k: summary(v) for k, v in samples.items()}
    base = s["base"]["median"]
    rows = [
        {"measure": "conda-unsloth env --cuda 12.1 (s)", **s["env"], "target": 0.3},
        {"measure": "python -c pass (s)", **s["base"]},
        {
            "measure": "ratio env / python -c pass",
            "median": s["env"]["median"] / base,
            "target": 3.0,
        },
        {"measure": "python -m conda_unsloth env ... (s)", **s["module"]},
        {"measure": f'floor: python -c "{FLOOR}" (s)', **s["floor"]},
        {"measure": "ratio floor / python -c pass", "median": s["floor"]["median"] / base},
    ]
    for r in rows:
        if "target" in r:
            r["ok"] = r["median"] <= r["target"]
    print_table(rows, ["measure", "median", "min", "max", "n", "target", "ok"])
    print("saved", save("env", "python bench/bench_env.py", rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

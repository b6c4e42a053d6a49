"""Benchmark the verification probe: per-check seconds and the probe's total wall time, against a
bare ``python -I -c "import unsloth"`` (or ``import torch`` when unsloth is absent) in the same
run, with the same interpreter and the probe's own environment for unsloth (offline switches,
``UNSLOTH_DISABLE_CPU_FALLBACK=1``).

    python bench/bench_verify.py                          # CPU torch venv (created on first use)
    python bench/bench_verify.py --python /opt/env/bin/python --repeat 3 --json-out bench.json

Default interpreter: $CONDA_UNSLOTH_BENCH_PYTHON, else a venv with the CPU build of torch 2.13.0
in ~/.cache/conda-unsloth/bench-torch-cpu (``pip install torch==2.13.0``). Prints a table, then
one JSON document (machine, versions, numbers, the command that reproduces it).

``--no-isolate`` runs the interpreter without ``-I`` (PYTHONPATH and the user site count), for
an env whose packages come in through PYTHONPATH (``scripts/gpu-check.sh --no-venv``). A probe
run that writes no report (exit code 2, a crash) stops the benchmark with exit code 1.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PROBE = ROOT / "conda_unsloth" / "verify" / "probe.py"
KERNEL = ROOT / "conda_unsloth" / "verify" / "triton_kernel.py"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "conda-unsloth"


def default_python() -> Path:
    env = os.environ.get("CONDA_UNSLOTH_BENCH_PYTHON")
    if env:
        return Path(env)
    prefix = CACHE / "bench-torch-cpu"
    py = prefix / "bin" / "python"
    if not py.is_file():
        print(f"creating {prefix} (pip install torch==2.13.0)", file=sys.stderr)
        venv.EnvBuilder(with_pip=True, symlinks=True).create(prefix)
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "--no-compile", "torch==2.13.0"], check=True
        )
    return py


def unsloth_env() -> dict[str, str]:
    """``UNSLOTH_ENV`` of probe.py (standard library only, loaded by path)."""
    spec = importlib.util.spec_from_file_location("conda_unsloth_bench_probe", PROBE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(module.UNSLOTH_ENV)


def has_module(python: Path, name: str, isolate: list[str]) -> bool:
    code = f"import importlib.util,sys; sys.exit(0 if importlib.util.find_spec({name!r}) else 1)"
    return subprocess.run([str(python), *isolate, "-c", code], check=False).returncode == 0


def timed(
    cmd: list[str], env: dict[str, str] | None = None, cwd: str | None = None
) -> tuple[float, int]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, check=False, env=env, cwd=cwd)
    return time.perf_counter() - t0, proc.returncode


def gpu_name() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return (
        out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--python", type=Path, help="interpreter of the env to verify")
    p.add_argument("--repeat", type=int, default=3, help="runs of each command (median reported)")
    p.add_argument("--checks", default="", help="probe --checks")
    p.add_argument("--expect-cuda", help="probe --expect-cuda")
    p.add_argument("--json-out", type=Path, help="also write the JSON document here")
    p.add_argument(
        "--no-isolate",
        action="store_true",
        help="run without python -I (honour PYTHONPATH, e.g. gpu-check.sh --no-venv)",
    )
    args = p.parse_args(argv)
    python = args.python or default_python()
    isolate = [] if args.no_isolate else ["-I"]
    baseline_mod = "unsloth" if has_module(python, "unsloth", isolate) else "torch"
    # the same environment as the probe's unsloth worker (offline switches, no CPU fallback):
    # without HF_DATASETS_OFFLINE & co an offline node spends seconds on network attempts
    offline = {**os.environ, **unsloth_env()}

    probe_wall: list[float] = []
    bare_wall: list[float] = []
    per_check: dict[str, list[float]] = {}
    statuses: dict[str, str] = {}
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        cmd = [str(python), *isolate, str(PROBE), "--json", str(out), "--kernel", str(KERNEL)]
        if args.checks:
            cmd += ["--checks", args.checks]
        if args.expect_cuda:
            cmd += ["--expect-cuda", args.expect_cuda]
        for _ in range(args.repeat):
            # alternate the two so page-cache warmth favours neither
            # in a scratch folder, as the probe's workers run: `import unsloth` writes
            # unsloth_compiled_cache/ into its working directory
            secs, _rc = timed(
                [str(python), *isolate, "-c", f"import {baseline_mod}"], offline, cwd=tmp
            )
            bare_wall.append(secs)
            out.unlink(missing_ok=True)  # never read a report of an earlier repeat
            secs, rc = timed(cmd, cwd=tmp)
            probe_wall.append(secs)
            if rc not in (0, 1) or not out.is_file():
                print(
                    f"bench_verify: the probe failed (exit code {rc}, "
                    f"{'no report' if not out.is_file() else 'report written'}): "
                    + " ".join(shlex.quote(a) for a in cmd),
                    file=sys.stderr,
                )
                return 1
            report = json.loads(out.read_text())
            for c in report["checks"]:
                per_check.setdefault(c["id"], []).append(float(c["seconds"]))
                statuses[c["id"]] = c["status"]

    med = statistics.median
    rows = [(cid, statuses[cid], med(v), max(v)) for cid, v in per_check.items()]
    print(f"{'check':<26} {'status':<6} {'median s':>9} {'max s':>7}")
    for cid, st, m, mx in rows:
        print(f"{cid:<26} {st:<6} {m:>9.3f} {mx:>7.3f}")
    print(f"{'probe total (wall)':<33} {med(probe_wall):>9.3f} {max(probe_wall):>7.3f}")
    print(f"{'bare import ' + baseline_mod:<33} {med(bare_wall):>9.3f} {max(bare_wall):>7.3f}")
    doc = {
        "benchmark": "verify",
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "gpu": gpu_name(),
            "hostname": platform.node(),
        },
        "python": str(python),
        "isolated": not args.no_isolate,
        "versions": report.get("versions", {}),
        "repeat": args.repeat,
        "probe_total_s": {"median": med(probe_wall), "all": probe_wall},
        "baseline": {
            "command": f"import {baseline_mod}",
            "median": med(bare_wall),
            "all": bare_wall,
        },
        "checks": {
            cid: {"status": statuses[cid], "median_s": med(v), "all": v}
            for cid, v in per_check.items()
        },
        "verdict_ok": report.get("ok"),
    }
    text = json.dumps(doc, indent=2)
    print(text)
    if args.json_out:
        args.json_out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`conda-unsloth create` on the offline demo (tests/envbuild.py: a local channel with this
machine's CPython, pip and stand-ins for the GPU stack, and a folder of the companions' wheels)
against the raw tools doing the same work, in one run, alternating, median of N:

- ``create (uv)`` / ``create (pip)``: the console script, ``--pip-installer uv|pip``;
  wall, CPU and the stages from its ``--json``;
- ``raw rattler``: ``bench/raw_solve.py --install``, a minimal script that solves the same
  specs with ``rattler.solve`` and installs them with ``rattler.install`` (the same package
  cache, warm);
- ``raw uv``: ``uv pip install --no-deps`` of the same 8 wheel files into that env;
- ``raw uv, fresh venv`` (and ``+ --compile-bytecode``): the same into a fresh
  ``python -m venv --without-pip`` of that python (the venv is made untimed).

Every row is measured twice over, with ``PYTHONDONTWRITEBYTECODE=1`` set and unset (set
explicitly both ways: the harness's own environment never decides). Wall and CPU come from
outside (``wait4``: the child and every descendant); peak memory is the largest sum of resident
memory over the whole process tree, sampled with psutil in one extra run per row (never the
harness's own memory). The uv and package caches are warm (one uncounted create first), as for
the raw tools.

Goals (issue 19): the pip stage (uv) <= 0.3 s and <= 4x the raw uv install into a fresh venv;
the create <= 1.5x (raw rattler + raw uv). Exit status 1 when one is missed.

    python bench/bench_create.py [--runs 5] [--pip-runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _util import med, print_table, run_measured, save

ROOT = Path(__file__).resolve().parent.parent
MODES = {"PYTHONDONTWRITEBYTECODE=1": "1", "PYTHONDONTWRITEBYTECODE unset": None}
GOAL_PIP_S = 0.3
GOAL_PIP_RATIO = 4.0
GOAL_CREATE_RATIO = 1.5


def _env(base: dict[str, str], mode: str | None) -> dict[str, str]:
    env = {k: v for k, v in base.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if mode is not None:
        env["PYTHONDONTWRITEBYTECODE"] = mode
    return env


def _job(demo: Path, cache: Path) -> dict[str, Any]:
    """The raw solve's job: the planned specs (what `create --cuda 12.1` solves), rewritten
    for the demo channel as our backend rewrites them."""
    from conda_unsloth import knowledge
    from conda_unsloth.host import Host
    from conda_unsloth.select import Request, select
    from conda_unsloth.solvers.rattler import channel_urls, rewrite_spec
    from conda_unsloth.spec import from_selection

    sel = select(Request(cuda="12.1"), Host(platform="linux-64", glibc="2.36"), knowledge.load())
    spec = from_selection(sel, None, None)
    urls = channel_urls([(demo / "channel").as_uri()], ["linux-64", "noarch"])
    return {
        "channels": urls,
        "specs": [rewrite_spec(s, urls, []) for s in spec.conda_specs()],
        "platform": "linux-64",
        "virtual_packages": [(v.name, v.version, v.build) for v in sel.target.virtual_packages()],
        "cache": str(cache / "rattler"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--pip-runs", type=int, default=3, help="runs of the (slow) pip installer")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests import envbuild

    script = shutil.which("conda-unsloth", path=os.path.dirname(sys.executable))
    uv = shutil.which("uv", path=os.path.dirname(sys.executable)) or shutil.which("uv")
    if script is None or uv is None:
        print(
            "needs the conda-unsloth console script and uv next to this python: pip install -e '.[test]'"
        )
        return 2
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {m: {} for m in MODES}
    with tempfile.TemporaryDirectory(prefix="bench-create-") as d:
        tmp = Path(d)
        demo = envbuild.build_demo(tmp / "demo")
        wheels = sorted(str(w) for w in (demo / "wheels").glob("*.whl"))
        cache = tmp / "cache"
        base = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))},
            "CONDA_UNSLOTH_CACHE": str(cache),
            "CONDA_UNSLOTH_NVML": "0",
            "CONDA_UNSLOTH_NVIDIA_SMI": "",
        }
        job = tmp / "job.json"
        job.write_text(json.dumps(_job(demo, cache)))
        raw_uv_cache = str(cache / "uv-raw")

        def create(prefix: Path, installer: str) -> list[str]:
            return [
                script,
                *envbuild.create_args(demo, prefix, "--json", "--pip-installer", installer),
            ]

        def raw_rattler(prefix: Path) -> list[str]:
            raw = [sys.executable, str(ROOT / "bench" / "raw_solve.py"), str(job)]
            return [*raw, "--install", str(prefix), "--cache", str(cache / "pkgs")]

        def raw_uv(python: Path, *extra: str) -> list[str]:
            return [uv, "pip", "install", "--no-deps", "-q", "--cache-dir", raw_uv_cache,
                    "--python", str(python), *extra, *wheels]  # fmt: skip

        def fresh_venv(src: Path, dest: Path) -> Path:
            # -I -B: making the venv must not compile (and so warm) that python's stdlib
            subprocess.run([str(src / "bin" / "python"), "-I", "-B", "-m", "venv",
                            "--without-pip", str(dest)], check=True, env=_env(base, "1"))  # fmt: skip
            return dest / "bin" / "python"

        # warm every cache once (package cache, uv caches, the repodata verdict), uncounted
        run_measured(create(tmp / "warm", "uv"), env=base)
        run_measured(raw_rattler(tmp / "warm-raw"), env=base)
        run_measured(raw_uv(tmp / "warm-raw" / "bin" / "python"), env=base)
        n = 0

        def one(mode: str, value: str | None, row: str, cmd: list[str], memory: bool) -> Any:
            nonlocal n
            m = run_measured(cmd, env=_env(base, value), memory=memory)
            entry: dict[str, Any] = {"wall": m.wall, "cpu": m.cpu, "peak_mb": m.peak_mb}
            if row.startswith("create"):
                doc = json.loads(m.stdout)
                entry["stages"] = doc["seconds"]
                entry["reported_peak_mb"] = doc["peak_rss_mb"]["total"]
            samples[mode].setdefault(row, []).append(entry)
            return m

        for i in range(max(args.runs, args.pip_runs) + 1):  # the last round samples memory
            memory = i == max(args.runs, args.pip_runs)
            for mode, value in MODES.items():
                n += 1
                p = tmp / f"r{n}"
                if i < args.runs or memory:
                    one(mode, value, "create (uv)", create(p / "uv", "uv"), memory)
                if i < args.pip_runs or memory:
                    one(mode, value, "create (pip)", create(p / "pip", "pip"), memory)
                if i < args.runs or memory:
                    one(
                        mode,
                        value,
                        "raw rattler (solve + install)",
                        raw_rattler(p / "raw"),
                        memory,
                    )
                    one(
                        mode,
                        value,
                        "raw uv (into that env)",
                        raw_uv(p / "raw" / "bin" / "python"),
                        memory,
                    )
                    # each fresh venv's python is a new env's (untimed), so each raw uv row
                    # pays the first run of that python as the create's pip stage does (the
                    # demo's stdlib has no bytecode)
                    run_measured(raw_rattler(p / "raw2"), env=_env(base, value))
                    venv = fresh_venv(p / "raw2", p / "venv")
                    one(mode, value, "raw uv (fresh venv)", raw_uv(venv), memory)
                    run_measured(raw_rattler(p / "raw3"), env=_env(base, value))
                    venv = fresh_venv(p / "raw3", p / "venvc")
                    one(mode, value, "raw uv (fresh venv) --compile-bytecode",
                        raw_uv(venv, "--compile-bytecode"), memory)  # fmt: skip
                shutil.rmtree(p, ignore_errors=True)

    rows = []
    goals = []
    for mode in MODES:
        rows_by = {}
        for name, entries in samples[mode].items():
            timed = entries[:-1]  # the last one sampled memory
            r: dict[str, Any] = {
                "mode": mode,
                "row": name,
                "wall_s": round(med([e["wall"] for e in timed]), 4),
                "wall_min_s": round(min(e["wall"] for e in timed), 4),
                "cpu_s": round(med([e["cpu"] for e in timed]), 4),
                "peak_tree_mb": entries[-1]["peak_mb"],
                "n": len(timed),
            }
            if "stages" in entries[0]:
                for stage in ("solve", "install", "pip"):
                    r[f"{stage}_s"] = round(med([e["stages"][stage] for e in timed]), 4)
                r["reported_peak_mb"] = entries[-1]["reported_peak_mb"]
            rows_by[name] = r
            rows.append(r)
        raw_total = (
            rows_by["raw rattler (solve + install)"]["wall_s"]
            + rows_by["raw uv (into that env)"]["wall_s"]
        )
        raw_cpu = (
            rows_by["raw rattler (solve + install)"]["cpu_s"]
            + rows_by["raw uv (into that env)"]["cpu_s"]
        )
        fresh = rows_by["raw uv (fresh venv)"]["wall_s"]
        fresh_c = rows_by["raw uv (fresh venv) --compile-bytecode"]["wall_s"]
        for inst in ("uv", "pip"):
            r = rows_by["create (pip)" if inst == "pip" else "create (uv)"]
            r["pip_vs_raw_uv"] = round(r["pip_s"] / fresh, 2)
            r["pip_vs_raw_uv_compiled"] = round(r["pip_s"] / fresh_c, 2)
            r["create_vs_raw"] = round(r["wall_s"] / raw_total, 2)
            r["create_vs_raw_cpu"] = round(r["cpu_s"] / raw_cpu, 2)
        uvrow = rows_by["create (uv)"]
        goals += [
            {"mode": mode, "goal": f"pip stage (uv) <= {GOAL_PIP_S} s", "value": uvrow["pip_s"],
             "ok": uvrow["pip_s"] <= GOAL_PIP_S},
            {"mode": mode, "goal": f"pip stage (uv) <= {GOAL_PIP_RATIO}x raw uv, fresh venv",
             "value": uvrow["pip_vs_raw_uv"], "ok": uvrow["pip_vs_raw_uv"] <= GOAL_PIP_RATIO},
            {"mode": mode, "goal": f"pip stage (uv) <= {GOAL_PIP_RATIO}x raw uv, fresh venv, compiled",
             "value": uvrow["pip_vs_raw_uv_compiled"],
             "ok": uvrow["pip_vs_raw_uv_compiled"] <= GOAL_PIP_RATIO},
            {"mode": mode, "goal": f"create (uv) <= {GOAL_CREATE_RATIO}x raw rattler + raw uv",
             "value": uvrow["create_vs_raw"], "ok": uvrow["create_vs_raw"] <= GOAL_CREATE_RATIO},
        ]  # fmt: skip
    print_table(
        rows,
        ["mode", "row", "wall_s", "wall_min_s", "cpu_s", "solve_s", "install_s", "pip_s",
         "peak_tree_mb", "reported_peak_mb", "pip_vs_raw_uv", "pip_vs_raw_uv_compiled",
         "create_vs_raw", "create_vs_raw_cpu", "n"],
    )  # fmt: skip
    print()
    print_table(goals, ["mode", "goal", "value", "ok"])
    cmd = f"python bench/bench_create.py --runs {args.runs} --pip-runs {args.pip_runs}"
    print("saved", save("create", cmd, rows, {"goals": goals}))
    return 0 if all(g["ok"] for g in goals) else 1


if __name__ == "__main__":
    sys.exit(main())

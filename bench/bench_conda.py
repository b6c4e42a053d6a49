"""Inside a real conda (conda 26.7.1 + conda-libmamba-solver 26.6.0 from
../shared/conda-wheelhouse/setup-conda.sh), three measurements:

1. the plugin's import cost with conda's modules already loaded, as when conda's plugin manager
   imports it (``python -X importtime``, cumulative for conda_unsloth.plugin, and the same
   import timed with perf_counter in-process; median of --import-runs). Goal: <= 1 ms.
2. ``conda --help`` with the plugin installed vs the same conda without it: a second
   setup-conda.sh conda (``--bare DIR``, else made in a temporary folder), not CONDA_NO_PLUGINS,
   which also switches off conda-libmamba-solver and every other external plugin (reported as a
   third row for scale). Wall and CPU time, runs alternating, median of --runs.
3. ``conda unsloth solve`` vs ``conda create --dry-run`` of the same pins on the same local
   channel (the demo channel of ``python -m tests.envbuild``), warm caches, both through
   libmamba, both as whole commands (process start included), alternating, median of --runs;
   the two package sets are checked to be the same. Goal: ratio <= 1.1.

    bash ../shared/conda-wheelhouse/setup-conda.sh /tmp/c && /tmp/c/venv/bin/python -m pip install .
    python bench/bench_conda.py --conda /tmp/c [--bare /tmp/c0] [--runs 9] [--import-runs 25]

Writes bench/results/conda.json and prints a table. Exit 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _util import print_table, save, summary

ROOT = Path(__file__).resolve().parent.parent
SETUP = ROOT.parent / "shared" / "conda-wheelhouse" / "setup-conda.sh"
IMPORT_GOAL_US = 1000
SOLVE_GOAL = 1.1
PRELOAD = "import conda.plugins, conda.plugins.types, conda.base.context, pluggy"


def sandbox_env(root: Path, **extra: str) -> dict[str, str]:
    """conda reads and writes only under ``root``; no channel name reaches the network."""
    for d in ("home", "pkgs", "envs", "cache"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "condarc.yml").write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONDA_", "PIP_"))}
    env.update(
        HOME=str(root / "home"),
        CONDARC=str(root / "condarc.yml"),
        CONDA_PKGS_DIRS=str(root / "pkgs"),
        CONDA_ENVS_DIRS=str(root / "envs"),
        XDG_CACHE_HOME=str(root / "cache"),
        CONDA_CHANNEL_ALIAS="http://127.0.0.1:9",
        CONDA_NUMBER_CHANNEL_NOTICES="0",
        CONDA_REPORT_ERRORS="false",
        CONDA_SOLVER="libmamba",
        **extra,
    )
    return env


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall s, CPU s = user + sys of the process and its children) of one run."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=env["HOME"]
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(argv)}")
    return wall, usage.ru_utime + usage.ru_stime


def alternate(cases: dict[str, list[str]], env: dict[str, str], runs: int) -> dict[str, Any]:
    """Each case once to warm up, then ``runs`` rounds, the cases alternating in each round."""
    for argv in cases.values():
        timed(argv, env)
    walls: dict[str, list[float]] = {k: [] for k in cases}
    cpus: dict[str, list[float]] = {k: [] for k in cases}
    for i in range(runs):
        order = list(cases) if i % 2 == 0 else list(reversed(cases))
        for k in order:
            w, c = timed(cases[k], env)
            walls[k].append(w)
            cpus[k].append(c)
    return {k: {"wall": walls[k], "cpu": cpus[k]} for k in cases}


# ----------------------------------------------------------------------------- 1. import


def import_cost(python: str, runs: int) -> list[dict[str, Any]]:
    def importtime() -> int:
        proc = subprocess.run(
            [python, "-X", "importtime", "-c", f"{PRELOAD}; import conda_unsloth.plugin"],
            cwd=tempfile.gettempdir(),
            capture_output=True,
            text=True,
            check=True,
        )
        for line in proc.stderr.splitlines():
            parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
            if len(parts) == 3 and parts[2] == "conda_unsloth.plugin":
                return int(parts[1])
        raise SystemExit("conda_unsloth.plugin not in -X importtime output: installed here?")

    def perf() -> float:
        code = (
            f"{PRELOAD}\nimport time\nt = time.perf_counter()\nimport conda_unsloth.plugin\n"
            "print((time.perf_counter() - t) * 1e6)"
        )
        out = subprocess.run(
            [python, "-c", code], cwd=tempfile.gettempdir(), capture_output=True, text=True,
            check=True,
        )  # fmt: skip
        return float(out.stdout)

    importtime()  # .pyc files
    a = summary([float(importtime()) for _ in range(runs)])
    b = summary([perf() for _ in range(runs)])
    return [
        {"measure": "plugin import, conda loaded: -X importtime cumulative (us)", **a,
         "goal": IMPORT_GOAL_US, "ok": a["median"] <= IMPORT_GOAL_US},
        {"measure": "plugin import, conda loaded: perf_counter (us)", **b,
         "goal": IMPORT_GOAL_US, "ok": b["median"] <= IMPORT_GOAL_US},
    ]  # fmt: skip


# ----------------------------------------------------------------------------- 2. --help


def bare_conda(given: str | None, tmp: Path) -> Path:
    if given:
        return Path(given)
    if not SETUP.is_file():
        raise SystemExit(f"no --bare DIR and no {SETUP} to make one")
    out = tmp / "bare-conda"
    subprocess.run(["bash", str(SETUP), str(out)], check=True, stdout=subprocess.DEVNULL)
    return out


def help_rows(conda: Path, bare: Path, runs: int, tmp: Path) -> list[dict[str, Any]]:
    env = sandbox_env(tmp / "help")
    check = subprocess.run(
        [str(bare / "venv" / "bin" / "python"), "-m", "conda", "--help"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    if " unsloth " in check.stdout:
        raise SystemExit(f"{bare} has the plugin installed: give a conda without it")
    cases = {
        "conda --help (plugin installed)": [str(conda / "venv/bin/python"), "-m", "conda", "--help"],
        "conda --help (same conda version, no plugin)": [
            str(bare / "venv/bin/python"), "-m", "conda", "--help",
        ],
        "conda --no-plugins --help (no external plugin at all)": [
            str(conda / "venv/bin/python"), "-m", "conda", "--no-plugins", "--help",
        ],
    }  # fmt: skip
    res = alternate(cases, env, runs)
    rows = []
    base = statistics.median(res["conda --help (same conda version, no plugin)"]["wall"])
    base_cpu = statistics.median(res["conda --help (same conda version, no plugin)"]["cpu"])
    for k, v in res.items():
        wall = statistics.median(v["wall"])
        cpu = statistics.median(v["cpu"])
        rows.append(
            {"measure": k, "wall_s": wall, "cpu_s": cpu, "n": runs,
             "wall_vs_no_plugin": wall / base, "cpu_vs_no_plugin": cpu / base_cpu,
             "samples_wall": v["wall"]}
        )  # fmt: skip
    return rows


# ----------------------------------------------------------------------------- 3. solve


def solve_rows(conda: Path, runs: int, tmp: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    python = str(conda / "venv" / "bin" / "python")
    demo = tmp / "demo"
    subprocess.run(
        [python, "-m", "tests.envbuild", str(demo)], cwd=ROOT, check=True,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    chan = (demo / "channel").as_uri()
    env = sandbox_env(tmp / "solve")
    plan = subprocess.run(
        [python, "-m", "conda", "unsloth", "env", "--cuda", "12.1", "--json", "--dry-run"],
        env=env, capture_output=True, text=True, check=True, cwd=env["HOME"],
    )  # fmt: skip
    from ruamel.yaml import YAML

    deps = YAML(typ="safe").load(json.loads(plan.stdout)["environment_yml"])["dependencies"]
    specs = [d.split("::", 1)[-1] for d in deps if isinstance(d, str)]
    ours = [python, "-m", "conda", "unsloth", "solve", "-c", chan, "--cuda", "12.1", "--json"]
    theirs = [
        python, "-m", "conda", "create", "--dry-run", "--json", "-p", str(tmp / "dry"),
        "--override-channels", "-c", chan, *specs,
    ]  # fmt: skip
    # conda create gets what our solve sets for itself: the target's CUDA, strict priority
    env_c = {**env, "CONDA_OVERRIDE_CUDA": "12.1", "CONDA_CHANNEL_PRIORITY": "strict"}
    a = subprocess.run(ours, env=env, capture_output=True, text=True, check=True)
    b = subprocess.run(theirs, env=env_c, capture_output=True, text=True, check=False)
    got = {(p["name"], p["version"], p["build"]) for p in json.loads(a.stdout)["packages"]}
    link = json.loads(b.stdout)["actions"]["LINK"]
    want = {(p["name"], p["version"], p["build_string"]) for p in link}
    res = alternate(
        {"conda unsloth solve --json": ours, "conda create --dry-run --json": theirs},
        env_c,
        runs,
    )
    rows = []
    for k, v in res.items():
        rows.append(
            {"measure": k, "wall_s": statistics.median(v["wall"]),
             "cpu_s": statistics.median(v["cpu"]), "n": runs, "samples_wall": v["wall"]}
        )  # fmt: skip
    ratio = rows[0]["wall_s"] / rows[1]["wall_s"]
    cpu_ratio = rows[0]["cpu_s"] / rows[1]["cpu_s"]
    rows.append(
        {"measure": "ratio unsloth solve / conda create --dry-run", "wall_s": ratio,
         "cpu_s": cpu_ratio, "n": runs, "goal": SOLVE_GOAL, "ok": ratio <= SOLVE_GOAL}
    )  # fmt: skip
    facts = {
        "channel": "demo channel (python -m tests.envbuild)",
        "specs": specs,
        "same_packages": got == want,
        "packages": len(got),
        "solver_own_seconds": json.loads(a.stdout)["seconds"],
    }
    return rows, facts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--conda", required=True, help="setup-conda.sh DIR with the plugin installed")
    ap.add_argument("--bare", help="setup-conda.sh DIR without it (default: make one)")
    ap.add_argument("--runs", type=int, default=9, help="runs per command (>= 7)")
    ap.add_argument("--import-runs", type=int, default=25)
    args = ap.parse_args()
    if args.runs < 7:
        ap.error("--runs must be at least 7")
    conda = Path(args.conda)
    python = str(conda / "venv" / "bin" / "python")
    with tempfile.TemporaryDirectory(prefix="bench-conda-") as d:
        tmp = Path(d)
        imports = import_cost(python, args.import_runs)
        helps = help_rows(conda, bare_conda(args.bare, tmp), args.runs, tmp)
        solves, facts = solve_rows(conda, args.runs, tmp)
    print_table(imports, ["measure", "median", "min", "max", "n", "goal", "ok"])
    print()
    print_table(
        helps, ["measure", "wall_s", "cpu_s", "n", "wall_vs_no_plugin", "cpu_vs_no_plugin"]
    )
    print()
    print_table(solves, ["measure", "wall_s", "cpu_s", "n", "goal", "ok"])
    print(f"same package set: {facts['same_packages']} ({facts['packages']} packages)")
    version = subprocess.run(
        [python, "-m", "conda", "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    path = save(
        "conda",
        "python bench/bench_conda.py " + " ".join(sys.argv[1:]),
        [*imports, *helps, *solves],
        {"conda": version, "solve": facts},
    )
    print("saved", path)
    ok = all(r.get("ok", True) for r in [*imports, *solves]) and facts["same_packages"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""How plan and read costs grow with the data (issue 19 items 3 and 4), whole processes, cold:

* `conda-unsloth env --knowledge DIR` with the knowledge base scaled 1x, 10x, 30x, 100x (the
  default profile's pytorch and xformers rows copied under new versions, so every copy is a
  stack the planner can choose; each DIR bundled with `python -m conda_unsloth.knowledge --write
  --dir DIR` as a user would). Goal: 100x within 3x of 1x.
* `conda-unsloth export` and `conda-unsloth doctor` of a prefix with 5,000 conda-meta records.
  Goal: <= 0.5 s each.

    python bench/bench_scale.py [--runs 7] [--scales 1,10,30,100] [--records 5000]

Wall and CPU (user + system of the reaped child tree) side by side; machines are shared and
noisy, so the ratios are what to read.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _util import print_table, run_measured, save

import conda_unsloth
from conda_unsloth import knowledge

ROOT = Path(__file__).resolve().parent.parent


def scaled_knowledge(dest: Path, scale: int) -> Path:
    """A copy of the bundled knowledge with the default profile's pytorch and xformers rows
    repeated ``scale`` times (copy k: patch versions + 1000k, xformers post releases + 1000k)."""
    from ruamel.yaml import YAML

    dest.mkdir(parents=True, exist_ok=True)
    for name in knowledge.FILES:
        shutil.copy(Path(knowledge.default_dir()) / name, dest / name)
    if scale == 1:
        return dest
    y = YAML(typ="rt")
    y.width = 4096
    doc = y.load((dest / "compat.yaml").read_text())
    prof = doc["profiles"]["pytorch"]
    torches, xfs = list(prof["pytorch"]), list(prof["xformers"])
    for k in range(1, scale):
        shift = 1000 * k
        for row in torches:
            new = dict(row)
            major, minor, patch = str(row["version"]).split(".")
            new["version"] = f"{major}.{minor}.{int(patch) + shift}"
            prof["pytorch"].append(new)
        for row in xfs:
            new = {key: value for key, value in row.items() if key != "extra_builds"}
            base, _, post = str(row["version"]).partition(".post")
            new["version"] = f"{base}.post{int(post or 0) + shift}"
            major, minor, patch = str(row["pytorch"]).split(".")
            new["pytorch"] = f"{major}.{minor}.{int(patch) + shift}"
            prof["xformers"].append(new)
    with open(dest / "compat.yaml", "w") as fh:
        y.dump(doc, fh)
    return dest


def bundle(directory: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "conda_unsloth.knowledge", "--write", "--dir", str(directory)],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - t0


def many_records(prefix: Path, n: int) -> Path:
    """A prefix with ``n`` conda-meta records (plus python), as conda writes them."""
    meta = prefix / "conda-meta"
    meta.mkdir(parents=True)
    (meta / "history").write_text("")
    base = "https://conda.anaconda.org/conda-forge/linux-64"
    rows = [("python", "3.11.9", "hb806964_0_cpython")] + [
        (f"pkg{i:05d}", "1.0", "h0_0") for i in range(n - 1)
    ]
    for name, version, build in rows:
        fn = f"{name}-{version}-{build}.conda"
        rec = {
            "name": name,
            "version": version,
            "build": build,
            "build_number": 0,
            "channel": "https://conda.anaconda.org/conda-forge",
            "subdir": "linux-64",
            "url": f"{base}/{fn}",
            "fn": fn,
            "md5": "0" * 32,
            "sha256": "1" * 64,
            "depends": ["python >=3.11,<3.12.0a0"] if name != "python" else [],
            "files": [f"share/{name}/README"],
        }
        (meta / f"{name}-{version}-{build}.json").write_text(json.dumps(rec))
    return prefix


def timed(cmd: list[str], runs: int, env: dict[str, str], cwd: Path) -> dict[str, float]:
    walls, cpus = [], []
    for _ in range(runs):
        m = run_measured(cmd, env=env, cwd=cwd)
        walls.append(m.wall)
        cpus.append(m.cpu)
    return {"median": statistics.median(walls), "cpu_median": statistics.median(cpus), "n": runs}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--scales", default="1,10,30,100")
    ap.add_argument("--records", type=int, default=5000)
    args = ap.parse_args()
    script = shutil.which("conda-unsloth", path=os.path.dirname(sys.executable))
    if script is None:
        print("conda-unsloth is not installed next to this python: pip install -e .")
        return 2
    import compileall

    compileall.compile_dir(str(Path(conda_unsloth.__file__).parent), quiet=1)
    env = {**os.environ, "CONDA_UNSLOTH_NVML": "0", "CONDA_UNSLOTH_NVIDIA_SMI": ""}
    env.pop("CONDA_UNSLOTH_KNOWLEDGE", None)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        first: dict[str, float] | None = None
        for scale in [int(s) for s in args.scales.split(",")]:
            kb_dir = scaled_knowledge(work / f"kb{scale}", scale)
            built = bundle(kb_dir)
            cmd = [script, "env", "--cuda", "12.1", "--knowledge", str(kb_dir)]
            cmd += ["-o", "env.yml", "-q", "--force"]
            s = timed(cmd, args.runs, env, work)
            first = first or s
            rows.append(
                {
                    "measure": f"env, knowledge x{scale} (s)",
                    **s,
                    "ratio_to_x1": s["median"] / first["median"],
                    "cpu_ratio_to_x1": s["cpu_median"] / first["cpu_median"],
                    "bundle_s": round(built, 2),
                }
            )
        if rows:
            last = rows[-1]
            last["target"] = 3.0
            last["ok"] = last["ratio_to_x1"] <= 3.0
        prefix = many_records(work / "env", args.records)
        for verb, extra in (("export", ["-o", str(work / "x.txt"), "--force"]), ("doctor", [])):
            s = timed([script, verb, "-p", str(prefix), *extra], args.runs, env, work)
            rows.append(
                {
                    "measure": f"{verb} of {args.records} records (s)",
                    **s,
                    "target": 0.5,
                    "ok": s["median"] <= 0.5,
                }
            )
    print_table(
        rows,
        [
            "measure",
            "median",
            "cpu_median",
            "n",
            "ratio_to_x1",
            "cpu_ratio_to_x1",
            "bundle_s",
            "target",
            "ok",
        ],
    )
    how = f"python bench/bench_scale.py --runs {args.runs} --scales {args.scales} --records {args.records}"
    print("saved", save("scale", how, rows))
    return 0 if all(r.get("ok", True) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

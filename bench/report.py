"""The benchmark table, regenerated from the result files (never typed by hand).

    python bench/report.py [RESULTS_DIR] [--write]

Reads ``env.json``, ``solve.json`` and ``create.json`` (and ``import.json`` when there is one)
from RESULTS_DIR (default ``bench/results``, where the benchmarks write), prints a Markdown
table with the machine each file was measured on, and with ``--write`` puts it into
``bench/README.md`` between the ``<!-- report -->`` markers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
START, END = "<!-- report:start -->", "<!-- report:end -->"


def _load(folder: Path, name: str) -> dict[str, Any] | None:
    path = folder / f"{name}.json"
    if not path.is_file():
        return None
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _machine(doc: dict[str, Any]) -> str:
    m = doc.get("machine", {})
    v = m.get("versions", {})
    parts = [
        f"{m.get('cpu_count', '?')} CPUs",
        m.get("cpu", ""),
        f"Python {m.get('python', '?')}",
        f"py-rattler {v.get('py-rattler', '?')}",
    ]
    if v.get("uv"):
        parts.append(v["uv"].split(" (")[0])
    if m.get("load_average"):
        parts.append(f"load {m['load_average'][0]}")
    if m.get("date"):
        parts.append(m["date"][:10])
    return ", ".join(p for p in parts if p)


def env_rows(doc: dict[str, Any]) -> list[list[str]]:
    rows = {r["measure"]: r for r in doc["rows"]}
    env = rows["conda-unsloth env --cuda 12.1 (s)"]
    base = rows["python -c pass (s)"]
    ratio = rows["ratio env / python -c pass"]["median"]
    cpu_ratio = rows.get("ratio env / python -c pass, CPU", {}).get("median")
    cpu = env.get("cpu_median")
    measured = f"{_ms(env['median'])} wall" + (f", {_ms(cpu)} CPU" if cpu is not None else "")
    raw = f"`python -c pass`: {_ms(base['median'])} wall"
    raw += f" ({ratio:.2f}×" + (f", CPU {cpu_ratio:.2f}×)" if cpu_ratio else ")")
    return [
        [
            f"`bench_env.py`: `conda-unsloth env --cuda 12.1`, median of {env['n']}",
            f"≤ {_ms(env.get('target', 0.15))} wall (`python -c pass` beside it)",
            measured,
            raw,
            _machine(doc),
        ]
    ]


def solve_rows(doc: dict[str, Any]) -> list[list[str]]:
    out = []
    for r in doc.get("cold", []):
        out.append(
            [
                f"`bench_solve.py` cold: `conda-unsloth solve`, whole process, {r['case']}, "
                f"median of {r['repeat']}",
                "≤ 1.1× raw",
                f"{r['ours_ms']:.0f} ms wall, {r['ours_cpu_ms']:.0f} ms CPU "
                f"(first: {r['first_ours_ms']:.0f} ms)"
                + (
                    f"; its imports alone: {r['floor_cpu_ms']:.0f} ms CPU, "
                    f"**{r['floor_cpu_ratio']:.2f}×** raw; of the "
                    f"{r['ours_cpu_ms'] - r['raw_cpu_ms']:+.0f} ms CPU over raw, our extra imports "
                    f"{r['imports_extra_cpu_ms']:+.0f} ms, all else {r['work_extra_cpu_ms']:+.0f} ms"
                    if "imports_extra_cpu_ms" in r
                    else ""
                ),
                f"raw `rattler.solve` process: {r['raw_ms']:.0f} ms wall, "
                f"{r['raw_cpu_ms']:.0f} ms CPU; **{r['ratio']:.2f}×** (CPU {r['cpu_ratio']:.2f}×)",
                _machine(doc),
            ]
        )
    for r in doc.get("results", []):
        out.append(
            [
                f"`bench_solve.py` in process: `RattlerSolver.solve`, {r['case']}, "
                f"median of {r['repeat']}",
                "≤ 1.1× raw",
                f"{r['ours_ms']:.1f} ms",
                f"`asyncio.run(rattler.solve(...))`: {r['raw_ms']:.1f} ms; "
                f"**{r['ratio']:.2f}×** (vs one reused loop {r['ratio_vs_loop']:.2f}×)",
                _machine(doc),
            ]
        )
    return out


def create_rows(doc: dict[str, Any]) -> list[list[str]]:
    out = []
    by = {(r["mode"], r["row"]): r for r in doc["rows"]}
    for mode in dict.fromkeys(r["mode"] for r in doc["rows"]):
        uv = by[(mode, "create (uv)")]
        pip = by.get((mode, "create (pip)"))
        rr = by[(mode, "raw rattler (solve + install)")]
        ru = by[(mode, "raw uv (into that env)")]
        fresh = by[(mode, "raw uv (fresh venv)")]
        fresh_c = by[(mode, "raw uv (fresh venv) --compile-bytecode")]
        out.append(
            [
                f"`bench_create.py`, {mode}: the pip stage on uv, offline demo, median of "
                f"{uv['n']}",
                "≤ 0.3 s; ≤ 4× raw uv",
                f"{_ms(uv['pip_s'])}"
                + (f" (pip: {pip['pip_s']:.2f} s, {pip['n']} runs)" if pip else ""),
                f"`uv pip install --no-deps` of the same wheels into a fresh venv: "
                f"{_ms(fresh['wall_s'])} ({fresh['cpu_s'] * 1000:.0f} ms CPU), "
                f"**{uv['pip_vs_raw_uv']:.2f}×**; with `--compile-bytecode` "
                f"{_ms(fresh_c['wall_s'])}, {uv['pip_vs_raw_uv_compiled']:.2f}×",
                _machine(doc),
            ]
        )
        out.append(
            [
                f"`bench_create.py`, {mode}: `conda-unsloth create` total (solve "
                f"{_ms(uv['solve_s'])}, install {_ms(uv['install_s'])}, pip "
                f"{_ms(uv['pip_s'])})",
                "≤ 1.5× raw",
                f"{uv['wall_s']:.2f} s wall, {uv['cpu_s']:.2f} s CPU, peak {uv['peak_tree_mb']} MB "
                f"(process tree; `--json` says {uv['reported_peak_mb']} MB)",
                f"raw rattler solve + install {_ms(rr['wall_s'])} + raw uv {_ms(ru['wall_s'])}: "
                f"**{uv['create_vs_raw']:.2f}×** (CPU {uv.get('create_vs_raw_cpu', 0):.2f}×: "
                f"{uv['cpu_s']:.2f} s vs {rr['cpu_s'] + ru['cpu_s']:.2f} s)"
                + (
                    f"; with pip: {pip['wall_s']:.2f} s, {pip['create_vs_raw']:.2f}×"
                    if pip
                    else ""
                ),
                _machine(doc),
            ]
        )
    return out


def import_rows(doc: dict[str, Any]) -> list[list[str]]:
    out = []
    for r in doc.get("rows", []):
        name = r.get("measure") or r.get("case") or r.get("row")
        value = r.get("median")
        if name is None or not isinstance(value, (int, float)):
            continue
        out.append(
            [
                f"`bench_import.py`: {name}",
                str(r.get("target", "")),
                f"{value:.4g}",
                "",
                _machine(doc),
            ]
        )
    return out


def table(folder: Path) -> str:
    rows: list[list[str]] = []
    for name, make in (
        ("import", import_rows),
        ("env", env_rows),
        ("solve", solve_rows),
        ("create", create_rows),
    ):
        doc = _load(folder, name)
        if doc is not None:
            rows += make(doc)
    head = ["benchmark", "target", "measured", "the raw tool, same run", "machine"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="?", type=Path, default=HERE / "results")
    ap.add_argument("--write", action="store_true", help="update bench/README.md")
    args = ap.parse_args()
    text = table(args.results)
    print(text, end="")
    if args.write:
        readme = HERE / "README.md"
        doc = readme.read_text()
        if START not in doc or END not in doc:
            print(f"{readme} has no {START} ... {END} markers", file=sys.stderr)
            return 2
        before, rest = doc.split(START, 1)
        _, after = rest.split(END, 1)
        source = args.results.resolve()
        with_root = (
            source.relative_to(HERE.parent) if source.is_relative_to(HERE.parent) else source
        )
        readme.write_text(
            f"{before}{START}\n<!-- generated by bench/report.py from {with_root}/ -->\n\n"
            f"{text}\n{END}{after}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Compare the reports of ``scripts/gpu-check.sh --all`` with what issue 7 requires on the
reference GPU machine (torch cu13 + the PyPI xformers 0.0.35 CUDA 12.8 wheel):

- ``broken`` (the wheels as they are): exit code 1; xformers.extension, xformers.build and both
  attention checks fail with F17 (an extension built for another CUDA major); the verb's table
  names F17's fix (nvidia-cuda-runtime-cu12).
- ``nogpu`` (``CUDA_VISIBLE_DEVICES=``, the fix installed): exit code 1; every check that needs
  a GPU fails with F18.
- ``fixed`` (nvidia-cuda-runtime-cu12 installed into the env): exit code 0; every required check
  passes (or warns), the xformers extension loads and its attention passes.

Prints one table per scenario (id, status, seconds, remedy), the benchmark (probe total vs a bare
``import unsloth``, target <= 1.15x) and one line per expectation; exit code 0 only when every
expectation held. Standard library only (it runs with the GPU machine's python).

    python scripts/gpu_expect.py --dir OUTDIR
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

GPU_CHECKS = (
    "gpu.visible",
    "gpu.arch",
    "matmul.fp32",
    "matmul.fp16",
    "matmul.bf16",
    "xformers.attention.fp16",
    "xformers.attention.bf16",
    "triton.kernel",
    "bnb.4bit",
    "unsloth.import",
)
XFORMERS_F17 = (
    "xformers.extension",
    "xformers.build",
    "xformers.attention.fp16",
    "xformers.attention.bf16",
)
BENCH_TARGET = 1.15


class Expectations:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.failed = 0

    def expect(self, ok: bool, what: str, got: str) -> None:
        self.lines.append(f"{'ok  ' if ok else 'FAIL'} {what}: {got}")
        self.failed += not ok


def load(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def by_id(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in doc.get("checks", []) if isinstance(c, dict) and "id" in c}


def table(name: str, doc: dict[str, Any], rc: int | None) -> list[str]:
    out = [f"## {name}: exit code {rc}, probe {doc.get('seconds', '?')} s, ok={doc.get('ok')}"]
    for c in doc.get("checks", []):
        out.append(
            f"  {c['id']:<25} {c['status']:<5} {c['seconds']:>7.2f}s  {c.get('remedy') or '-':<4} "
            f"{c['detail'][:150]}"
        )
    return out


def status_of(checks: dict[str, dict[str, Any]], cid: str) -> str:
    c = checks.get(cid)
    return f"{c['status']} {c.get('remedy') or '-'}" if c else "missing"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--dir", type=Path, required=True, help="gpu-check.sh --all's --out folder")
    args = p.parse_args(argv)
    d: Path = args.dir
    codes: dict[str, int] = {}
    try:
        for line in (d / "exit-codes.txt").read_text().splitlines():
            name, _, code = line.partition(" ")
            codes[name] = int(code)
    except (OSError, ValueError) as exc:
        print(f"gpu_expect: cannot read {d / 'exit-codes.txt'}: {exc}", file=sys.stderr)
        return 2
    exp = Expectations()
    report: list[str] = []
    docs: dict[str, dict[str, Any]] = {}
    for name in ("broken", "nogpu", "fixed"):
        doc = load(d / f"{name}.json")
        exp.expect(doc is not None, f"{name}: a report was written", str(d / f"{name}.json"))
        if doc is not None:
            docs[name] = doc
            report += table(name, doc, codes.get(name))

    def failing(name: str, ids: tuple[str, ...], remedy: str) -> None:
        """Scenario ``name`` exits 1 and each of ``ids`` fails with ``remedy``."""
        checks = by_id(docs[name])
        exp.expect(codes.get(name) == 1, f"{name}: exit code 1", str(codes.get(name)))
        for cid in ids:
            got = status_of(checks, cid)
            exp.expect(got == f"fail {remedy}", f"{name}: {cid} fails with {remedy}", got)

    if "broken" in docs:
        failing("broken", XFORMERS_F17, "F17")
        text = (
            (d / "broken.txt").read_text(errors="replace") if (d / "broken.txt").is_file() else ""
        )
        exp.expect(
            "nvidia-cuda-runtime-cu12" in text,
            "broken: the verb's table names the fix (nvidia-cuda-runtime-cu12)",
            "named" if "nvidia-cuda-runtime-cu12" in text else "not named",
        )
    if "nogpu" in docs:
        failing("nogpu", GPU_CHECKS, "F18")
    if "fixed" in docs:
        doc = docs["fixed"]
        checks = by_id(doc)
        exp.expect(codes.get("fixed") == 0, "fixed: exit code 0", str(codes.get("fixed")))
        bad = [
            f"{c['id']} {c['status']}"
            for c in doc.get("checks", [])
            if c.get("required") and c["status"] not in ("pass", "warn")
        ]
        exp.expect(not bad, "fixed: every required check passes", ", ".join(bad) or "all pass")
        for cid in ("xformers.extension", "xformers.attention.fp16", "xformers.attention.bf16"):
            got = status_of(checks, cid)
            exp.expect(got.startswith("pass"), f"fixed: {cid} passes", got)

    bench = load(d / "bench.json")
    if bench is None:
        exp.expect(False, "bench: bench.json written", "missing (see bench.txt)")
    else:
        probe = float(bench["probe_total_s"]["median"])
        bare = float(bench["baseline"]["median"])
        ratio = probe / bare if bare else float("inf")
        report.append(
            f"## bench (repeat {bench.get('repeat')}): probe total median {probe:.2f} s "
            f"{bench['probe_total_s']['all']}, bare `{bench['baseline']['command']}` median "
            f"{bare:.2f} s {bench['baseline']['all']}, ratio {ratio:.3f} (target <= {BENCH_TARGET})"
        )
        for cid, c in bench.get("checks", {}).items():
            report.append(f"  {cid:<25} {c['status']:<5} median {c['median_s']:>7.2f}s {c['all']}")
        report.append(f"  bench verdict_ok={bench.get('verdict_ok')}")
    print("\n".join(report))
    print("## expectations")
    print("\n".join(exp.lines))
    print(f"{'ALL AS EXPECTED' if not exp.failed else f'{exp.failed} EXPECTATION(S) NOT MET'}")
    return 0 if not exp.failed else 1


if __name__ == "__main__":
    sys.exit(main())

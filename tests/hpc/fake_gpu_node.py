"""Stand-in for what the verification probe reports on a GPU node (test edge only: this host
has no GPU). Named ``_fake_gpu`` wherever it is used.

:func:`install_fake_gpu` replaces an env's ``bin/python`` with a small script: a run of
``probe.py`` (``python -I .../probe.py --json OUT ...``, as the Slurm job runs it) goes to this
file, every other use of the env's python to its real interpreter. Run as a script with the
env's real python, this file loads the probe the job carries (its real check list, schema and
version), and writes the report a working env gives on the GPU the node's name stands for
(``gpu-a100`` -> an A100). Everything around it is real: Slurm, the job script, the report's
transport, ``verify --from-report``, the marker and the module tools.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

# node name (scripts/slurm-local.sh: gpu-<type>) -> (GPU name, compute capability)
GPUS = {
    "v100": ("Tesla V100-SXM2-32GB", "7.0"),
    "a100": ("NVIDIA A100-SXM4-80GB", "8.0"),
    "h100": ("NVIDIA H100 80GB HBM3", "9.0"),
}
DRIVER = "550.54.14"


def install_fake_gpu(prefix: Path) -> Path:
    """Make ``prefix/bin/python`` the stand-in (its real interpreter stays as
    ``bin/python3.X``); returns the script."""
    exe = prefix / "bin" / "python"
    versioned = sorted(
        p for p in (prefix / "bin").glob("python3.[0-9]*") if p.is_file() and p.name[-1].isdigit()
    )
    assert versioned, f"no bin/python3.X in {prefix}"
    real = versioned[0]
    assert real.resolve() != exe.resolve()
    exe.unlink()
    exe.write_text(
        "#!/bin/sh\n"
        "# _fake_gpu: stand-in for this env's python on a GPU node (tests/hpc/fake_gpu_node.py)\n"
        'case "$2" in\n'
        f'  */probe.py) exec {real} -I {Path(__file__).resolve()} "$@" ;;\n'
        "esac\n"
        f'exec {real} "$@"\n'
    )
    exe.chmod(0o755)
    return exe


def _check(
    spec: Any, status: str, detail: str, required: bool = True, **data: Any
) -> dict[str, Any]:
    return {
        "id": spec.id,
        "title": spec.title,
        "status": status,
        "required": required,
        "seconds": 0.1,
        "detail": detail,
        "remedy": None,
        "data": data,
    }


def main(argv: list[str]) -> int:
    # argv: -I PROBE --json OUT --kernel K [--expect-cuda X.Y] [--checks ...] [--timeout S]
    args = [a for a in argv if a != "-I"]
    probe_path, rest = Path(args[0]), args[1:]
    opts = dict(zip(rest[::2], rest[1::2], strict=False))
    spec = importlib.util.spec_from_file_location("probe", probe_path)
    assert spec is not None and spec.loader is not None
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    node = os.environ.get("SLURMD_NODENAME", "gpu-a100")
    name, cap = GPUS.get(node.removeprefix("gpu-"), GPUS["a100"])
    bf16 = float(cap) >= 8.0
    specs = probe.select([t for t in opts.get("--checks", "").split(",") if t])
    checks = []
    for s in specs:
        if s.id == "gpu.visible":
            checks.append(
                _check(
                    s,
                    "pass",
                    f"1 device(s): {name} (sm_{cap.replace('.', '')}); driver {DRIVER}",
                    devices=[{"index": 0, "name": name, "capability": cap, "memory_gib": 79.1}],
                    driver=DRIVER,
                    driver_cuda="12.4",
                )
            )
        elif s.id in ("matmul.bf16", "xformers.attention.bf16") and not bf16:
            checks.append(_check(s, "skip", "no native bf16 (compute capability < 8.0)", False))
        else:
            checks.append(_check(s, "pass", "passed (_fake_gpu)", s.id != "sdpa.backends"))
    doc = {
        "schema": probe.SCHEMA,
        "probe_version": probe.PROBE_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "seconds": 1.0,
        "ok": True,
        "exit_code": 0,
        "summary": {st: sum(1 for c in checks if c["status"] == st) for st in probe.STATUSES},
        "python": {"version": "3", "executable": sys.executable, "prefix": sys.prefix},
        "host": {"hostname": socket.gethostname(), "platform": "fake GPU node"},
        "options": {"expect_cuda": opts.get("--expect-cuda"), "checks": [s.id for s in specs]},
        "versions": probe.versions(),
        "interrupted": None,
        "checks": checks,
    }
    out = Path(opts["--json"])
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print("verification PASSED (_fake_gpu)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

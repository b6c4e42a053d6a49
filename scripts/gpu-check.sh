#!/usr/bin/env bash
# Run the conda-unsloth verification probe on a GPU machine and keep the JSON report.
#
# Written for the reference GPU machine (shared/reference/gpu-stack.md): system python3 with
# torch 2.11+cu130 and triton preinstalled, no xformers / bitsandbytes / unsloth, no network.
# Wheels given with --wheels DIR are installed offline (--no-index --no-deps) into a throwaway
# venv that sees the system site-packages, so the probe runs as it does for a user:
# `<env python> -I probe.py --json OUT`. Nothing outside the work dir is modified.
#
# usage (from the repository root):
#   bash scripts/gpu-check.sh [--wheels DIR] [--out DIR] [--expect-cuda X.Y] [--checks LIST]
#                             [--timeout S] [--python PY] [--nvidia-libs] [--bench] [--no-venv]
#   --wheels DIR    install DIR/*.whl (e.g. xformers, bitsandbytes, unsloth and its companions)
#   --out DIR       where the results go (default: $OUT if set, else ./gpu-check-out)
#   --nvidia-libs   put every installed nvidia/*/lib (e.g. nvidia-cuda-runtime-cu12's
#                   libcudart.so.12) on LD_LIBRARY_PATH: the workaround of gpu-stack.md for the
#                   CUDA 12 xformers wheel next to a CUDA 13 torch. Without it the probe should
#                   report xformers.extension / xformers.build as F17.
#   --bench         also run bench/bench_verify.py (probe vs a bare `import unsloth`), 1 repeat
#   --no-venv       skip the venv; install with --target and run the probe with PYTHONPATH
#                   (without -I), for a python whose venv module is unusable
# results in OUT: verify-report.json, probe.txt (the probe's table), nvidia-smi.txt,
# install.txt, env.txt, bench.json/bench.txt (--bench); exit code = the probe's (0 = all
# required checks passed, 1 = some failed, 2 = usage).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="python3"
WHEELS=""
OUTDIR="${OUT:-$PWD/gpu-check-out}"
EXPECT=""
CHECKS=""
TIMEOUT=""
NVLIBS=0
BENCH=0
USE_VENV=1

die() { echo "gpu-check: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --wheels) WHEELS="${2:?}"; shift 2 ;;
    --out) OUTDIR="${2:?}"; shift 2 ;;
    --expect-cuda) EXPECT="${2:?}"; shift 2 ;;
    --checks) CHECKS="${2:?}"; shift 2 ;;
    --timeout) TIMEOUT="${2:?}"; shift 2 ;;
    --python) PY="${2:?}"; shift 2 ;;
    --nvidia-libs) NVLIBS=1; shift ;;
    --bench) BENCH=1; shift ;;
    --no-venv) USE_VENV=0; shift ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
command -v "$PY" >/dev/null 2>&1 || die "no $PY on PATH"
[ -z "$WHEELS" ] || [ -d "$WHEELS" ] || die "--wheels $WHEELS is not a directory"
mkdir -p "$OUTDIR" || die "cannot create $OUTDIR"
OUTDIR="$(cd "$OUTDIR" && pwd)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
export TRITON_CACHE_DIR="$WORK/triton-cache"   # cold, node-local JIT cache
export PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1

{
  date -u +%Y-%m-%dT%H:%M:%SZ
  uname -a
  "$PY" -c 'import sys; print(sys.version)'
  "$PY" -m pip --version 2>&1 || true
} > "$OUTDIR/env.txt" 2>&1
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv,noheader \
    > "$OUTDIR/nvidia-smi.txt" 2>&1 || true
else
  echo "no nvidia-smi on PATH" > "$OUTDIR/nvidia-smi.txt"
fi

RUN_PY="$PY"
ISOLATE="-I"
SITE=""
if [ "$USE_VENV" = 1 ] && "$PY" -m venv --without-pip --system-site-packages "$WORK/venv" \
     >> "$OUTDIR/install.txt" 2>&1; then
  RUN_PY="$WORK/venv/bin/python"
  SITE="$("$RUN_PY" -I -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
else
  [ "$USE_VENV" = 0 ] || echo "venv unusable: falling back to --target + PYTHONPATH" >> "$OUTDIR/install.txt"
  SITE="$WORK/site"
  mkdir -p "$SITE"
  ISOLATE=""
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi

if [ -n "$WHEELS" ]; then
  shopt -s nullglob
  wheels=("$WHEELS"/*.whl)
  shopt -u nullglob
  [ ${#wheels[@]} -gt 0 ] || die "no .whl files in $WHEELS"
  # the system pip installs into the venv's site-packages (a --without-pip venv has no pip)
  if ! "$PY" -m pip install --no-index --no-deps --no-compile --upgrade --target "$SITE" \
       "${wheels[@]}" >> "$OUTDIR/install.txt" 2>&1; then
    echo "gpu-check: installing the wheels failed (see $OUTDIR/install.txt)" >&2
    exit 2
  fi
  ls -1 "${wheels[@]}" >> "$OUTDIR/install.txt"
fi

if [ "$NVLIBS" = 1 ]; then
  for lib in "$SITE"/nvidia/*/lib; do
    [ -d "$lib" ] && export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  done
  echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}" >> "$OUTDIR/env.txt"
fi

args=(--json "$OUTDIR/verify-report.json" --kernel "$ROOT/conda_unsloth/verify/triton_kernel.py")
[ -z "$EXPECT" ] || args+=(--expect-cuda "$EXPECT")
[ -z "$CHECKS" ] || args+=(--checks "$CHECKS")
[ -z "$TIMEOUT" ] || args+=(--timeout "$TIMEOUT")

start=$(date +%s.%N)
# shellcheck disable=SC2086  # ISOLATE is empty or -I
"$RUN_PY" $ISOLATE "$ROOT/conda_unsloth/verify/probe.py" "${args[@]}" > "$OUTDIR/probe.txt" 2>&1
rc=$?
end=$(date +%s.%N)
echo "probe exit code $rc, wall $(echo "$end - $start" | bc 2>/dev/null || echo '?') s" >> "$OUTDIR/probe.txt"
cat "$OUTDIR/probe.txt"

if [ "$BENCH" = 1 ]; then
  bench_args=(--python "$RUN_PY" --repeat 1 --json-out "$OUTDIR/bench.json")
  [ -z "$EXPECT" ] || bench_args+=(--expect-cuda "$EXPECT")
  [ -z "$CHECKS" ] || bench_args+=(--checks "$CHECKS")
  # without a venv the wheels come in through PYTHONPATH: the bench must not run with -I
  [ -n "$ISOLATE" ] || bench_args+=(--no-isolate)
  "$PY" "$ROOT/bench/bench_verify.py" "${bench_args[@]}" > "$OUTDIR/bench.txt" 2>&1 \
    || echo "bench failed (see $OUTDIR/bench.txt)" >&2
fi
exit "$rc"

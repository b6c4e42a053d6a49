#!/usr/bin/env bash
# Run the conda-unsloth verification on a GPU machine and keep the JSON reports.
#
# Written for the reference GPU machine (shared/reference/gpu-stack.md): system python3 (itself a
# venv, /opt/torch/.venv) with torch 2.11+cu130 and triton preinstalled, no xformers /
# bitsandbytes / unsloth, no network. Wheels given with --wheels DIR are installed offline
# (--no-index --no-deps) into a throwaway venv that sees the system python's packages, so the
# probe runs as it does for a user: `<env python> -I probe.py --json OUT`. Nothing outside the
# work dir is modified.
#
# usage (from the repository root):
#   bash scripts/gpu-check.sh [--wheels DIR]... [--out DIR] [--expect-cuda X.Y] [--checks LIST]
#                             [--timeout S] [--python PY] [--nvidia-libs] [--bench] [--no-venv]
#   bash scripts/gpu-check.sh --all [--wheels DIR]... [--out DIR] [--expect-cuda X.Y]
#                             [--repeat N] [--python PY]
#   --wheels DIR    install DIR/*.whl (xformers, bitsandbytes, unsloth and its companions);
#                   repeatable (wheels carried in two calls: see "On the device tool" below)
#   --out DIR       where the results go (default: $OUT if set, else ./gpu-check-out)
#   --nvidia-libs   put every installed nvidia/*/lib (e.g. nvidia-cuda-runtime-cu12's
#                   libcudart.so.12) on LD_LIBRARY_PATH: the workaround of gpu-stack.md for the
#                   CUDA 12 xformers wheel next to a CUDA 13 torch. Without it the probe should
#                   report xformers.extension / xformers.build as F17.
#   --bench         also run bench/bench_verify.py (probe vs a bare `import unsloth`)
#   --repeat N      bench repeats (default 1; --all: 2)
#   --no-venv       skip the venv; install with --target and run the probe with PYTHONPATH
#                   (without -I), for a python whose venv module is unusable
#   --all           every scenario of issue 7 with one venv, each through the `verify` verb
#                   (`python -m conda_unsloth verify -p VENV`, the venv marked as an env by an
#                   empty conda-meta/), then scripts/gpu_expect.py compares each report with
#                   what must happen and writes summary.txt:
#                     broken  every wheel but nvidia-cuda-runtime-cu12: xformers' extension (a
#                             CUDA 12.8 build) cannot load next to a CUDA 13 torch -> exit 1,
#                             the xformers checks F17
#                     (fix)   nvidia-cuda-runtime-cu12 installed into the env, as a user would
#                             (torch preloads the first nvidia/cuda_runtime/lib/libcudart.so.*
#                             on sys.path, so the extension's libcudart.so.12 is found)
#                     nogpu   CUDA_VISIBLE_DEVICES= -> exit 1, every GPU check F18
#                     fixed   -> exit 0
#                     bench   bench/bench_verify.py --repeat N (default 2)
#                   exit code 0 only when every scenario behaved as expected.
# results in OUT: one probe run: verify-report.json, probe.txt, nvidia-smi.txt, install.txt,
# env.txt, bench.json/bench.txt (--bench); --all: SCENARIO.json / SCENARIO.txt for broken,
# nogpu and fixed, bench.json/bench.txt, summary.txt. Exit code = the probe's (0 = all required
# checks passed, 1 = some failed, 2 = usage or setup).
#
# On the device tool (64 MiB per call: bitsandbytes alone is 43 MB, unsloth 29 MB), two calls
# back to back while the machine is warm (it keeps /tmp):
#   call 1, carry .whl/a (bitsandbytes):   mkdir -p /tmp/gpu-wheels && cp .whl/a/*.whl /tmp/gpu-wheels/
#   call 2, carry .whl/b (the rest):       bash scripts/gpu-check.sh --all --wheels /tmp/gpu-wheels
#                                            --wheels .whl/b --out /tmp/gco --expect-cuda 13.0
#                                          then tar the out dir into $OUT
# .whl/b: unsloth, unsloth_zoo, trl, datasets, dill, multiprocess, xformers,
# nvidia-cuda-runtime-cu12, ruamel.yaml (the verb's one dependency missing there).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="python3"
WHEEL_DIRS=()
OUTDIR="${OUT:-$PWD/gpu-check-out}"
EXPECT=""
CHECKS=""
TIMEOUT=""
NVLIBS=0
BENCH=0
REPEAT=""
USE_VENV=1
ALL=0

die() { echo "gpu-check: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --wheels) WHEEL_DIRS+=("${2:?}"); shift 2 ;;
    --out) OUTDIR="${2:?}"; shift 2 ;;
    --expect-cuda) EXPECT="${2:?}"; shift 2 ;;
    --checks) CHECKS="${2:?}"; shift 2 ;;
    --timeout) TIMEOUT="${2:?}"; shift 2 ;;
    --python) PY="${2:?}"; shift 2 ;;
    --repeat) REPEAT="${2:?}"; shift 2 ;;
    --nvidia-libs) NVLIBS=1; shift ;;
    --bench) BENCH=1; shift ;;
    --no-venv) USE_VENV=0; shift ;;
    --all) ALL=1; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
command -v "$PY" >/dev/null 2>&1 || die "no $PY on PATH"
for d in ${WHEEL_DIRS[@]+"${WHEEL_DIRS[@]}"}; do
  [ -d "$d" ] || die "--wheels $d is not a directory"
done
[ -z "$REPEAT" ] || [[ "$REPEAT" =~ ^[1-9][0-9]*$ ]] || die "--repeat $REPEAT is not a positive integer"
[ "$ALL" = 0 ] || [ "$USE_VENV" = 1 ] || die "--all needs the venv (the verb runs -p VENV); drop --no-venv"
[ "$ALL" = 0 ] || [ -z "$CHECKS" ] || die "--all runs every check; drop --checks"
mkdir -p "$OUTDIR" || die "cannot create $OUTDIR"
OUTDIR="$(cd "$OUTDIR" && pwd)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
export TRITON_CACHE_DIR="$WORK/triton-cache"   # cold, node-local JIT cache
export PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1

{
  date -u +%Y-%m-%dT%H:%M:%SZ
  uname -a
  "$PY" -c 'import sys; print(sys.version, sys.executable)'
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
VENV="$WORK/venv"
if [ "$USE_VENV" = 1 ] && "$PY" -m venv --without-pip --system-site-packages "$VENV" \
     >> "$OUTDIR/install.txt" 2>&1; then
  RUN_PY="$VENV/bin/python"
  SITE="$("$RUN_PY" -I -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  # --system-site-packages shows the *base* interpreter's packages; when $PY is itself a venv
  # (the GPU image's /opt/torch/.venv), its site-packages come in through a .pth line instead
  "$PY" -I -c '
import site, sys
if sys.prefix != sys.base_prefix:
    print("\n".join(dict.fromkeys(site.getsitepackages())))
' > "$SITE/zz-gpu-check-base-venv.pth" 2>> "$OUTDIR/install.txt"
  cat "$SITE/zz-gpu-check-base-venv.pth" >> "$OUTDIR/install.txt"
else
  [ "$USE_VENV" = 0 ] || echo "venv unusable: falling back to --target + PYTHONPATH" >> "$OUTDIR/install.txt"
  [ "$ALL" = 0 ] || die "--all needs a venv and $PY -m venv failed (see $OUTDIR/install.txt)"
  SITE="$WORK/site"
  mkdir -p "$SITE"
  ISOLATE=""
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi

wheels=()
TOOL_WHEELS=()
FIX_WHEELS=()
shopt -s nullglob
for d in ${WHEEL_DIRS[@]+"${WHEEL_DIRS[@]}"}; do
  for w in "$d"/*.whl; do
    case "$(basename "$w")" in
      ruamel_yaml-*|ruamel.yaml-*) TOOL_WHEELS+=("$w") ;;  # for the verb, not the env
      nvidia_cuda_runtime_cu12-*) if [ "$ALL" = 1 ]; then FIX_WHEELS+=("$w"); else wheels+=("$w"); fi ;;
      *) wheels+=("$w") ;;
    esac
  done
done
shopt -u nullglob
[ ${#WHEEL_DIRS[@]} -eq 0 ] || [ ${#wheels[@]} -gt 0 ] || die "no .whl files in ${WHEEL_DIRS[*]}"
[ "$ALL" = 0 ] || [ ${#FIX_WHEELS[@]} -gt 0 ] \
  || die "--all needs an nvidia_cuda_runtime_cu12 wheel among the wheels (the fix scenario)"

install_wheels() {  # install_wheels WHEEL...: into the env's site-packages, offline
  local t0=$EPOCHREALTIME
  # the system pip installs into the venv's site-packages (a --without-pip venv has no pip)
  if ! "$PY" -m pip install --no-index --no-deps --no-compile --upgrade --target "$SITE" \
       "$@" >> "$OUTDIR/install.txt" 2>&1; then
    echo "gpu-check: installing the wheels failed (see $OUTDIR/install.txt)" >&2
    exit 2
  fi
  printf '%s\n' "$@" >> "$OUTDIR/install.txt"
  echo "installed $# wheels in $(awk "BEGIN{printf \"%.1f\", $EPOCHREALTIME-$t0}") s" \
    >> "$OUTDIR/install.txt"
}
[ ${#wheels[@]} -eq 0 ] || install_wheels "${wheels[@]}"

expect_args=()
[ -z "$EXPECT" ] || expect_args+=(--expect-cuda "$EXPECT")

run_bench() {  # run_bench OUTPREFIX [env assignments...]
  local prefix="$1"; shift
  local bench_args=(--python "$RUN_PY" --repeat "${REPEAT:-1}" --json-out "$prefix.json")
  bench_args+=(${expect_args[@]+"${expect_args[@]}"})
  [ -z "$CHECKS" ] || bench_args+=(--checks "$CHECKS")
  # without a venv the wheels come in through PYTHONPATH: the bench must not run with -I
  [ -n "$ISOLATE" ] || bench_args+=(--no-isolate)
  env "$@" "$PY" "$ROOT/bench/bench_verify.py" "${bench_args[@]}" > "$prefix.txt" 2>&1
}

if [ "$ALL" = 0 ]; then
  if [ "$NVLIBS" = 1 ]; then
    for lib in "$SITE"/nvidia/*/lib; do
      [ -d "$lib" ] && export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    done
    echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}" >> "$OUTDIR/env.txt"
  fi
  args=(--json "$OUTDIR/verify-report.json" --kernel "$ROOT/conda_unsloth/verify/triton_kernel.py")
  args+=(${expect_args[@]+"${expect_args[@]}"})
  [ -z "$CHECKS" ] || args+=(--checks "$CHECKS")
  [ -z "$TIMEOUT" ] || args+=(--timeout "$TIMEOUT")
  t0=$EPOCHREALTIME
  # shellcheck disable=SC2086  # ISOLATE is empty or -I
  "$RUN_PY" $ISOLATE "$ROOT/conda_unsloth/verify/probe.py" "${args[@]}" > "$OUTDIR/probe.txt" 2>&1
  rc=$?
  echo "probe exit code $rc, wall $(awk "BEGIN{printf \"%.1f\", $EPOCHREALTIME-$t0}") s" \
    >> "$OUTDIR/probe.txt"
  cat "$OUTDIR/probe.txt"
  if [ "$BENCH" = 1 ]; then
    run_bench "$OUTDIR/bench" || echo "bench failed (see $OUTDIR/bench.txt)" >&2
  fi
  exit "$rc"
fi

# ---- --all: every scenario through the verb, then the benchmark ----------------------------
TOOLS="$WORK/tools"
mkdir -p "$TOOLS" "$VENV/conda-meta"
if [ ${#TOOL_WHEELS[@]} -gt 0 ]; then
  "$PY" -m pip install --no-index --no-deps --no-compile --target "$TOOLS" "${TOOL_WHEELS[@]}" \
    >> "$OUTDIR/install.txt" 2>&1 || die "installing ${TOOL_WHEELS[*]} failed (see install.txt)"
fi
VERB_PP="$ROOT:$TOOLS"
PYTHONPATH="$VERB_PP" "$PY" -c 'import ruamel.yaml, packaging' 2>> "$OUTDIR/install.txt" \
  || die "the verb needs ruamel.yaml and packaging: add a ruamel.yaml wheel to --wheels"
timeout_args=()
[ -z "$TIMEOUT" ] || timeout_args+=(--timeout "$TIMEOUT")

scenario() {  # scenario NAME [env assignments...]: the verb on VENV, report in OUT/NAME.json
  local name="$1"; shift
  local t0=$EPOCHREALTIME rc
  echo "== $name $*" >&2
  env ${@+"$@"} PYTHONPATH="$VERB_PP" "$PY" -m conda_unsloth verify -p "$VENV" \
    ${expect_args[@]+"${expect_args[@]}"} ${timeout_args[@]+"${timeout_args[@]}"} \
    --report "$OUTDIR/$name.json" > "$OUTDIR/$name.txt" 2>&1
  rc=$?
  echo "$name: verb exit code $rc, wall $(awk "BEGIN{printf \"%.1f\", $EPOCHREALTIME-$t0}") s" \
    | tee -a "$OUTDIR/$name.txt" >&2
  echo "$name $rc" >> "$OUTDIR/exit-codes.txt"
}

: > "$OUTDIR/exit-codes.txt"
scenario broken
echo "== the fix: install ${FIX_WHEELS[*]##*/} into the env" >&2
install_wheels "${FIX_WHEELS[@]}"
scenario nogpu CUDA_VISIBLE_DEVICES=
scenario fixed
REPEAT="${REPEAT:-2}"
echo "== bench (repeat $REPEAT)" >&2
run_bench "$OUTDIR/bench" || echo "bench failed (see bench.txt)" >&2

"$PY" "$ROOT/scripts/gpu_expect.py" --dir "$OUTDIR" > "$OUTDIR/summary.txt" 2>&1
rc=$?
cat "$OUTDIR/summary.txt"
exit "$rc"

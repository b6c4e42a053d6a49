#!/usr/bin/env bash
# The main job on its defaults, on a fresh machine with no conda, no GPU and no channel: make a
# venv, install conda-unsloth, build the offline demo channel (this machine's own CPython and pip
# as conda packages, stand-ins for the GPU stack with the real names, versions, builds and
# dependencies, tiny wheels for Unsloth's companions: tests/envbuild.py), then
#   conda-unsloth create -p DIR/env -c file://DIR/demo/channel --offline --pip-find-links ... --yes
# with every other choice left to its default (profile pytorch, CUDA 12.1 on a host without a
# GPU). GPU verification is skipped without a GPU (the marker says so).
#
# usage: scripts/demo.sh [DIR]      (default DIR: .demo in the repository; PYTHON=... picks the
#                                   python the venv is made from, default python3)
# Needs PyPI (or a pip mirror) for the venv's packages; nothing else goes on the network.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-"$repo/.demo"}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
python=${PYTHON:-python3}

echo "==> venv $dir/venv (from $("$python" -c 'import sys; print(sys.executable)'))"
"$python" -m venv "$dir/venv"
"$dir/venv/bin/python" -m pip install -q --disable-pip-version-check -e "$repo[rattler,uv]"

echo "==> demo channel and wheelhouse in $dir/demo"
rm -rf "$dir/demo"
(cd "$repo" && "$dir/venv/bin/python" -m tests.envbuild "$dir/demo")

echo "==> conda-unsloth create -p $dir/env (offline, from the demo channel)"
force=()
[ -e "$dir/env" ] && force=(--force)  # a second run replaces the env it made (moved aside first)
"$dir/venv/bin/conda-unsloth" create -p "$dir/env" -c "file://$dir/demo/channel" --offline \
  --pip-find-links "$dir/demo/wheels" --yes "${force[@]}"

echo "==> the env imports its stack"
"$dir/env/bin/python" -c "import torch, xformers, unsloth; print('torch', torch.__version__, '| xformers', xformers.__version__, '| unsloth', unsloth.__version__)"
echo "demo env: $dir/env  (try: $dir/venv/bin/conda-unsloth doctor -p $dir/env)"

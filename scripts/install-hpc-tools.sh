#!/usr/bin/env bash
# Install the two module systems the modulefile tests load real files with:
#   * Lmod (Debian package `lmod`, Lua modulefiles), installed with apt-get;
#   * Environment Modules 5.x (Debian package `environment-modules`, Tcl modulefiles).
# Debian declares the two packages as conflicting (each ships /etc/profile.d hooks and a
# `module` shell function), so apt-get refuses to install both. We install Lmod normally and
# unpack the environment-modules .deb, unregistered, into a private directory; the tests only
# need its `modulecmd.tcl`, which runs from any location. Its dependencies are installed with
# apt-get. The tests find it through CONDA_UNSLOTH_MODULECMD_TCL or the default path below.
#
# Idempotent and quick when everything is already there. Runs as root (no sudo) or with sudo.
set -euo pipefail

MODULES_DIR="${CONDA_UNSLOTH_TCL_MODULES_DIR:-/opt/conda-unsloth-ci/environment-modules}"
LMOD_CMD_PATH="/usr/share/lmod/lmod/libexec/lmod"
TCL_CMD_PATH="$MODULES_DIR/usr/lib/x86_64-linux-gnu/modulecmd.tcl"

if [ -x "$LMOD_CMD_PATH" ] && [ -f "$TCL_CMD_PATH" ] && command -v tclsh >/dev/null 2>&1; then
    echo "install-hpc-tools: Lmod and Environment Modules already present"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install-hpc-tools: need root (or sudo) to run apt-get" >&2
        exit 1
    fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-hpc-tools: apt-get not found (Debian/Ubuntu only); modulefile tests will skip" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# lmod, plus environment-modules' own Depends (tcl8.6 less procps python3).
$SUDO apt-get install -y -qq --no-install-recommends lmod tcl8.6 less procps python3 >/dev/null

if [ ! -f "$TCL_CMD_PATH" ]; then
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    # apt-get download writes into the current directory; the _apt user must be able to.
    chmod 0755 "$work"
    (cd "$work" && $SUDO apt-get download -qq -o APT::Sandbox::User=root environment-modules)
    $SUDO mkdir -p "$MODULES_DIR"
    $SUDO dpkg-deb -x "$work"/environment-modules_*.deb "$MODULES_DIR"
fi

"$LMOD_CMD_PATH" --version 2>&1 | head -n 2 | tail -n 1 || true
tclsh "$TCL_CMD_PATH" bash --version 2>&1 || true
echo "install-hpc-tools: Lmod at $LMOD_CMD_PATH, Environment Modules at $TCL_CMD_PATH"

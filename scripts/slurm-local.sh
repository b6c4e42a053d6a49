#!/usr/bin/env bash
# A throw-away Slurm cluster on localhost, for the tests that submit the job scripts we
# generate to a real scheduler (docs/dev/slurm-lane.md).
#
#   scripts/slurm-local.sh install              apt-get the packages (Debian/Ubuntu; idempotent)
#   scripts/slurm-local.sh start  [STATE_DIR]   start munged, slurmctld, slurmd; wait until idle
#   scripts/slurm-local.sh stop   [STATE_DIR]   cancel jobs, stop the daemons by their PIDs
#   scripts/slurm-local.sh status [STATE_DIR]   exit 0 running, 1 partly running, 3 stopped
#
# `start` prints one line on stdout, `export SLURM_CONF=STATE_DIR/etc/slurm.conf`, so
#   eval "$(scripts/slurm-local.sh start)"
# points sbatch/squeue/sinfo at the cluster; everything else goes to stderr. Nothing outside
# STATE_DIR is written: munged gets its own key and socket there (slurm.conf's
# AuthInfo=socket=...), so a munged or Slurm of the host is left alone.
#
# The cluster models one GPU type per partition. By default each type is a node of its own
# (one slurmd per node on this host, each on its own port, started with `slurmd -N NODE`):
#   node gpu-v100: Gres=gpu:v100:2 Features=v100   partition v100
#   node gpu-a100: Gres=gpu:a100:2 Features=a100   partition a100
#   node gpu-h100: Gres=gpu:h100:2 Features=h100   partition h100
#   partition gpu (Default=YES): all the nodes, where --constraint / --gres=gpu:TYPE:N choose
# With CONDA_UNSLOTH_SLURM_LAYOUT=single there is one node, gpu-node, holding every type and
# feature; the partitions are the same but all of them are that one node.
# The GPUs are fake: each gres.conf File= is a symlink to /dev/null (Slurm 22.05 drops a GPU
# without File=), so jobs get CUDA_VISIBLE_DEVICES but no GPU.
#
# Environment (all optional):
#   CONDA_UNSLOTH_SLURM_DIR        default STATE_DIR (/tmp/conda-unsloth-slurm)
#   CONDA_UNSLOTH_SLURM_LAYOUT     nodes (default) or single
#   CONDA_UNSLOTH_SLURM_GPU_TYPES  comma-separated GPU types = partitions (v100,a100,h100)
#   CONDA_UNSLOTH_SLURM_GPUS       fake GPUs of each type (2)
#   CONDA_UNSLOTH_SLURM_CPUS       CPUs each node declares (the host's, at least 8)
#   CONDA_UNSLOTH_SLURM_MEM_MB     memory each node declares (the host's, at least 32768)
#   CONDA_UNSLOTH_SLURM_PORT       slurmctld port (6817); slurmd ports follow it
#   CONDA_UNSLOTH_SLURM_TIMEOUT    seconds `start` waits for the nodes to be idle (60)
# Nodes declare at least 8 CPUs and 32 GiB (SlurmdParameters=config_overrides keeps them from
# draining on a smaller host) so our generated jobs (--cpus-per-task=4 --mem=16G) fit as
# written; memory is not enforced (no cgroups, CR_Core). A job that fits no partition is
# refused by sbatch (EnforcePartLimits=ANY) instead of pending for ever.
#
# Runs as root (slurmd must). No systemd needed: the daemons are started directly and stopped
# by the PIDs in STATE_DIR/run, never by name.
set -euo pipefail
export LC_ALL=C

PROG="slurm-local"
MARKER=".slurm-local"
PACKAGES=(slurmctld slurmd slurm-client munge)
COMMANDS=(slurmctld slurmd sinfo sbatch squeue scancel scontrol munged munge unmunge)

log() { echo "$PROG: $*" >&2; }
die() {
    log "$*"
    exit 1
}

usage() {
    cat >&2 <<EOF
usage: $0 install | start [STATE_DIR] | stop [STATE_DIR] | status [STATE_DIR]
  install   apt-get install ${PACKAGES[*]} (when missing)
  start     start a local cluster in STATE_DIR (default /tmp/conda-unsloth-slurm) and wait
            until its nodes are idle; prints: export SLURM_CONF=STATE_DIR/etc/slurm.conf
  stop      cancel the cluster's jobs and stop its daemons (by the PIDs in STATE_DIR/run)
  status    list the daemons; exit 0 running, 1 partly running, 3 stopped
EOF
    exit 2
}

# ---------------------------------------------------------------------------------------------
# paths and settings

setup() {
    local dir="${1:-${CONDA_UNSLOTH_SLURM_DIR:-/tmp/conda-unsloth-slurm}}"
    case "$dir" in
        /*) ;;
        *) dir="$PWD/$dir" ;;
    esac
    # slurm.conf has no quoting: refuse paths it could not hold
    if [[ ! "$dir" =~ ^[A-Za-z0-9._/+-]+$ ]]; then
        die "STATE_DIR '$dir' has characters slurm.conf cannot hold (use [A-Za-z0-9._/+-])"
    fi
    STATE_DIR="${dir%/}"
    ETC="$STATE_DIR/etc"
    RUN="$STATE_DIR/run"
    LOGS="$STATE_DIR/log"
    CONF="$ETC/slurm.conf"
    MUNGE_SOCKET="$RUN/munge.socket"
    LAYOUT="${CONDA_UNSLOTH_SLURM_LAYOUT:-nodes}"
    case "$LAYOUT" in
        nodes | single) ;;
        *) die "CONDA_UNSLOTH_SLURM_LAYOUT must be 'nodes' or 'single', not '$LAYOUT'" ;;
    esac
    IFS=, read -r -a GPU_TYPES <<<"${CONDA_UNSLOTH_SLURM_GPU_TYPES:-v100,a100,h100}"
    local t
    [ "${#GPU_TYPES[@]}" -ge 1 ] || die "CONDA_UNSLOTH_SLURM_GPU_TYPES is empty"
    for t in "${GPU_TYPES[@]}"; do
        [[ "$t" =~ ^[a-z][a-z0-9]*$ ]] || die "GPU type '$t' must match [a-z][a-z0-9]*"
        [ "$t" != gpu ] || die "GPU type 'gpu' would clash with the default partition 'gpu'"
    done
    GPUS="${CONDA_UNSLOTH_SLURM_GPUS:-2}"
    PORT="${CONDA_UNSLOTH_SLURM_PORT:-6817}"
    TIMEOUT="${CONDA_UNSLOTH_SLURM_TIMEOUT:-60}"
    CPUS="${CONDA_UNSLOTH_SLURM_CPUS:-$(max "$(host_cpus)" 8)}"
    MEM_MB="${CONDA_UNSLOTH_SLURM_MEM_MB:-$(max "$(host_mem_mb)" 32768)}"
    local n
    for n in GPUS PORT TIMEOUT CPUS MEM_MB; do
        [[ "${!n}" =~ ^[1-9][0-9]*$ ]] || die "CONDA_UNSLOTH_SLURM_$n must be a positive integer"
    done
    [ $((PORT + ${#GPU_TYPES[@]})) -le 65535 ] || die "CONDA_UNSLOTH_SLURM_PORT is too high"
    if [ "$LAYOUT" = single ]; then
        NODES=(gpu-node)
    else
        NODES=()
        for t in "${GPU_TYPES[@]}"; do NODES+=("gpu-$t"); done
    fi
}

need_tools() {
    local c missing=()
    for c in "${COMMANDS[@]}"; do
        command -v "$c" >/dev/null 2>&1 || missing+=("$c")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        die "not installed: ${missing[*]} (run: $0 install)"
    fi
    [ "$(id -u)" -eq 0 ] || die "must run as root (slurmd runs jobs as their user)"
}

# ---------------------------------------------------------------------------------------------
# processes: each daemon's PID is in $RUN/<name>.pid; a PID counts only if that process is
# still the program we started (the kernel may reuse a PID)

pid_of() { # NAME -> the live PID on stdout, or status 1
    local name="$1" prog pid comm
    prog="${name%%-*}"
    [ -s "$RUN/$name.pid" ] || return 1
    pid="$(tr -dc 0-9 <"$RUN/$name.pid")"
    [ -n "$pid" ] || return 1
    alive "$pid" || return 1
    comm="$(cat "/proc/$pid/comm" 2>/dev/null)" || return 1
    [ "$comm" = "$prog" ] || return 1
    echo "$pid"
}

alive() { # PID -> 0 while it runs; a zombie (exited, not yet reaped by its parent) is gone
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    # /proc/PID/stat: "PID (COMM) STATE ..."; COMM may hold spaces and parentheses
    stat="${stat##*) }"
    [ "${stat%% *}" != Z ]
}

daemons() { # every daemon name, in start order
    local n
    echo munged
    echo slurmctld
    for n in "${NODES[@]}"; do echo "slurmd-$n"; done
}

count_running() {
    local name k=0
    for name in $(daemons); do
        if pid_of "$name" >/dev/null; then k=$((k + 1)); fi
    done
    echo "$k"
}

wait_exit() { # PID SECONDS -> 0 once gone
    local pid="$1" deadline=$((SECONDS + $2))
    while alive "$pid"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

stop_daemon() {
    local name="$1" pid
    if pid="$(pid_of "$name")"; then
        kill -TERM "$pid" 2>/dev/null || true
        if ! wait_exit "$pid" 20; then
            log "$name (pid $pid) ignored SIGTERM for 20 s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            wait_exit "$pid" 5 || die "$name (pid $pid) is still running"
        fi
        log "stopped $name (pid $pid)"
    fi
    rm -f "$RUN/$name.pid"
}

wait_pidfile() { # NAME SECONDS
    local deadline=$((SECONDS + $2))
    until pid_of "$1" >/dev/null; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

port_busy() { # PORT -> 0 when something accepts connections on it
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

show_logs() {
    local f
    for f in "$LOGS"/*.log; do
        [ -f "$f" ] || continue
        echo "----- $f (last 25 lines)" >&2
        tail -n 25 "$f" >&2
    done
}

fail_start() {
    log "start failed: $*"
    show_logs
    do_stop
    exit 1
}

# ---------------------------------------------------------------------------------------------
# configuration

elapsed() { # EPOCHREALTIME at the start -> seconds since, to 0.1 s
    awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'
}

host_cpus() { nproc 2>/dev/null || echo 1; }
host_mem_mb() { awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo; }
max() { if [ "$1" -gt "$2" ]; then echo "$1"; else echo "$2"; fi; }

write_config() {
    local cpus="$CPUS" mem="$MEM_MB" t n i port features gres first last

    # fake GPU device files: Slurm 22.05 removes "file-less" GPUs and wants a character device
    mkdir -p "$STATE_DIR/dev"
    local ndev=$((GPUS * ${#GPU_TYPES[@]}))
    for ((i = 0; i < ndev; i++)); do ln -sfn /dev/null "$STATE_DIR/dev/nvidia$i"; done

    {
        echo "# Written by scripts/slurm-local.sh: a throw-away test cluster on localhost."
        echo "ClusterName=cu-local"
        echo "SlurmctldHost=localhost"
        echo "SlurmctldPort=$PORT"
        echo "SlurmdPort=$((PORT + 1))"
        echo "AuthType=auth/munge"
        echo "CredType=cred/munge"
        echo "AuthInfo=socket=$MUNGE_SOCKET"
        echo "SlurmUser=root"
        echo "SlurmdUser=root"
        echo "StateSaveLocation=$STATE_DIR/state"
        echo "SlurmdSpoolDir=$STATE_DIR/spool/%n"
        echo "SlurmctldPidFile=$RUN/slurmctld.pid"
        echo "SlurmdPidFile=$RUN/slurmd-%n.pid"
        echo "SlurmctldLogFile=$LOGS/slurmctld.log"
        echo "SlurmdLogFile=$LOGS/slurmd-%n.log"
        echo "SlurmctldDebug=info"
        echo "SlurmdDebug=info"
        echo "# no cgroups: processes tracked through /proc, no task binding or limits"
        echo "ProctrackType=proctrack/linuxproc"
        echo "TaskPlugin=task/none"
        echo "JobAcctGatherType=jobacct_gather/none"
        echo "AccountingStorageType=accounting_storage/none"
        echo "JobCompType=jobcomp/none"
        echo "MpiDefault=none"
        echo "SwitchType=switch/none"
        echo "MailProg=/bin/true"
        echo "# refuse at submission a job that no partition could ever run (else it pends forever)"
        echo "EnforcePartLimits=ANY"
        echo "SelectType=select/cons_tres"
        echo "SelectTypeParameters=CR_Core"
        echo "ReturnToService=2"
        echo "# sbatch --wait polls after 2, 8, 32 s... unless MinJobAge/2 <= 2: then every 2 s"
        echo "MinJobAge=5"
        echo "# the nodes' CPUs/memory below are taken as given, even above the host's"
        echo "SlurmdParameters=config_overrides"
        echo "GresTypes=gpu"
        if [ "$LAYOUT" = single ]; then
            features="$(
                IFS=,
                echo "${GPU_TYPES[*]}"
            )"
            gres=""
            for t in "${GPU_TYPES[@]}"; do gres="${gres:+$gres,}gpu:$t:$GPUS"; done
            echo "NodeName=gpu-node NodeHostname=localhost NodeAddr=127.0.0.1" \
                "CPUs=$cpus RealMemory=$mem Gres=$gres Features=$features State=UNKNOWN"
        else
            port=$((PORT + 1))
            for t in "${GPU_TYPES[@]}"; do
                echo "NodeName=gpu-$t NodeHostname=localhost NodeAddr=127.0.0.1 Port=$port" \
                    "CPUs=$cpus RealMemory=$mem Gres=gpu:$t:$GPUS Features=$t State=UNKNOWN"
                port=$((port + 1))
            done
        fi
        echo "PartitionName=gpu Nodes=ALL Default=YES MaxTime=INFINITE State=UP"
        for t in "${GPU_TYPES[@]}"; do
            if [ "$LAYOUT" = single ]; then n=gpu-node; else n="gpu-$t"; fi
            echo "PartitionName=$t Nodes=$n MaxTime=INFINITE State=UP"
        done
    } >"$CONF.tmp"
    mv -f "$CONF.tmp" "$CONF"

    {
        echo "# Written by scripts/slurm-local.sh: fake GPUs (/dev/null), no autodetection."
        echo "AutoDetect=off"
        i=0
        for t in "${GPU_TYPES[@]}"; do
            if [ "$LAYOUT" = single ]; then
                n=gpu-node first=$i last=$((i + GPUS - 1))
            else
                n="gpu-$t" first=0 last=$((GPUS - 1))
            fi
            echo "NodeName=$n Name=gpu Type=$t File=$STATE_DIR/dev/nvidia[$first-$last]"
            i=$((i + GPUS))
        done
    } >"$ETC/gres.conf.tmp"
    mv -f "$ETC/gres.conf.tmp" "$ETC/gres.conf"
}

# ---------------------------------------------------------------------------------------------
# subcommands

do_install() {
    local c absent=0
    for c in "${COMMANDS[@]}"; do
        command -v "$c" >/dev/null 2>&1 || absent=1
    done
    if [ "$absent" -eq 0 ]; then
        log "Slurm $(slurmd -V | awk '{print $2}') and munge already installed"
        return 0
    fi
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found (Debian/Ubuntu only)"
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to run apt-get"
        sudo="sudo"
    fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
    log "installed Slurm $(slurmd -V | awk '{print $2}') and munge"
}

all_idle() {
    local out line state k=0
    out="$(SLURM_CONF="$CONF" sinfo -h -N -o '%N %T' 2>/dev/null)" || return 1
    # one line per (node, partition); every state must be plain idle
    while read -r _ state; do
        [ -n "$state" ] || continue
        [ "$state" = idle ] || return 1
        k=$((k + 1))
    done <<<"$out"
    [ "$k" -gt 0 ] || return 1
    for line in "${NODES[@]}"; do
        grep -q "^$line " <<<"$out" || return 1
    done
}

do_start() {
    local t0="$EPOCHREALTIME" running n deadline
    need_tools
    running="$(count_running)"
    if [ "$running" -eq "$(daemons | wc -l)" ] && all_idle; then
        log "already running in $STATE_DIR"
        echo "export SLURM_CONF=$CONF"
        return 0
    fi
    if [ "$running" -gt 0 ]; then
        log "partly running in $STATE_DIR; restarting"
        do_stop
    fi

    # ports: another cluster (or this host's Slurm) may hold them
    local port last=$((PORT + ${#NODES[@]}))
    for ((port = PORT; port <= last; port++)); do
        if port_busy "$port"; then
            die "port $port is in use (another Slurm?); choose others with CONDA_UNSLOTH_SLURM_PORT"
        fi
    done

    # only ever write into an empty or new directory, or one this script made
    if [ -e "$STATE_DIR" ] && [ ! -f "$STATE_DIR/$MARKER" ]; then
        [ -d "$STATE_DIR" ] || die "STATE_DIR $STATE_DIR exists and is not a directory"
        if [ -n "$(ls -A "$STATE_DIR")" ]; then
            die "STATE_DIR $STATE_DIR is not empty and was not made by $0; give another"
        fi
    fi
    mkdir -p "$STATE_DIR"
    echo "state directory of scripts/slurm-local.sh (conda-unsloth)" >"$STATE_DIR/$MARKER"

    # a fresh cluster each time: no jobs or node states carried over
    rm -rf "$STATE_DIR/state" "$STATE_DIR/spool" "$RUN"
    mkdir -p "$ETC" "$LOGS" "$STATE_DIR/state" "$STATE_DIR/munge"
    for n in "${NODES[@]}"; do mkdir -p "$STATE_DIR/spool/$n"; done
    # munged wants its socket's directory open to all, its key private
    mkdir -m 0755 "$RUN"
    chmod 0755 "$STATE_DIR"
    chmod 0700 "$STATE_DIR/munge"
    write_config

    local key="$STATE_DIR/munge/munge.key"
    if [ ! -s "$key" ]; then
        (
            umask 077
            if command -v mungekey >/dev/null 2>&1; then
                mungekey --create --keyfile="$key" --force
            else
                head -c 1024 /dev/urandom >"$key"
            fi
        )
    fi
    chmod 0600 "$key"

    # --force: munged refuses a socket below a directory that not everyone may search (a 0700
    # mktemp/pytest dir); with it that is a warning. Everything here runs as root.
    munged --force --socket="$MUNGE_SOCKET" --key-file="$key" --pid-file="$RUN/munged.pid" \
        --log-file="$LOGS/munged.log" --seed-file="$STATE_DIR/munge/munged.seed" \
        </dev/null >>"$LOGS/munged.out" 2>&1 || fail_start "munged did not start"
    wait_pidfile munged 10 || fail_start "munged wrote no PID file"
    munge -n -S "$MUNGE_SOCKET" | unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1 ||
        fail_start "munge credentials do not round-trip through $MUNGE_SOCKET"

    export SLURM_CONF="$CONF"
    slurmctld -f "$CONF" </dev/null >>"$LOGS/slurmctld.out" 2>&1 ||
        fail_start "slurmctld did not start"
    wait_pidfile slurmctld 15 || fail_start "slurmctld exited or wrote no PID file"
    for n in "${NODES[@]}"; do
        slurmd -f "$CONF" -N "$n" </dev/null >>"$LOGS/slurmd-$n.out" 2>&1 ||
            fail_start "slurmd for $n did not start"
    done
    for n in "${NODES[@]}"; do
        wait_pidfile "slurmd-$n" 15 || fail_start "slurmd for $n exited or wrote no PID file"
    done

    deadline=$((SECONDS + TIMEOUT))
    until all_idle; do
        [ "$(count_running)" -eq "$(daemons | wc -l)" ] || fail_start "a daemon exited"
        [ "$SECONDS" -lt "$deadline" ] ||
            fail_start "nodes not idle after ${TIMEOUT} s: $(sinfo -h -N -o '%N=%T' | tr '\n' ' ')"
        sleep 0.2
    done
    log "cluster cu-local up in $(elapsed "$t0") s ($STATE_DIR, layout $LAYOUT):"
    sinfo -N -o '%N %P %T %f %G' >&2
    echo "export SLURM_CONF=$CONF"
}

do_stop() {
    local name pid ids deadline t0="$EPOCHREALTIME"
    if pid_of slurmctld >/dev/null; then
        # cancel every job first, so that no slurmstepd or job process outlives its slurmd
        ids="$(SLURM_CONF="$CONF" squeue -h -r -o '%A' 2>/dev/null | sort -u | tr '\n' ' ')"
        if [ -n "${ids// /}" ]; then
            log "cancelling jobs: $ids"
            # shellcheck disable=SC2086 # one word per job id
            SLURM_CONF="$CONF" scancel $ids 2>/dev/null || true
            deadline=$((SECONDS + 30))
            while [ -n "$(SLURM_CONF="$CONF" squeue -h 2>/dev/null)" ]; do
                if [ "$SECONDS" -ge "$deadline" ]; then
                    log "jobs still listed after 30 s; stopping anyway"
                    break
                fi
                sleep 0.2
            done
        fi
    fi
    local stopped=0
    for name in $(daemons | tac); do
        if pid="$(pid_of "$name")"; then
            stop_daemon "$name"
            stopped=$((stopped + 1))
        else
            rm -f "$RUN/$name.pid"
        fi
    done
    # slurmd PID files of nodes no longer in the layout
    for pid in "$RUN"/slurmd-*.pid; do
        [ -f "$pid" ] || continue
        name="$(basename "$pid" .pid)"
        stop_daemon "$name"
    done
    if [ "$stopped" -eq 0 ]; then
        log "not running in $STATE_DIR"
    else
        log "stopped in $(elapsed "$t0") s"
    fi
}

do_status() {
    local name pid k=0 total=0
    for name in $(daemons); do
        total=$((total + 1))
        if pid="$(pid_of "$name")"; then
            echo "$name: running (pid $pid)"
            k=$((k + 1))
        else
            echo "$name: stopped"
        fi
    done
    if pid_of slurmctld >/dev/null; then
        SLURM_CONF="$CONF" sinfo -N -o '%N %P %T %f %G' || true
    fi
    if [ "$k" -eq "$total" ]; then
        echo "export SLURM_CONF=$CONF"
        return 0
    elif [ "$k" -eq 0 ]; then
        return 3
    fi
    return 1
}

[ "$#" -ge 1 ] || usage
cmd="$1"
shift
[ "$#" -le 1 ] || usage
case "$cmd" in
    install) do_install ;;
    start)
        setup "$@"
        do_start
        ;;
    stop)
        setup "$@"
        do_stop
        ;;
    status)
        setup "$@"
        rc=0
        do_status || rc=$?
        exit "$rc"
        ;;
    -h | --help | help) usage ;;
    *) usage ;;
esac

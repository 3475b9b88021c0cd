#!/usr/bin/env bash
# A throwaway single-node Slurm cluster on this machine, for testing the Make
# DAG under a real scheduler (scripts/test-cluster.sh).
#
#   scripts/slurm-cluster.sh start  [STATEDIR]   start it (idempotent); prints
#                                                the `export SLURM_CONF=...` line
#   scripts/slurm-cluster.sh stop   [STATEDIR]   cancel its jobs, stop its daemons
#   scripts/slurm-cluster.sh status [STATEDIR]   daemons, node state; 0 when up
#   scripts/slurm-cluster.sh env    [STATEDIR]   just the export line
#
# STATEDIR (default $SLURM_CLUSTER_DIR, else /tmp/subdistill-slurm) holds
# everything: slurm.conf, the munge key and socket, controller state, slurmd
# spool, logs, pid files and the job-completion log read by `sacct -c`.
# Nothing under /etc is changed: daemons and clients find the generated
# configuration through SLURM_CONF. `start` prints the export line on stdout
# (all else goes to stderr), so `eval "$(scripts/slurm-cluster.sh start)"`
# points the current shell at the cluster.
#
# Needs root (munged runs as the `munge` user, slurmd launches job steps)
# and Debian's slurmctld, slurmd, slurm-client and munge packages, installed
# with apt-get when missing.
#
# Exit status: 0 done; 77 not root; 78 packages unavailable; 70 a daemon
# failed or the cluster did not answer in time; 3 (`status`) not running;
# 64 usage.
#
# Environment: SLURM_CLUSTER_CTLD_PORT / SLURM_CLUSTER_SLURMD_PORT (default
# 16817 / 16818, away from a real cluster's 6817 / 6818),
# SLURM_CLUSTER_TIMEOUT (seconds to wait for the node, default 90),
# SLURM_CLUSTER_CPUS (CPUs to declare; default the machine's; more than the
# machine has oversubscribes on purpose).
set -uo pipefail

EX_NOT_ROOT=77
EX_NO_PACKAGES=78
EX_DAEMON=70
EX_NOT_RUNNING=3
EX_USAGE=64

cmd=${1:-}
STATEDIR=${2:-${SLURM_CLUSTER_DIR:-/tmp/subdistill-slurm}}
case "$STATEDIR" in /*) ;; *) STATEDIR="$PWD/$STATEDIR" ;; esac
CONF="$STATEDIR/slurm.conf"
CTLD_PORT=${SLURM_CLUSTER_CTLD_PORT:-16817}
SLURMD_PORT=${SLURM_CLUSTER_SLURMD_PORT:-16818}
TIMEOUT=${SLURM_CLUSTER_TIMEOUT:-90}
# Every daemon of this cluster carries this variable in its environment, as
# do the slurmstepd processes slurmd forks: `stop` finds leftovers by it
# (lost pid files, a previous cluster in the same folder), never by name.
MARK="SUBDISTILL_SLURM_CLUSTER=$STATEDIR"

say() { echo "slurm-cluster: $*" >&2; }
die() { local code=$1; shift; say "$*"; exit "$code"; }

usage() {
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit $EX_USAGE
}

# ---------------------------------------------------------------- processes
# Pids of live processes whose environment carries $MARK (any command).
marked_pids() {
    local p
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        [ -r "/proc/$p/environ" ] || continue
        if { tr '\0' '\n' < "/proc/$p/environ"; } 2>/dev/null | grep -qxF "$MARK"; then
            echo "$p"
        fi
    done
}

# True when pid $1 has exited but is not reaped yet (still has a /proc entry).
is_zombie() {
    grep -q '^State:[[:space:]]*[ZX]' "/proc/$1/status" 2>/dev/null
}

# The pid in pid file $1 when that process is alive and its command is one
# of $2... (a stale pid file may name a pid reused by another program).
live_pid() {
    local file=$1 pid comm w
    shift
    [ -f "$file" ] || return 1
    pid=$(tr -dc '0-9' < "$file")
    [ -n "$pid" ] || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    is_zombie "$pid" && return 1
    for w in "$@"; do
        [ "$comm" = "$w" ] && { echo "$pid"; return 0; }
    done
    return 1
}

# Sends TERM to pid $1, KILL after $2 seconds; waits until it is gone.
stop_pid() {
    local pid=$1 grace=${2:-10} i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < grace * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        is_zombie "$pid" && return 0
        sleep 0.1
    done
    say "pid $pid ($(cat /proc/$pid/comm 2>/dev/null)) ignored TERM; sending KILL"
    kill -KILL "$pid" 2>/dev/null
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        is_zombie "$pid" && return 0
        sleep 0.1
    done
}

# ---------------------------------------------------------------- packages
ensure_packages() {
    local missing=() c
    for c in slurmctld slurmd srun sinfo squeue scancel sacct munged munge unmunge; do
        command -v "$c" >/dev/null 2>&1 || missing+=("$c")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 || die $EX_NO_PACKAGES "packages unavailable: no ${missing[*]} and no apt-get to install slurmctld slurmd slurm-client munge"
    say "installing slurmctld slurmd slurm-client munge (missing: ${missing[*]})"
    # The packages' own services must not start (they would use /etc/slurm and
    # the system munge key): deny service starts while installing unless a
    # policy already does (as in containers).
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && made_policy=1
    fi
    local ok=1 log
    log=$(mktemp "${TMPDIR:-/tmp}/slurm-cluster-apt.XXXXXX")
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq > "$log" 2>&1 || ok=0
    if [ $ok = 1 ]; then
        apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >> "$log" 2>&1 || ok=0
    fi
    [ $made_policy = 1 ] && rm -f "$policy"
    if [ $ok = 0 ]; then
        tail -5 "$log" >&2
        rm -f "$log"
        die $EX_NO_PACKAGES "packages unavailable: apt-get could not install slurmctld slurmd slurm-client munge"
    fi
    rm -f "$log"
    for c in slurmctld slurmd srun sinfo munged; do
        command -v "$c" >/dev/null 2>&1 || die $EX_NO_PACKAGES "packages unavailable: '$c' still missing after apt-get install"
    done
}

# ---------------------------------------------------------------- config
write_conf() {
    local host cpus mem line
    host=$(hostname -s)
    # slurmd -C gives exactly what slurmd will register, so the node is not
    # drained for a mismatch; memory is declared 5% lower for the same reason.
    line=$(slurmd -C 2>/dev/null | head -1)
    cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<< "$line")
    mem=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<< "$line")
    [ -n "$cpus" ] || cpus=$(nproc)
    [ -n "$mem" ] || mem=$(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo)
    mem=$((mem * 95 / 100))
    local overrides=""
    if [ -n "${SLURM_CLUSTER_CPUS:-}" ] && [ "$SLURM_CLUSTER_CPUS" != "$cpus" ]; then
        cpus=$SLURM_CLUSTER_CPUS
        overrides="SlurmdParameters=config_overrides"
    fi
    : > "$STATEDIR/plugstack.conf"
    cat > "$CONF" <<EOF
# Generated by scripts/slurm-cluster.sh: a throwaway single-node cluster.
ClusterName=subdistill-local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$STATEDIR/munge/munge.socket
StateSaveLocation=$STATEDIR/state
SlurmdSpoolDir=$STATEDIR/spool
SlurmctldPidFile=$STATEDIR/run/slurmctld.pid
SlurmdPidFile=$STATEDIR/run/slurmd.pid
SlurmctldLogFile=$STATEDIR/log/slurmctld.log
SlurmdLogFile=$STATEDIR/log/slurmd.log
PlugStackConfig=$STATEDIR/plugstack.conf
# No cgroups: processes tracked by parent pid, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SwitchType=switch/none
MpiDefault=none
# Consumable cores and memory: several 1-CPU job steps run side by side;
# a job without --mem gets its share of memory per CPU.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$((mem / cpus))
# No slurmdbd: job records go to a text file that \`sacct -c\` reads.
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$STATEDIR/log/jobcomp.txt
# Cancelled steps get TERM, then KILL 5 s later.
KillWait=5
ReturnToService=2
MailProg=/bin/true
MinJobAge=600
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
${overrides}
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

# ---------------------------------------------------------------- munge
start_munge() {
    local d="$STATEDIR/munge"
    id munge >/dev/null 2>&1 || die $EX_NO_PACKAGES "packages unavailable: no 'munge' user (is the munge package installed?)"
    mkdir -p "$d"
    # munged refuses insecure paths: its folder is owned by munge, not
    # writable by others; the key is readable by munge only.
    chown munge:munge "$d"
    chmod 0755 "$d"
    rm -f "$d/munge.socket" "$d/munge.socket.lock" "$d/munged.pid"
    if [ ! -s "$d/munge.key" ]; then
        if command -v mungekey >/dev/null 2>&1; then
            mungekey --create --keyfile="$d/munge.key" >&2 || die $EX_DAEMON "mungekey could not create $d/munge.key"
        else
            dd if=/dev/urandom of="$d/munge.key" bs=1024 count=1 status=none
        fi
    fi
    chown munge:munge "$d/munge.key"
    chmod 0400 "$d/munge.key"
    # munged daemonizes; it writes its pid file.
    runuser -u munge -- env "$MARK" munged \
        --key-file="$d/munge.key" --socket="$d/munge.socket" \
        --pid-file="$d/munged.pid" --log-file="$d/munged.log" \
        --seed-file="$d/munged.seed" >&2 9>&- \
        || die $EX_DAEMON "munged failed to start: $(tail -3 "$d/munged.log" 2>/dev/null)"
    local i
    for ((i = 0; i < 50; i++)); do
        [ -S "$d/munge.socket" ] && break
        sleep 0.1
    done
    munge -n -S "$d/munge.socket" 2>/dev/null | unmunge -S "$d/munge.socket" >/dev/null 2>&1 \
        || die $EX_DAEMON "munged does not answer on $d/munge.socket: $(tail -3 "$d/munged.log" 2>/dev/null)"
}

# ---------------------------------------------------------------- daemons
# Starts $1 (slurmctld|slurmd) in the foreground mode (-D), in the background,
# in its own session so a terminal's ^C does not reach it.
start_daemon() {
    local name=$1
    SLURM_CONF="$CONF" setsid env "$MARK" "$name" -D -f "$CONF" \
        > "$STATEDIR/log/$name.out" 2>&1 < /dev/null 9>&- &
    echo $! > "$STATEDIR/run/$name.launch.pid"
}

port_busy() {
    command -v ss >/dev/null 2>&1 || return 1
    ss -Hltn "sport = :$1" 2>/dev/null | grep -q .
}

daemon_pid() {
    case $1 in
        munged) live_pid "$STATEDIR/munge/munged.pid" munged ;;
        # The launch pid is setsid, then env, then the daemon (same pid).
        slurmctld | slurmd) live_pid "$STATEDIR/run/$1.pid" "$1" || live_pid "$STATEDIR/run/$1.launch.pid" "$1" setsid env ;;
    esac
}

# True when all three daemons are alive and the node is idle/mixed/allocated.
is_up() {
    daemon_pid munged >/dev/null && daemon_pid slurmctld >/dev/null && daemon_pid slurmd >/dev/null || return 1
    local st
    st=$(SLURM_CONF="$CONF" timeout 10 sinfo -h -N -o '%T' 2>/dev/null | head -1)
    case "$st" in idle* | mixed* | allocated* | completing*) return 0 ;; *) return 1 ;; esac
}

show_logs() {
    local f
    for f in "$STATEDIR/log/slurmctld.log" "$STATEDIR/log/slurmd.log" "$STATEDIR/log/slurmctld.out" "$STATEDIR/log/slurmd.out" "$STATEDIR/munge/munged.log"; do
        [ -s "$f" ] || continue
        echo "---- last lines of $f" >&2
        grep -v '^$' "$f" | tail -8 >&2
    done
}

do_stop() {
    local quiet=${1:-}
    local any=0 pid p name
    # Jobs first, so slurmd can still kill their steps.
    if [ -f "$CONF" ] && daemon_pid slurmctld >/dev/null && command -v scancel >/dev/null; then
        local jobs
        jobs=$(SLURM_CONF="$CONF" timeout 10 squeue -h -o '%i' 2>/dev/null)
        if [ -n "$jobs" ]; then
            say "cancelling jobs: $(echo $jobs)"
            SLURM_CONF="$CONF" timeout 10 scancel $jobs 2>/dev/null
            local i
            for ((i = 0; i < 150; i++)); do
                [ -z "$(SLURM_CONF="$CONF" timeout 10 squeue -h -o '%i' 2>/dev/null)" ] && break
                sleep 0.1
            done
        fi
    fi
    for name in slurmd slurmctld munged; do
        if pid=$(daemon_pid $name); then
            [ -z "$quiet" ] && say "stopping $name (pid $pid)"
            stop_pid "$pid" 10
            any=1
        fi
    done
    # Leftovers of this cluster (slurmstepd of killed jobs, a daemon whose pid
    # file was lost), found by the marker in their environment.
    for p in $(marked_pids); do
        [ "$p" = "$$" ] && continue
        is_zombie "$p" && continue
        [ -n "$(cat /proc/$p/comm 2>/dev/null)" ] || continue
        say "stopping leftover $(cat /proc/$p/comm 2>/dev/null) (pid $p)"
        stop_pid "$p" 5
        any=1
    done
    rm -f "$STATEDIR"/run/*.pid "$STATEDIR/munge/munged.pid"
    [ -z "$quiet" ] && { [ $any = 1 ] && say "stopped (state kept in $STATEDIR)" || say "not running"; }
    return 0
}

do_start() {
    [ "$(id -u)" -eq 0 ] || die $EX_NOT_ROOT "not root: the throwaway cluster needs root (munged runs as user munge, slurmd launches steps)"
    ensure_packages
    if [ -f "$CONF" ] && is_up; then
        say "already running ($STATEDIR)"
        echo "export SLURM_CONF=$CONF"
        return 0
    fi
    # Anything half-alive from an earlier start is stopped; state is fresh.
    do_stop quiet
    for port in "$CTLD_PORT" "$SLURMD_PORT"; do
        port_busy "$port" && die $EX_DAEMON "port $port is in use by another program (another Slurm?); set SLURM_CLUSTER_CTLD_PORT / SLURM_CLUSTER_SLURMD_PORT"
    done
    mkdir -p "$STATEDIR"
    chmod 0755 "$STATEDIR"
    rm -rf "$STATEDIR/state" "$STATEDIR/spool" "$STATEDIR/log" "$STATEDIR/run"
    mkdir -p "$STATEDIR/state" "$STATEDIR/spool" "$STATEDIR/log" "$STATEDIR/run"
    write_conf
    start_munge
    start_daemon slurmctld
    # slurmd registers with the controller; give it a moment to listen.
    local i
    for ((i = 0; i < 50; i++)); do
        SLURM_CONF="$CONF" timeout 5 scontrol ping 2>/dev/null | grep -q ' is UP' && break
        daemon_pid slurmctld >/dev/null || break
        sleep 0.2
    done
    if ! daemon_pid slurmctld >/dev/null; then
        show_logs; do_stop quiet
        die $EX_DAEMON "slurmctld exited at start (logs above, in $STATEDIR/log)"
    fi
    start_daemon slurmd
    local deadline=$((SECONDS + TIMEOUT)) st="" name
    while :; do
        for name in slurmctld slurmd; do
            if ! daemon_pid $name >/dev/null; then
                show_logs; do_stop quiet
                die $EX_DAEMON "$name exited at start (logs above, in $STATEDIR/log)"
            fi
        done
        st=$(SLURM_CONF="$CONF" timeout 10 sinfo -h -N -o '%T' 2>/dev/null | head -1)
        case "$st" in idle*) break ;; esac
        if [ $SECONDS -ge $deadline ]; then
            show_logs
            SLURM_CONF="$CONF" sinfo -R >&2 2>/dev/null
            do_stop quiet
            die $EX_DAEMON "timeout: node not idle after ${TIMEOUT}s (state '${st:-no answer}')"
        fi
        sleep 0.5
    done
    local out
    out=$(SLURM_CONF="$CONF" timeout 60 srun -n1 -t 1 hostname 2>&1)
    if [ "$out" != "$(hostname)" ] && [ "$out" != "$(hostname -s)" ]; then
        echo "$out" >&2; show_logs; do_stop quiet
        die $EX_DAEMON "timeout or error: 'srun -n1 hostname' did not answer"
    fi
    say "up: node $(hostname -s) idle, $(sed -n 's/.* CPUs=\([0-9]*\) .*/\1/p' "$CONF") CPUs; srun answered; state in $STATEDIR"
    echo "export SLURM_CONF=$CONF"
}

do_status() {
    local name pid rc=0
    for name in munged slurmctld slurmd; do
        if pid=$(daemon_pid $name); then
            say "$name running (pid $pid)"
        else
            say "$name not running"; rc=$EX_NOT_RUNNING
        fi
    done
    if [ $rc = 0 ]; then
        SLURM_CONF="$CONF" timeout 10 sinfo -N -o '%N %T %C %m' >&2 || rc=$EX_NOT_RUNNING
        SLURM_CONF="$CONF" timeout 10 squeue >&2 || true
        is_up || rc=$EX_NOT_RUNNING
    fi
    [ $rc = 0 ] && echo "export SLURM_CONF=$CONF"
    return $rc
}

# One start/stop at a time per state folder (the daemons do not inherit the
# lock: their starts close fd 9).
lock() {
    mkdir -p "$(dirname "$STATEDIR")"
    exec 9> "$STATEDIR.lock"
    command -v flock >/dev/null 2>&1 && flock -w 120 9
}

case "$cmd" in
    start) lock; do_start ;;
    stop) lock; do_stop ;;
    status) do_status ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) usage ;;
esac

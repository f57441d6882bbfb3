#!/bin/bash
# A one-node SLURM cluster (munged, slurmctld, slurmd) with every file in DIR, for
# tests/tests/slurm.rs: no systemd, no cgroups (proctrack/linuxproc, task/none), no accounting,
# the node's real CPU count and memory (slurmd -C), free ports. Must run as root.
#
#   cluster.sh up DIR     start it; prints "export SLURM_CONF=DIR/slurm.conf"
#   cluster.sh down DIR   cancel every job, stop the daemons, fail if anything is left
#   cluster.sh status DIR
#
# Needs Debian's slurm-wlm and munge (bookworm: Slurm 22.05). Knobs: SLURM_KILLWAIT (default 5),
# SLURM_CRED_EXPIRE (default 10; also how long a requeued job waits before it may start again),
# SLURM_UP_TIMEOUT (default 30 s).
set -euo pipefail

die() { echo "cluster.sh: $*" >&2; exit 1; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
pid_of()    { [ -s "$1" ] && cat "$1" || true; }

# wait_gone PID SECONDS -> 0 when gone
wait_gone() {
    local p=$1 n=$(( $2 * 10 ))
    while pid_alive "$p" && [ $n -gt 0 ]; do sleep 0.1; n=$((n-1)); done
    ! pid_alive "$p"
}

# slurmstepd processes that belong to this DIR's slurmd (they keep the slurmd
# log / spool files under DIR open). Never matched by name alone.
stepds_of() {
    local dir=$1 p
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/exe" 2>/dev/null)" = /usr/sbin/slurmstepd ] || continue
        if ls -l "$p/fd" 2>/dev/null | grep -qF -- "$dir/"; then echo "${p#/proc/}"; fi
    done
}

up() {
    local dir=$1
    [ "$(id -u)" = 0 ] || die "must run as root"
    command -v slurmctld >/dev/null || die "slurmctld missing: apt-get install -y slurm-wlm munge"
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [ -e "$dir/slurm.conf" ] && pid_alive "$(pid_of "$dir/slurmctld.pid")" && die "already up in $dir"

    local host; host=$(hostname -s)
    mkdir -p "$dir/munge" "$dir/state" "$dir/spool" "$dir/log" "$dir/jobs"
    # munged insists: socket dir world-executable (0755), not world-writable;
    # key file 0600 owned by the daemon user (root here).
    chmod 0755 "$dir" "$dir/munge"
    [ -s "$dir/munge/munge.key" ] || mungekey -c -k "$dir/munge/munge.key"
    chmod 0600 "$dir/munge/munge.key"

    munged -S "$dir/munge/munge.socket" \
        --key-file="$dir/munge/munge.key" \
        --pid-file="$dir/munge/munged.pid" \
        --log-file="$dir/munge/munged.log" \
        --seed-file="$dir/munge/munged.seed" \
        || die "munged failed: $(tail -3 "$dir/munge/munged.log" 2>/dev/null)"
    local n=50
    until munge -n -S "$dir/munge/munge.socket" 2>/dev/null | unmunge -S "$dir/munge/munge.socket" >/dev/null 2>&1; do
        n=$((n-1)); [ $n -gt 0 ] || die "munged not answering"; sleep 0.1
    done

    local ctld_port slurmd_port nodeline
    ctld_port=${SLURMCTLD_PORT:-$(free_port)}
    slurmd_port=${SLURMD_PORT:-$(free_port)}
    while [ "$slurmd_port" = "$ctld_port" ]; do slurmd_port=$(free_port); done
    # e.g. "NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105"
    nodeline=$(slurmd -C | head -1 | sed "s/^NodeName=[^ ]*/NodeName=$host/")

    cat > "$dir/slurm.conf" <<EOF
ClusterName=kappatest
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=${SLURM_CRED_EXPIRE:-10}
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# default batch_sched_delay=3 adds ~3 s between sbatch and job start
SchedulerParameters=batch_sched_delay=0
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MailProg=/bin/true
KillWait=${SLURM_KILLWAIT:-5}
OverTimeLimit=0
MinJobAge=300
DependencyParameters=kill_invalid_depend
$nodeline NodeAddr=127.0.0.1 NodeHostname=$host State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF=$dir/slurm.conf
    slurmctld -f "$SLURM_CONF" || die "slurmctld failed: $(tail -5 "$dir/log/slurmctld.log")"
    slurmd -f "$SLURM_CONF" || die "slurmd failed: $(tail -5 "$dir/log/slurmd.log")"

    n=$(( ${SLURM_UP_TIMEOUT:-30} * 5 ))
    until [ "$(sinfo -h -N -o %t 2>/dev/null | head -1)" = idle ]; do
        n=$((n-1))
        if [ $n -le 0 ]; then
            sinfo -N -l >&2 || true
            tail -5 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
            die "node not idle in ${SLURM_UP_TIMEOUT:-30}s"
        fi
        sleep 0.2
    done
    echo "export SLURM_CONF=$dir/slurm.conf"
}

down() {
    local dir=$1
    [ -d "$dir" ] || die "no such dir: $dir"
    dir=$(cd "$dir" && pwd)
    export SLURM_CONF=$dir/slurm.conf
    local ctld slurmd munge p n
    ctld=$(pid_of "$dir/slurmctld.pid"); slurmd=$(pid_of "$dir/slurmd.pid")
    munge=$(pid_of "$dir/munge/munged.pid")

    if pid_alive "$ctld"; then
        # scontrol shutdown leaves running jobs' slurmstepds alive: cancel first.
        squeue -h -o %A 2>/dev/null | xargs -r scancel 2>/dev/null || true
        n=$(( ( ${SLURM_KILLWAIT:-5} + 15 ) * 5 ))
        while [ -n "$(squeue -h -o %A 2>/dev/null)" ] && [ $n -gt 0 ]; do sleep 0.2; n=$((n-1)); done
        scontrol shutdown >/dev/null 2>&1 || true
    fi
    for p in $ctld $slurmd; do
        wait_gone "$p" 15 || { kill -TERM "$p" 2>/dev/null || true; wait_gone "$p" 5 || kill -KILL "$p" 2>/dev/null || true; }
    done
    for p in $(stepds_of "$dir"); do kill -KILL "$p" 2>/dev/null || true; done
    if pid_alive "$munge"; then
        munged -S "$dir/munge/munge.socket" --stop >/dev/null 2>&1 || kill -TERM "$munge" 2>/dev/null || true
        wait_gone "$munge" 10 || kill -KILL "$munge" 2>/dev/null || true
    fi
    local left=""
    for p in $ctld $slurmd $munge $(stepds_of "$dir"); do pid_alive "$p" && left="$left $p"; done
    [ -z "$left" ] || die "still running:$left"
    rm -f "$dir/slurmctld.pid" "$dir/slurmd.pid" "$dir/munge/munged.pid"
}

status() {
    local dir; dir=$(cd "$1" && pwd)
    export SLURM_CONF=$dir/slurm.conf
    echo "slurmctld $(pid_of "$dir/slurmctld.pid") slurmd $(pid_of "$dir/slurmd.pid") munged $(pid_of "$dir/munge/munged.pid")"
    sinfo -N -l
}

case "${1:-}" in
    up|down|status) [ $# -eq 2 ] || die "usage: $0 up|down|status DIR"; "$1" "$2" ;;
    *) die "usage: $0 up|down|status DIR" ;;
esac

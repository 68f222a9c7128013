#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the `slurm` tests and for trying
# `hydra/launcher=slurm` before a real cluster. Run as root (CI is root):
#
#   scripts/slurm_up.sh      # install if missing, configure, start, wait until the node is idle
#   scripts/slurm_down.sh    # stop the three daemons
#
# What it does, each step skipped when already done (so running it twice is harmless):
#   1. installs Debian's slurmctld slurmd slurm-client munge (SLURM 22.05) when missing;
#   2. writes /etc/slurm/slurm.conf for this host (never over one it did not write): its name,
#      CPUs and memory as `slurmd -C` reports them, one partition `debug`, no accounting, no
#      cgroups (proctrack/linuxproc, task/none), KillWait 5 s and a 10 s requeue delay instead
#      of 120 s (cred_expire), so a requeued job starts again within seconds;
#   3. starts munged, slurmctld and slurmd (as root; pid files under /run);
#   4. waits (at most SLURM_UP_TIMEOUT s, default 60) until `sinfo` shows the node idle.
# Exits 0 when the node is idle, non-zero with the daemons' logs otherwise.
set -euo pipefail

CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
STATE=/var/lib/slurm
LOGS=/var/log/slurm
TIMEOUT=${SLURM_UP_TIMEOUT:-60}
t_start=$(date +%s.%N)

say() { echo "slurm_up: $*"; }
die() {
    echo "slurm_up: ERROR: $*" >&2
    for f in "$LOGS/slurmctld.log" "$LOGS/slurmd.log" /var/log/munge/munged.log; do
        [[ -f $f ]] && { echo "--- tail $f" >&2; tail -n 20 "$f" >&2; }
    done
    exit 1
}

[[ $(id -u) -eq 0 ]] || die "must run as root (the daemons run as root on this one-node cluster)"

# --- 1. packages -------------------------------------------------------------------------
missing=()
for cmd_pkg in slurmctld:slurmctld slurmd:slurmd sinfo:slurm-client munged:munge; do
    command -v "${cmd_pkg%%:*}" >/dev/null 2>&1 || missing+=("${cmd_pkg#*:}")
done
if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # The packages' postinst would try to start the daemons (without a config yet); a
    # policy-rc.d that says "no" keeps them from it, as in a container image build.
    added_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        added_policy=1
    fi
    apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=120 \
        slurmctld slurmd slurm-client munge >/dev/null
    ((added_policy)) && rm -f /usr/sbin/policy-rc.d
fi
t_installed=$(date +%s.%N)

# --- 2. configuration --------------------------------------------------------------------
host=$(hostname -s)
# `slurmd -C` prints this node's hardware line: NodeName=... CPUs=... RealMemory=...
node_line=$(slurmd -C | head -n 1)
[[ $node_line == NodeName=* ]] || die "slurmd -C gave no node line: $node_line"
# Leave 5 % of the memory to the OS, so the node is never drained for "Low RealMemory".
real_mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node_line")
node_line=$(sed "s/RealMemory=[0-9]*/RealMemory=$((real_mem * 95 / 100))/" <<<"$node_line")
# The node is reached on loopback: this host's name need not resolve to an external address.
conf=$(
    cat <<EOF
# Written by scripts/slurm_up.sh: a one-node cluster on $host for tests.
ClusterName=slopestudy
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# A requeued job may start again cred_expire seconds after it ended (default 120).
AuthInfo=cred_expire=10
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups here: processes are tracked by parent pid, tasks are not bound to cores.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
MailProg=/bin/true
# CPUs and memory are consumable: one 1-CPU job per core, and --mem counts.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
SchedulerType=sched/backfill
# The main scheduler also runs every 2 s (default 60 s): a requeued job starts as soon as
# its BeginTime passes, not up to a minute later.
SchedulerParameters=bf_interval=2,sched_interval=2
# Batch jobs may be requeued (scontrol requeue, submitit's timeout handler); a kill after a
# time limit or requeue gives the job 5 s between SIGTERM and SIGKILL.
JobRequeue=1
KillWait=5
OverTimeLimit=0
# Finished jobs stay visible to squeue/scontrol for 5 minutes.
MinJobAge=300
ReturnToService=2
SlurmdTimeout=60
$node_line State=UNKNOWN NodeAddr=127.0.0.1
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
)
# Never overwrite a configuration this script did not write (a real cluster's client config).
if [[ -f $CONF ]] && ! head -n 1 "$CONF" | grep -q "^# Written by scripts/slurm_up.sh" && [[ -z ${SLURM_UP_FORCE:-} ]]; then
    echo "slurm_up: ERROR: $CONF exists and was not written by this script; not touching it" \
        "(SLURM_UP_FORCE=1 overrides)" >&2
    exit 1
fi
mkdir -p "$CONF_DIR" "$STATE/slurmctld" "$STATE/slurmd" "$LOGS"
conf_changed=0
if [[ ! -f $CONF ]] || [[ $(cat "$CONF") != "$conf" ]]; then
    printf '%s\n' "$conf" >"$CONF"
    conf_changed=1
    say "wrote $CONF: $node_line"
fi

# --- 3. daemons --------------------------------------------------------------------------
alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# munge: the key comes with the package (Debian's postinst creates it); munged runs as munge.
if [[ ! -s /etc/munge/munge.key ]]; then
    mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
fi
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "starting munged"
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
    munge -n | unmunge >/dev/null || die "munged does not answer"
fi

if alive /run/slurmctld.pid && ((conf_changed)); then
    say "configuration changed: restarting slurmctld and slurmd"
    kill "$(cat /run/slurmctld.pid)" 2>/dev/null || true
    alive /run/slurmd.pid && kill "$(cat /run/slurmd.pid)" 2>/dev/null || true
    for _ in $(seq 100); do alive /run/slurmctld.pid || alive /run/slurmd.pid || break; sleep 0.1; done
fi
if ! alive /run/slurmctld.pid; then
    say "starting slurmctld"
    slurmctld || die "slurmctld did not start"
fi
if ! alive /run/slurmd.pid; then
    say "starting slurmd"
    slurmd || die "slurmd did not start"
fi

# --- 4. wait for the node --------------------------------------------------------------
deadline=$(($(date +%s) + TIMEOUT))
state=""
while (($(date +%s) < deadline)); do
    state=$(sinfo -h -n "$host" -o %t 2>/dev/null || true)
    case $state in
    idle | mix | alloc) break ;;
    # a node that was down (e.g. after a crash) is returned to service
    down* | drain* | fail*) scontrol update nodename="$host" state=resume 2>/dev/null || true ;;
    esac
    sleep 0.5
done
case $state in idle | mix | alloc) ;; *) die "node $host is '${state:-not listed}' after ${TIMEOUT}s" ;; esac
t_end=$(date +%s.%N)
say "node $host is $state: $(sinfo -h -n "$host" -o '%c CPUs, %m MB, partition %P')" \
    "($(awk -v a="$t_start" -v b="$t_installed" -v c="$t_end" \
        'BEGIN { printf "install %.1f s, start %.1f s", b - a, c - b }'))"

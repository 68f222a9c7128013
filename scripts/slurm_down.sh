#!/usr/bin/env bash
# Stops the one-node cluster that scripts/slurm_up.sh started: slurmd, slurmctld, munged (by
# their pid files). Running jobs are killed with their node; the configuration, the packages
# and the controller's state stay (slurm_up.sh starts them again). Harmless when not running.
set -euo pipefail
[[ $(id -u) -eq 0 ]] || { echo "slurm_down: must run as root" >&2; exit 1; }
# Only the cluster slurm_up.sh configured: never the daemons of a real cluster's node.
if ! head -n 1 /etc/slurm/slurm.conf 2>/dev/null | grep -q "^# Written by scripts/slurm_up.sh"; then
    echo "slurm_down: /etc/slurm/slurm.conf was not written by scripts/slurm_up.sh; not stopping anything" >&2
    exit 1
fi

stop() { # name pidfile
    local pid
    [[ -f $2 ]] && pid=$(cat "$2") && kill -0 "$pid" 2>/dev/null || { echo "slurm_down: $1 not running"; return 0; }
    kill "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        echo "slurm_down: $1 (pid $pid) still alive after 10 s: SIGKILL"
        kill -9 "$pid"
    fi
    echo "slurm_down: stopped $1 (pid $pid)"
}

stop slurmd /run/slurmd.pid
stop slurmctld /run/slurmctld.pid
stop munged /run/munge/munged.pid

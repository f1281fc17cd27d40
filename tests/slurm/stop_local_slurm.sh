#!/usr/bin/env bash
# Stop the cluster started by start_local_slurm.sh: kill its daemons by the PIDs in
# their PID files and remove its /etc/slurm symlinks.
#
#   bash tests/slurm/stop_local_slurm.sh [STATE_DIR]      (default: /tmp/gsmorph-slurm)
set -uo pipefail

STATE=${1:-/tmp/gsmorph-slurm}
# cancel what is left of this cluster's jobs while its controller still runs
if [ -s "$STATE/slurmctld.pid" ] && [ "$(readlink /etc/slurm/slurm.conf 2>/dev/null)" = "$STATE/slurm.conf" ]; then
    ids=$(squeue -h -o %i 2>/dev/null || true)
    # shellcheck disable=SC2086  # one id per word
    [ -n "$ids" ] && scancel --full $ids 2>/dev/null
fi
for pidfile in "$STATE/slurmd.pid" "$STATE/slurmctld.pid" "$STATE/munge/munged.pid"; do
    [ -s "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if kill "$pid" 2>/dev/null; then
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
    fi
    rm -f "$pidfile"
done
for conf in slurm.conf gres.conf; do
    link=/etc/slurm/$conf
    if [ -L "$link" ]; then
        case "$(readlink "$link")" in
            "$STATE"/*) rm -f "$link" ;;
        esac
    fi
done
echo "local SLURM in $STATE stopped"

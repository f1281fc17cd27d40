#!/usr/bin/env bash
# Start a single-node SLURM cluster on localhost with one fake GPU, for tests.
#
#   bash tests/slurm/start_local_slurm.sh [STATE_DIR]     (default: /tmp/gsmorph-slurm)
#
# Needs root and Debian's slurm-wlm and munge (no daemon is started by the packages).
# Runs munged, slurmctld and slurmd with every state, spool, PID, log and socket file in
# STATE_DIR; slurm.conf and gres.conf are written there and symlinked into /etc/slurm
# (srun inside a job looks only there). Refuses to touch an existing /etc/slurm/slurm.conf
# that is not its own symlink. Prints `export` lines for the environment; stop with
# tests/slurm/stop_local_slurm.sh STATE_DIR.
set -euo pipefail

STATE=${1:-/tmp/gsmorph-slurm}
for tool in munged mungekey slurmctld slurmd sinfo sbatch squeue; do
    command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install slurm-wlm munge" >&2; exit 2; }
done
[ "$(id -u)" -eq 0 ] || { echo "needs root (SlurmUser=root)" >&2; exit 2; }

for conf in slurm.conf gres.conf; do
    link=/etc/slurm/$conf
    if [ -e "$link" ] || [ -L "$link" ]; then
        target=$(readlink "$link" || true)
        case "$target" in
            "$STATE"/*) ;;
            *)
                # a link left by a cluster whose state folder is gone is stale: replace it
                if [ -L "$link" ] && [ ! -e "$target" ]; then
                    rm -f "$link"
                else
                    echo "$link exists and is not a link into $STATE: refusing to replace it" >&2
                    exit 2
                fi ;;
        esac
    fi
done

mkdir -p "$STATE"/{munge,state,spool,log}
chmod 0755 "$STATE" "$STATE/munge"
HOST=$(hostname -s)

# munge: a fresh key and a private socket
rm -f "$STATE/munge/munge.key"
mungekey -c -k "$STATE/munge/munge.key"
chmod 0400 "$STATE/munge/munge.key"
munged --force --socket="$STATE/munge/munge.socket" --key-file="$STATE/munge/munge.key" \
    --pid-file="$STATE/munge/munged.pid" --log-file="$STATE/log/munged.log" \
    --seed-file="$STATE/munge/munged.seed"

# The node as slurmd sees it, a bit less memory than it has, and one fake GPU.
NODE=$(slurmd -C | head -n 1)
MEM=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$NODE")
MEM=$((MEM * 8 / 10))
NODE=$(sed "s/RealMemory=[0-9]*/RealMemory=$MEM/" <<<"$NODE")
CPUS=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$NODE")

cat >"$STATE/slurm.conf" <<CONF
ClusterName=gsmorphtest
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$STATE/munge/munge.socket
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
# no cgroups, no accounting database
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# share the node between jobs by cores and memory
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$((MEM / CPUS))
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
# finished jobs stay visible to squeue (the executor's status command) for an hour
MinJobAge=3600
GresTypes=gpu
$NODE NodeAddr=127.0.0.1 Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
# A GPU entry needs a File; /dev/null stands in for the device.
cat >"$STATE/gres.conf" <<CONF
AutoDetect=off
NodeName=$HOST Name=gpu File=/dev/null
CONF

mkdir -p /etc/slurm
ln -sfn "$STATE/slurm.conf" /etc/slurm/slurm.conf
ln -sfn "$STATE/gres.conf" /etc/slurm/gres.conf
export SLURM_CONF=/etc/slurm/slurm.conf

slurmctld -i
slurmd

for _ in $(seq 1 100); do
    state=$(sinfo -h -o %T 2>/dev/null | head -n 1 || true)
    [ "$state" = "idle" ] && break
    sleep 0.2
done
if [ "$state" != "idle" ]; then
    echo "SLURM node did not become idle (state '${state:-none}'); logs in $STATE/log" >&2
    exit 1
fi
echo "export SLURM_CONF=/etc/slurm/slurm.conf"
echo "# local SLURM up: partition debug, node $HOST, $CPUS CPUs, ${MEM} MB, gpu:1 (fake); state in $STATE"

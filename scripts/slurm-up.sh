#!/usr/bin/env bash
# Bring up a single-node SLURM cluster (Debian's slurm-wlm + munge) for the tests.
# Idempotent: installs the packages only when missing, reuses running daemons.
# State and logs live in $NSP_SLURM_DIR (default /tmp/nsp-slurm); the config goes to
# /etc/slurm/slurm.conf, where every client and job step finds it (an existing config that this
# script did not write is never touched: then SLURM is reported unavailable). Stop it with
# scripts/slurm-down.sh, which removes both.
# Exit status 3 means SLURM cannot run here (the reason is printed); anything else non-zero is a failure.
set -euo pipefail
DIR=${NSP_SLURM_DIR:-/tmp/nsp-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# written by nsp scripts/slurm-up.sh"

unavailable() { echo "slurm-up: SLURM unavailable: $*" >&2; exit 3; }

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    [ "$(id -u)" = 0 ] || unavailable "slurm-wlm/munge not installed and not root to install them"
    command -v apt-get >/dev/null || unavailable "no apt-get to install slurm-wlm and munge"
    echo "slurm-up: installing slurm-wlm and munge" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge; } >/dev/null 2>&1 \
        || unavailable "apt-get install slurm-wlm munge failed"
fi
[ "$(id -u)" = 0 ] || unavailable "the test cluster runs its daemons as root"

mkdir -p "$DIR/spool/ctld" "$DIR/spool/d" "$DIR/log" /run/munge
chown munge:munge /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    [ -s /etc/munge/munge.key ] || { mungekey --create >/dev/null 2>&1 || create-munge-key -f >/dev/null 2>&1; }
    chown munge:munge /etc/munge/munge.key 2>/dev/null || true
    runuser -u munge -- munged --pid-file=/run/munge/munged.pid || unavailable "munged does not start"
    sleep 1
    munge -n | unmunge >/dev/null || unavailable "munge does not authenticate"
fi

if [ -e "$CONF" ] && ! grep -qxF "$MARK" "$CONF"; then
    unavailable "$CONF exists and was not written by this script (a real cluster?); not touching it"
fi
mkdir -p /etc/slurm
host=$(hostname -s)
node=$(slurmd -C | head -1)
cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$node")
memory=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node")
memory=$((memory * 9 / 10))
cat > "$CONF.new" <<CONF
$MARK
ClusterName=nsp-test
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MinJobAge=600
ReturnToService=2
StateSaveLocation=$DIR/spool/ctld
SlurmdSpoolDir=$DIR/spool/d
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
JobAcctGatherType=jobacct_gather/none
NodeName=$host CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
mv "$CONF.new" "$CONF"

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
alive "$DIR/slurmctld.pid" || slurmctld -f "$CONF" || unavailable "slurmctld does not start (see $DIR/log)"
alive "$DIR/slurmd.pid" || slurmd -f "$CONF" || unavailable "slurmd does not start (see $DIR/log)"
for _ in $(seq 60); do
    if sinfo -h -o %t 2>/dev/null | grep -qx idle; then
        echo "slurm-up: node $host idle ($cpus CPUs, $memory MB), config $CONF" >&2
        exit 0
    fi
    sleep 1
done
unavailable "the node did not become idle within 60 s (see $DIR/log)"

#!/usr/bin/env bash
# Stop the test cluster of scripts/slurm-up.sh by the PIDs its daemons wrote; remove its state
# and the slurm.conf it wrote.
set -uo pipefail
DIR=${NSP_SLURM_DIR:-/tmp/nsp-slurm}
for pidfile in "$DIR/slurmd.pid" "$DIR/slurmctld.pid" /run/munge/munged.pid; do
    [ -s "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
done
rm -rf "$DIR"
if grep -qxF "# written by nsp scripts/slurm-up.sh" /etc/slurm/slurm.conf 2>/dev/null; then
    rm -f /etc/slurm/slurm.conf
fi
echo "slurm-down: stopped" >&2

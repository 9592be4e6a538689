#!/usr/bin/env bash
# Stop the daemons that start.sh started (by their pid files, nothing else) and remove $JETFM_SLURM_HOME.
set -uo pipefail

HOME_DIR=${JETFM_SLURM_HOME:-/tmp/jetfm-slurm}
[[ -d $HOME_DIR/run ]] || { echo "slurm_harness: nothing to stop in $HOME_DIR"; exit 0; }
export SLURM_CONF=$HOME_DIR/etc/slurm.conf

# Cancel what is left so slurmd does not wait on running jobs, then stop daemons in reverse start order.
scancel --full --quiet --user root >/dev/null 2>&1 || true
for d in slurmd slurmctld slurmdbd mariadbd munged; do
    pidfile=$HOME_DIR/run/$d.pid
    [[ -s $pidfile ]] || continue
    pid=$(cat "$pidfile")
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
done
# The client config link start.sh made, if it is still ours.
[[ $(readlink /run/slurm/conf 2>/dev/null) == "$HOME_DIR/etc" ]] && rm -f /run/slurm/conf
rm -rf "$HOME_DIR"
echo "slurm_harness: stopped"

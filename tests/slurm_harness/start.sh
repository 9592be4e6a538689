#!/usr/bin/env bash
# Start a private single-node Slurm 22.05 with accounting, for tests and for trying profiles/slurm locally:
# munged, MariaDB, slurmdbd, slurmctld and slurmd, all with their config, state, sockets and logs under
# one directory ($JETFM_SLURM_HOME, default /tmp/jetfm-slurm), so nothing in /etc is touched and
# stop.sh removes everything it started.
#
# Partitions cpu (default), gpu and fpga all sit on this one node. The gpu partition advertises 2 GRES "gpu"
# with NO GPU hardware behind them (so `--gpus=1` requests from the profile are accepted and scheduled);
# jobs there run on the CPU.
#
# Usage: tests/slurm_harness/start.sh            then   export SLURM_CONF=$JETFM_SLURM_HOME/etc/slurm.conf
#        tests/slurm_harness/stop.sh
# Needs root and the Debian packages from install.sh.
set -euo pipefail

HOME_DIR=${JETFM_SLURM_HOME:-/tmp/jetfm-slurm}
CLUSTER=${JETFM_SLURM_CLUSTER:-jetfm}
ACCOUNT=${JETFM_SLURM_TEST_ACCOUNT:-jetfm}
CTLD_PORT=${JETFM_SLURM_PORT_BASE:-6817}
SLURMD_PORT=$((CTLD_PORT + 1))
DBD_PORT=$((CTLD_PORT + 2))
MYSQL_PORT=$((CTLD_PORT + 3))
NODE=$(hostname -s)
# Not plain `nproc`: it honours OMP_NUM_THREADS, which Dask/torch set to 1 in the test process, and a node
# registered with 1 CPU can never run the 2-task jobs the tests submit.
CPUS=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
# A safe RealMemory: 3/4 of physical memory (slurmd drains a node that reports less than configured).
MEM_MB=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.75}' /proc/meminfo)

log() { echo "slurm_harness: $*"; }
die() {
    echo "slurm_harness: ERROR: $*" >&2
    for f in "$HOME_DIR"/log/*.log "$HOME_DIR"/mysql/mariadbd.log "$HOME_DIR"/munge/munged.log; do
        [[ -s $f ]] && { echo "--- tail of $f" >&2; tail -n 15 "$f" >&2; }
    done
    # Stop whatever this run already started (only ours: stop.sh goes by our pid files).
    [[ -n ${OWNED:-} ]] && "$(dirname "${BASH_SOURCE[0]}")/stop.sh" >&2
    exit 1
}
wait_for() { # wait_for <seconds> <description> <command...>: poll until the command succeeds
    local t=$1 what=$2
    shift 2
    local deadline=$((SECONDS + t))
    while ((SECONDS < deadline)); do
        timeout 10 "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    die "timed out after ${t}s waiting for $what"
}

[[ $(id -u) -eq 0 ]] || die "needs root (daemons run as root, munge and mysql users)"
for exe in munged mariadbd mariadb-install-db slurmdbd slurmctld slurmd sacctmgr sinfo; do
    command -v "$exe" >/dev/null || die "$exe not found: run tests/slurm_harness/install.sh first"
done
if [[ -e $HOME_DIR/run/started ]]; then
    die "$HOME_DIR already holds a running harness; run tests/slurm_harness/stop.sh first"
fi
if (exec 3<>"/dev/tcp/127.0.0.1/$CTLD_PORT") 2>/dev/null; then
    die "port $CTLD_PORT is taken (another Slurm?); set JETFM_SLURM_PORT_BASE to a free range"
fi

t0=$(date +%s.%N)
rm -rf "$HOME_DIR"
OWNED=1
mkdir -p "$HOME_DIR"/{etc,log,run,ctld,slurmd,munge,mysql}
chmod 755 "$HOME_DIR"
export SLURM_CONF=$HOME_DIR/etc/slurm.conf

# --- munge: a private key and socket, owned by the munge user as munged insists.
chown munge:munge "$HOME_DIR/munge"
chmod 755 "$HOME_DIR/munge"
runuser -u munge -- mungekey --create --keyfile="$HOME_DIR/munge/munge.key" >/dev/null
MUNGE_SOCKET=$HOME_DIR/munge/munge.socket.2
runuser -u munge -- munged --socket="$MUNGE_SOCKET" --key-file="$HOME_DIR/munge/munge.key" \
    --pid-file="$HOME_DIR/munge/munged.pid" --log-file="$HOME_DIR/munge/munged.log" \
    --seed-file="$HOME_DIR/munge/munged.seed"
wait_for 10 munged test -S "$MUNGE_SOCKET"
cp "$HOME_DIR/munge/munged.pid" "$HOME_DIR/run/munged.pid"

# --- MariaDB: a private instance on 127.0.0.1:$MYSQL_PORT, tuned for a throw-away test database.
chown mysql:mysql "$HOME_DIR/mysql"
mariadb-install-db --user=mysql --datadir="$HOME_DIR/mysql" --auth-root-authentication-method=socket \
    --skip-test-db >"$HOME_DIR/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed"
MYSQL_SOCKET=$HOME_DIR/mysql/mysqld.sock
setsid mariadbd --no-defaults --user=mysql --datadir="$HOME_DIR/mysql" --socket="$MYSQL_SOCKET" \
    --port="$MYSQL_PORT" --bind-address=127.0.0.1 --skip-name-resolve --skip-log-bin \
    --pid-file="$HOME_DIR/mysql/mariadbd.pid" --log-error="$HOME_DIR/mysql/mariadbd.log" \
    --innodb-buffer-pool-size=128M --innodb-log-file-size=64M --innodb-lock-wait-timeout=900 \
    --innodb-flush-log-at-trx-commit=0 </dev/null >/dev/null 2>&1 &
echo $! >"$HOME_DIR/run/mariadbd.pid"
wait_for 60 MariaDB mariadb --no-defaults -S "$MYSQL_SOCKET" -u root -e "SELECT 1"
DB_PASS=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
mariadb --no-defaults -S "$MYSQL_SOCKET" -u root <<SQL || die "could not create the slurm database user"
CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
SQL

# --- configuration files
cat >"$HOME_DIR/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
LogFile=$HOME_DIR/log/slurmdbd.log
PidFile=$HOME_DIR/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$MYSQL_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
chmod 600 "$HOME_DIR/etc/slurmdbd.conf"

# No cgroup.conf: 22.05 rejects CgroupPlugin=disabled, and proctrack/pgid needs none.
cat >"$HOME_DIR/etc/gres.conf" <<EOF
# NO GPU hardware on this node: two placeholder GPU GRES so that --gpus requests are accepted and scheduled.
# gres/gpu needs one device file per GPU; /dev/zero and /dev/full stand in (task/none never touches them).
NodeName=$NODE Name=gpu File=/dev/zero,/dev/full
EOF
cat >"$HOME_DIR/etc/slurm.conf" <<EOF
# Written by tests/slurm_harness/start.sh: single-node test cluster with accounting.
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
StateSaveLocation=$HOME_DIR/ctld
SlurmdSpoolDir=$HOME_DIR/slurmd
SlurmctldPidFile=$HOME_DIR/run/slurmctld.pid
SlurmdPidFile=$HOME_DIR/run/slurmd.pid
SlurmctldLogFile=$HOME_DIR/log/slurmctld.log
SlurmdLogFile=$HOME_DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/pgid
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
# Accounting through slurmdbd so that sacct works (snakemake's slurm executor polls it).
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
# With slurmdbd, this names the munge socket used to talk to it (ours is not the default /run/munge one).
AccountingStoragePass=$MUNGE_SOCKET
AccountingStorageEnforce=associations
AccountingStorageTRES=gres/gpu
# Keep --comment in the database: snakemake's executor puts the rule and wildcards there.
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none
# Keep finished jobs visible to squeue for 5 min too, and react quickly (test cluster).
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
Waittime=0
SlurmdParameters=config_overrides
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB Gres=gpu:2 State=UNKNOWN
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP DefMemPerCPU=1000
PartitionName=gpu Nodes=$NODE Default=NO MaxTime=INFINITE State=UP DefMemPerCPU=1000
PartitionName=fpga Nodes=$NODE Default=NO MaxTime=INFINITE State=UP DefMemPerCPU=1000
EOF

# --- /run/slurm/conf: where Slurm clients look when SLURM_CONF is unset and /etc/slurm/slurm.conf is absent
# (on configless clusters slurmd puts its config cache there). Needed because
# snakemake-executor-plugin-slurm-jobstep 0.6 removes SLURM_CONF from the environment of the `srun` it runs
# inside every job. Only created if free (or a stale link of an earlier harness); stop.sh removes it.
if [[ -e /etc/slurm/slurm.conf ]]; then
    log "WARNING: /etc/slurm/slurm.conf exists: srun inside snakemake jobs will read it, not this cluster's"
elif [[ -L /run/slurm/conf && ! -e /run/slurm/conf/slurm.conf ]] || [[ ! -e /run/slurm/conf ]]; then
    mkdir -p /run/slurm
    ln -sfn "$HOME_DIR/etc" /run/slurm/conf
else
    log "WARNING: /run/slurm/conf belongs to another Slurm: srun inside snakemake jobs will read it"
fi

# --- slurmdbd, then the accounting entities, then the controller and the node daemon.
slurmdbd </dev/null >"$HOME_DIR/log/slurmdbd.stdout" 2>&1 || die "slurmdbd did not start"
wait_for 60 slurmdbd sacctmgr -n list cluster
sacctmgr -i add cluster "$CLUSTER" >/dev/null
sacctmgr -i add account "$ACCOUNT" Description="jetfm tests" Organization=jetfm >/dev/null
sacctmgr -i add user root Account="$ACCOUNT" >/dev/null
slurmctld </dev/null >"$HOME_DIR/log/slurmctld.stdout" 2>&1 || die "slurmctld did not start"
wait_for 30 slurmctld scontrol ping
slurmd </dev/null >"$HOME_DIR/log/slurmd.stdout" 2>&1 || die "slurmd did not start"
wait_for 60 "node $NODE to become idle" bash -c "sinfo -h -n $NODE -t idle,mixed,allocated -o %T | grep -q ."
touch "$HOME_DIR/run/started"

t1=$(date +%s.%N)
log "single-node Slurm $(sinfo --version | awk '{print $2}') up in $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}') s"
log "node $NODE: CPUs=$CPUS RealMemory=${MEM_MB}MB; partitions: cpu (default), gpu, fpga"
log "gpu partition: 2 GRES 'gpu' with NO GPU hardware behind them; jobs there run on the CPU"
log "accounting: slurmdbd + MariaDB; cluster '$CLUSTER', account '$ACCOUNT' (user root)"
echo "export SLURM_CONF=$SLURM_CONF"

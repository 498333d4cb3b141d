#!/usr/bin/env bash
# slurm-up.sh DIR: a private single-node Slurm cluster (this host) for the tests, started without systemd.
# Installs what is missing (slurmctld slurmd slurm-client munge, Debian 12, --no-install-recommends), then
# starts in DIR (created if needed; a short path: it holds munge's socket) its own munged, slurmctld and
# slurmd, from DIR/slurm.conf, and waits until the node is idle. Nothing under /etc is written: clients
# find the cluster through SLURM_CONF, which DIR/env.sh exports (`. DIR/env.sh`). Every daemon started is
# recorded as "name pid" in DIR/started.pids; tests/slurm/slurm-down.sh DIR stops those and only those.
# Environment: SLURM_TEST_PORT (slurmctld's port; slurmd takes the next one. Default: the first pair from
# 16817 on where nothing listens, so that clusters of concurrent test runs do not meet),
# SLURM_TEST_CTLD_DEBUG (SlurmctldDebug, default info; debug2 logs every time-limit check).
# Exits non-zero, with the reason and the daemons' logs, when the cluster cannot be brought up.
set -euo pipefail

dir=${1:?usage: slurm-up.sh DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
node=$(hostname -s)
t0=$(date +%s)
log() { echo "[slurm-up +$(($(date +%s) - t0))s] $*"; }
die() {
  echo "slurm-up: error: $*" >&2
  for f in "$dir"/log/*; do [ -s "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }; done
  exit 1
}

# ---- packages -----------------------------------------------------------------------------------
pkgs=(slurmctld slurmd slurm-client munge)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || die "Slurm is not installed (missing: ${missing[*]}) and only root can install it"
  log "installing ${missing[*]}"
  # The packages' scripts would start the system's own munge and Slurm services: policy-rc.d forbids it
  # (this cluster runs its own daemons), and is removed again if this script put it there.
  policy=/usr/sbin/policy-rc.d added_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && added_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  rc=0
  { apt-get update -qq -o DPkg::Lock::Timeout=300 && apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 \
      "${missing[@]}"; } >"$dir/apt.log" 2>&1 || rc=$?
  [ "$added_policy" = 1 ] && rm -f "$policy"
  [ "$rc" -eq 0 ] || { tail -n 20 "$dir/apt.log" >&2; die "apt-get install ${missing[*]} failed"; }
  log "installed"
fi
for cmd in munged mungekey slurmctld slurmd sbatch scontrol sinfo; do
  command -v "$cmd" >/dev/null || [ -x "/usr/sbin/$cmd" ] || die "$cmd not found after installing"
done
export PATH=$PATH:/usr/sbin

# ---- the private directory ----------------------------------------------------------------------
[ -s "$dir/started.pids" ] && die "$dir already runs a cluster (see $dir/started.pids); stop it with slurm-down.sh"
# munged insists that everyone may traverse its socket's directory, and that no one else may write it.
chmod 755 "$dir"
mkdir -p "$dir/ctld" "$dir/spool" "$dir/log" "$dir/munge"
chmod 755 "$dir/munge"
: >"$dir/started.pids"
export SLURM_CONF=$dir/slurm.conf
mkdir -p "$dir/tmp"
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=${SLURM_TEST_PORT:-}
if [ -z "$port" ]; then
  port=16817
  while listening "$port" || listening $((port + 1)); do
    port=$((port + 2))
    [ "$port" -lt 17817 ] || die "no two free ports from 16817 on"
  done
fi
echo "export SLURM_CONF=$dir/slurm.conf" >"$dir/env.sh"

# record NAME PIDFILE: waits for a daemon's pid file and records it (the daemons fork into the background).
record() {
  local name=$1 pidfile=$2 pid=""
  for _ in $(seq 100); do
    pid=$(cat "$pidfile" 2>/dev/null || true)
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] && break
    pid=""; sleep 0.1
  done
  [ -n "$pid" ] || die "$name did not start"
  echo "$name $pid" >>"$dir/started.pids"
  log "$name started (pid $pid)"
}

# ---- munge: a key and a socket of its own -------------------------------------------------------
sock=$dir/munge/munge.sock
[ -s "$dir/munge/munge.key" ] || mungekey --create --keyfile="$dir/munge/munge.key"
chmod 400 "$dir/munge/munge.key"
munged --socket="$sock" --key-file="$dir/munge/munge.key" --pid-file="$dir/munge/munged.pid" \
  --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munged.seed" </dev/null || die "munged failed"
record munged "$dir/munge/munged.pid"
munge -S "$sock" -n | unmunge -S "$sock" >/dev/null || die "munge cannot encode and decode a credential"

# ---- slurm.conf ---------------------------------------------------------------------------------
# The node as slurmd detects it (CPUs, sockets, cores, memory), reachable on the loopback address.
nodeline=$(slurmd -C | head -n 1 | sed "s/^NodeName=[^ ]*/NodeName=$node/")
cat >"$SLURM_CONF" <<EOF
# Written by tests/slurm/slurm-up.sh: a private single-node cluster for the tests.
ClusterName=trainer-test
SlurmctldHost=localhost
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
# munge through this cluster's own socket. cred_expire is also how long a requeued job waits before it
# may start again (default 120 s); slurmctld reads it only when it starts.
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$sock,cred_expire=10
StateSaveLocation=$dir/ctld
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=${SLURM_TEST_CTLD_DEBUG:-info}
SlurmdDebug=info
PlugStackConfig=$dir/plugstack.conf
# Jobs' scratch (PMIx's per-step directories among it): private, so that concurrent clusters never meet.
TmpFS=$dir/tmp
# No cgroups and no init system here: processes are tracked by their parents.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# Debian's Open MPI speaks PMIx only.
MpiDefault=pmix
ReturnToService=2
KillWait=10
MailProg=/bin/true
# Jobs in "urgent" preempt (requeue) jobs in "debug"; the victim gets its --signal first, then GraceTime.
SlurmctldParameters=preempt_send_user_signal
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
$nodeline NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP PriorityTier=1 PreemptMode=REQUEUE GraceTime=60
PartitionName=urgent Nodes=ALL Default=NO MaxTime=INFINITE State=UP PriorityTier=2 PreemptMode=OFF
EOF
: >"$dir/plugstack.conf"

# ---- slurmctld and slurmd -----------------------------------------------------------------------
# -c: no state from an earlier run of this directory.
# The mark lets slurm-down.sh recognise what is left of the daemons (a slurmstepd) if they die first.
export TRAINER_SLURM_TEST_DIR=$dir
slurmctld -c -f "$SLURM_CONF" </dev/null >>"$dir/log/slurmctld.out" 2>&1 || die "slurmctld failed"
record slurmctld "$dir/slurmctld.pid"
slurmd -f "$SLURM_CONF" -N "$node" </dev/null >>"$dir/log/slurmd.out" 2>&1 || die "slurmd failed"
record slurmd "$dir/slurmd.pid"

state=""
for _ in $(seq 60); do
  state=$(sinfo -h -n "$node" -o %T 2>/dev/null || true)
  case "$state" in
    idle) break ;;
    down* | drain*) scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true ;;
  esac
  sleep 0.5
done
[ "$state" = idle ] || die "node $node is not idle after 30 s (state '$state')"
unset TRAINER_SLURM_TEST_DIR
log "cluster up: $(sinfo -h -o '%P %a %D %T %N' | tr '\n' ' ')(SLURM_CONF=$SLURM_CONF)"

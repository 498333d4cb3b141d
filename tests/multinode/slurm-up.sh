#!/usr/bin/env bash
# slurm-up.sh DIR: a Slurm cluster on the simulated hosts of cluster-up.sh DIR N (N >= 3): slurmd on
# mnI-node1 .. node(N-1) (the compute nodes), munged and slurmctld on the last host (the head node).
# Everything is private to DIR: munge key and socket, slurm.conf (clients find it through SLURM_CONF;
# nothing under /etc is written), state, spool and TmpFS directories per node, logs. The ports
# (26817/26818) differ from Slurm's defaults and from tests/slurm, and live in these namespaces anyway.
# Clients run on a host: `. DIR/slurm.env; $MN_NSEXEC $MN_HEAD "SLURM_CONF=$SLURM_CONF sbatch ..."`.
# Daemons are recorded as "name pid" in DIR/slurm.pids; slurm-down.sh DIR stops them, cluster-down.sh
# stops anything left in the namespaces. Installs slurmctld slurmd slurm-client munge with apt-get when
# missing (without starting the system's own services). Exits non-zero, with the logs, on failure.
set -euo pipefail
dir=${1:?usage: slurm-up.sh DIR}
dir=$(cd "$dir" && pwd)
# shellcheck source=/dev/null
. "$dir/cluster.env"
export PATH=$PATH:/usr/sbin:/sbin
t0=$(date +%s)
log() { echo "[slurm-up +$(($(date +%s) - t0))s] $*"; }
die() {
  echo "slurm-up: error: $*" >&2
  for f in "$dir"/slurm/log/*; do [ -s "$f" ] && { echo "--- $f" >&2; tail -n 15 "$f" >&2; }; done
  exit 1
}
read -ra hosts <<<"$MN_HOSTS"
[ ${#hosts[@]} -ge 3 ] || die "needs a cluster of 3 hosts or more (2 compute nodes and a head)"
head=${hosts[-1]}
nodes=("${hosts[@]:0:${#hosts[@]}-1}")
net=${MN_NET%.0/24}

# ---- packages -----------------------------------------------------------------------------------
missing=()
for p in slurmctld slurmd slurm-client munge; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  # The packages would start the system's own munge and Slurm services: policy-rc.d forbids that, and
  # is removed again if this script put it there.
  policy=/usr/sbin/policy-rc.d added=0
  [ -e "$policy" ] || { printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && added=1; }
  rc=0
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      -o DPkg::Lock::Timeout=300 "${missing[@]}"; } >"$dir/apt-slurm.log" 2>&1 || rc=$?
  [ "$added" = 1 ] && rm -f "$policy"
  [ $rc -eq 0 ] || { tail -n 20 "$dir/apt-slurm.log" >&2; die "apt-get install ${missing[*]} failed"; }
fi

# ---- the private directory ----------------------------------------------------------------------
s=$dir/slurm
[ -s "$dir/slurm.pids" ] && die "$dir already runs Slurm (see $dir/slurm.pids)"
# munged wants every directory up to its socket traversable, and its own directory writable by it only.
chmod 755 "$dir"
mkdir -p "$s/state" "$s/log" "$s/run" "$s/munge"
chmod 755 "$s" "$s/munge"
for h in "${nodes[@]}"; do mkdir -p "$s/spool/$h" "$s/tmp/$h"; done
chmod 1777 "$s/tmp"/*
: >"$dir/slurm.pids"
conf=$s/slurm.conf
sock=$s/munge/munge.sock
cat >"$dir/slurm.env" <<EOF
# Written by tests/multinode/slurm-up.sh: source it (after cluster.env).
SLURM_CONF=$conf
MN_HEAD=$head
MN_NODES="${nodes[*]}"
EOF

# on HOST CMD: runs shell text CMD on a simulated host, with this cluster's SLURM_CONF.
on() { "$MN_NSEXEC" "$1" "export SLURM_CONF=$conf PATH=$PATH; $2"; }
# record NAME PIDFILE: waits for a daemon's pid file (they fork into the background) and records it.
record() {
  local name=$1 pidfile=$2 pid=""
  for _ in $(seq 100); do
    pid=$(cat "$pidfile" 2>/dev/null || true)
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] && break
    pid=""; sleep 0.1
  done
  [ -n "$pid" ] || die "$name did not start"
  echo "$name $pid" >>"$dir/slurm.pids"
}

# ---- munge on the head node, with a key and a socket of its own ---------------------------------
mungekey --create --keyfile="$s/munge/munge.key" >/dev/null 2>&1 || die "mungekey failed"
chmod 400 "$s/munge/munge.key"
on "$head" "munged --socket=$sock --key-file=$s/munge/munge.key --pid-file=$s/munge/munged.pid \
  --log-file=$s/log/munged.log --seed-file=$s/munge/munged.seed </dev/null" || die "munged failed"
record munged "$s/munge/munged.pid"

# ---- slurm.conf ---------------------------------------------------------------------------------
# Every node gets the CPUs slurmd would find (the namespaces share this machine's cores).
cpus=$(nproc)
{
  cat <<EOF
# Written by tests/multinode/slurm-up.sh: compute nodes ${nodes[*]}, controller on $head.
ClusterName=mn$MN_ID
SlurmctldHost=$head($net.${#hosts[@]})
SlurmctldPort=26817
SlurmdPort=26818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire is also how long a requeued job waits before it may start again.
AuthInfo=socket=$sock,cred_expire=10
StateSaveLocation=$s/state
# One spool and one TmpFS per node: they share this machine's file system, and PMIx's files in TmpFS
# would collide.
SlurmdSpoolDir=$s/spool/%n
TmpFS=$s/tmp/%n
SlurmctldPidFile=$s/run/slurmctld.pid
SlurmdPidFile=$s/run/slurmd-%n.pid
SlurmctldLogFile=$s/log/slurmctld.log
SlurmdLogFile=$s/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=pmix
ReturnToService=2
KillWait=5
MailProg=/bin/true
# A node that stops answering is down after 8 s, plus a message timeout, plus up to one ping interval
# (clusters use minutes): the loss test stays short.
SlurmdTimeout=8
MessageTimeout=5
EOF
  i=1
  for h in "${nodes[@]}"; do
    echo "NodeName=$h NodeAddr=$net.$i CPUs=$cpus State=UNKNOWN"
    i=$((i + 1))
  done
  echo "PartitionName=debug Nodes=$(IFS=,; echo "${nodes[*]}") Default=YES MaxTime=INFINITE State=UP"
} >"$conf"

# ---- slurmctld on the head, slurmd on every compute node ----------------------------------------
on "$head" "slurmctld -c </dev/null >>$s/log/slurmctld.out 2>&1" || die "slurmctld failed"
record slurmctld "$s/run/slurmctld.pid"
for h in "${nodes[@]}"; do
  # `ip netns exec` remounts /sys without the cgroup mounts, and slurmd 22.05 insists on a cgroup v1
  # layout even with proctrack/linuxproc: recreate one (a tmpfs and a name=systemd hierarchy) in the
  # private mount namespace of this slurmd.
  on "$h" "mount -t tmpfs -o mode=755 mn_cgroup /sys/fs/cgroup && mkdir /sys/fs/cgroup/systemd &&
    mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd &&
    slurmd -N $h </dev/null >>$s/log/slurmd-$h.out 2>&1" || die "slurmd on $h failed"
  record slurmd "$s/run/slurmd-$h.pid"
done

idle=0
for _ in $(seq 60); do
  states=$(on "$head" "sinfo -h -N -o '%N %T'" 2>/dev/null || true)
  [ "$(grep -c ' idle$' <<<"$states")" -eq ${#nodes[@]} ] && { idle=1; break; }
  grep -E ' (down|drain)' <<<"$states" | while read -r node _; do
    on "$head" "scontrol update nodename=$node state=resume" >/dev/null 2>&1 || true
  done
  sleep 0.5
done
[ $idle = 1 ] || die "nodes not idle after 30 s: $(tr '\n' ' ' <<<"$states")"
log "slurm up: ${nodes[*]} idle, controller on $head (SLURM_CONF=$conf)"

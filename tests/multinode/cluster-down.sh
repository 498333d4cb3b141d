#!/usr/bin/env bash
# cluster-down.sh DIR: removes the cluster cluster-up.sh DIR made, and only it. First the processes still
# running in its namespaces (mpirun, orted, trainer ranks, slurmd...) are stopped by PID: TERM, then KILL
# after 3 s (a deleted namespace would live on through them). Then every object recorded in
# DIR/cluster.state is removed, newest first. Safe to run twice, or after a failed cluster-up.sh.
set -uo pipefail
dir=${1:?usage: cluster-down.sh DIR}
export PATH=$PATH:/usr/sbin:/sbin
state=$dir/cluster.state
[ -f "$state" ] || exit 0

namespaces=$(awk '$1 == "netns" { print $2 }' "$state")
ancestors=" " a=$$
while [ -n "$a" ] && [ "$a" -gt 1 ]; do ancestors+="$a "; a=$(awk '{print $4}' "/proc/$a/stat" 2>/dev/null); done
inside() {  # the PIDs of processes in our namespaces, never this shell or its callers
  local ns p
  for ns in $namespaces; do
    [ -e "/run/netns/$ns" ] || continue
    for p in $(ip netns pids "$ns" 2>/dev/null); do
      case "$ancestors" in *" $p "*) ;; *) echo "$p" ;; esac
    done
  done
}
pids=$(inside | tr '\n' ' ')
if [ -n "${pids// /}" ]; then
  echo "[cluster-down] stopping:$(for p in $pids; do printf ' %s %s' "$p" "$(cat "/proc/$p/comm" 2>/dev/null)"; done)"
  # shellcheck disable=SC2086
  kill -TERM $pids 2>/dev/null
  for _ in $(seq 30); do
    pids=$(inside | tr '\n' ' ')
    [ -z "${pids// /}" ] && break
    sleep 0.1
  done
  # shellcheck disable=SC2086
  [ -n "${pids// /}" ] && kill -KILL $pids 2>/dev/null && sleep 0.2
fi

exec 9</run
flock 9   # against a cluster-up.sh or cluster-down.sh running beside this one
tac "$state" | while read -r kind name; do
  case $kind in
    file) rm -f "$name" ;;
    dir) rmdir "$name" 2>/dev/null || [ ! -e "$name" ] || echo "[cluster-down] kept non-empty $name" >&2 ;;
    netns) [ -e "/run/netns/$name" ] && ip netns del "$name" ;;
  esac
done
# The last cluster out removes the shared directories that our clusters made (see cluster-up.sh), once
# nothing else is in them.
marker=/etc/netns/.trainer-multinode
if [ -f "$marker" ] && [ -z "$(ls -A /run/netns 2>/dev/null)" ] &&
   [ "$(ls -A /etc/netns)" = .trainer-multinode ]; then
  made=$(cat "$marker")
  rm -f "$marker"
  for d in $made; do
    case $d in
      /run/netns) awk '$5 == "/run/netns" { f = 1 } END { exit !f }' /proc/self/mountinfo && umount /run/netns
                  rmdir /run/netns ;;
      /etc/netns) rmdir /etc/netns ;;
    esac
  done
fi
rm -f "$state"
echo "[cluster-down] done ($dir)"

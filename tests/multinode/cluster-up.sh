#!/usr/bin/env bash
# cluster-up.sh DIR N: a simulated cluster of N hosts on this machine, for the multinode tests.
# Each host is a network namespace mnI-nodeJ (I: a cluster number free at the time, J = 1..N) with lo and
# eth0 = 10.213.I.J/24, cabled by a veth pair to a bridge that lives in a namespace of its own (mnI-sw),
# so the root namespace gets no interface, address or route, and no traffic leaves these namespaces.
# /etc/netns/mnI-nodeJ/hosts names the hosts (`ip netns exec` shows it as /etc/hosts). Commands run on a
# host through tests/multinode/nsexec (also Open MPI's ssh: --mca plm_rsh_agent .../nsexec).
# Several clusters may live side by side (ctest -j): the cluster number is claimed by creating mnI-sw,
# which fails when it exists. Every object made is recorded in DIR/cluster.state; cluster-down.sh DIR
# removes exactly those. DIR/cluster.env describes the cluster for scripts (MN_ID MN_NET MN_HOSTS ...).
# Installs iproute2 with apt-get when `ip` is missing. Needs root. Exits non-zero on failure, after
# removing what it made.
set -euo pipefail
dir=${1:?usage: cluster-up.sh DIR N}
n=${2:?usage: cluster-up.sh DIR N}
here=$(cd "$(dirname "$0")" && pwd)
export PATH=$PATH:/usr/sbin:/sbin
die() { echo "cluster-up: error: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "network namespaces need root"
[ "$n" -ge 1 ] && [ "$n" -le 16 ] || die "N must be 1..16"
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
state=$dir/cluster.state
[ -s "$state" ] && die "$dir already holds a cluster ($state); remove it with cluster-down.sh"

if ! command -v ip >/dev/null || ! command -v tc >/dev/null; then
  echo "[cluster-up] installing iproute2"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 \
    iproute2 >"$dir/apt.log" 2>&1 ||
    { apt-get update -qq >>"$dir/apt.log" 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends -o DPkg::Lock::Timeout=300 iproute2 >>"$dir/apt.log" 2>&1; } ||
    die "apt-get install iproute2 failed (see $dir/apt.log)"
fi
command -v unshare >/dev/null || die "unshare (util-linux) is missing"

: >"$state"
rec() { echo "$*" >>"$state"; }
# On any failure, undo what was made so far.
trap 'rc=$?; flock -u 9 2>/dev/null; [ $rc -ne 0 ] && "$here/cluster-down.sh" "$dir" >&2; exit $rc' EXIT

# /run/netns (made by the first `ip netns add`) and /etc/netns are shared by every cluster alive. Those of
# them that no one had before our clusters came are listed in /etc/netns/.trainer-multinode; the
# cluster-down.sh that leaves them empty removes them. The lock (on /run) keeps ups and downs apart.
exec 9</run
flock 9
marker=/etc/netns/.trainer-multinode
made=""
[ -d /run/netns ] || made="/run/netns"
[ -d /etc/netns ] || { mkdir /etc/netns; made="$made /etc/netns"; }
for d in $made; do echo "$d" >>"$marker"; done
# Claim a cluster number: `ip netns add` creates its file with O_EXCL, so two clusters never get the same.
id=""
for i in $(seq 1 250); do
  if err=$(ip netns add "mn$i-sw" 2>&1); then id=$i; break; fi
  [ -e "/run/netns/mn$i-sw" ] || die "cannot make network namespaces: $err"
done
[ -n "$id" ] || die "no free cluster number (250 namespaces mn*-sw exist)"
sw=mn$id-sw
rec "netns $sw"
net=10.213.$id
ip -n "$sw" link set lo up
ip -n "$sw" link add br0 type bridge stp_state 0
ip -n "$sw" link set br0 up

hosts=() hostsfile=$(printf '127.0.0.1\tlocalhost\n')
for j in $(seq 1 "$n"); do
  hosts+=("mn$id-node$j")
  hostsfile+=$(printf '\n%s.%d\tmn%d-node%d' "$net" "$j" "$id" "$j")
done
for j in $(seq 1 "$n"); do
  h=mn$id-node$j
  # A leftover of a cluster whose owner died (its switch namespace gone): not ours, never touched.
  [ -e "/run/netns/$h" ] && die "namespace $h exists but is not part of this cluster"
  [ -e "/etc/netns/$h" ] && die "/etc/netns/$h exists but is not part of this cluster"
  ip netns add "$h"
  rec "netns $h"
  ip -n "$h" link set lo up
  ip -n "$sw" link add "p$j" type veth peer name eth0 netns "$h"
  ip -n "$sw" link set "p$j" master br0 up
  ip -n "$h" addr add "$net.$j/24" dev eth0
  ip -n "$h" link set eth0 up
  mkdir "/etc/netns/$h"
  rec "dir /etc/netns/$h"
  rec "file /etc/netns/$h/hosts"
  printf '%s\n' "$hostsfile" >"/etc/netns/$h/hosts"
done

cat >"$dir/cluster.env" <<EOF
# Written by tests/multinode/cluster-up.sh: source it.
MN_DIR=$dir
MN_ID=$id
MN_NET=$net.0/24
MN_HOSTS="${hosts[*]}"
MN_NSEXEC=$here/nsexec
EOF
rec "file $dir/cluster.env"

# Up means every host reaches every other (checked when ping is installed; a fresh Debian has none).
if command -v ping >/dev/null; then
  for j in $(seq 1 "$n"); do
    for k in $(seq 1 "$n"); do
      [ "$j" = "$k" ] && continue
      ok=0
      for _ in $(seq 20); do
        ip netns exec "mn$id-node$j" ping -c 1 -W 1 "$net.$k" >/dev/null 2>&1 && { ok=1; break; }
        sleep 0.2
      done
      [ $ok = 1 ] || die "mn$id-node$j cannot reach $net.$k"
    done
  done
fi
trap - EXIT
flock -u 9
echo "[cluster-up] cluster $id: ${hosts[*]} on $net.0/24 (state in $dir)"

#!/usr/bin/env bash
# test_tcp.sh TRAINER MAKE_DATASET COMPARE_WEIGHTS DATA_DIR: training across two simulated hosts over TCP
# (tests/multinode/cluster-up.sh) ends with the weights of the same run on one host.
#  - 1 rank on each of 2 hosts, TCP only (btl tcp,self), through jobs/multinode/mpirun-nodes.sh, against
#    2 ranks on one host: equal to 1e-6, and the gradients really crossed the hosts' link;
#  - 2 ranks on each of 2 hosts (shared memory inside a host, TCP between) against 4 ranks on one host.
# Needs root. Prints "N passed, N failed"; exits non-zero when a check fails.
set -u
trainer=$1 make_dataset=$2 compare=$3 data=$4
. "$(dirname "$0")/lib.sh"
mn_begin 100 2
h1=${MN_HOST[0]} h2=${MN_HOST[1]}

"$make_dataset" train.h5 768 12 4 1 >/dev/null || { bad "make_dataset"; mn_end; }
args=(train --model "$data/small.model" --data train.h5 --epochs 2 --batch-size 16 --max-steps 60 --seed 9
      --threads 1 --quiet)
local_run() {  # local_run RANKS OUT: the reference, on one host (this machine's own namespace)
  timeout -k 5 60 mpirun -np "$1" --oversubscribe --bind-to none "$trainer" "${args[@]}" --checkpoint "$2" \
    >"$2.log" 2>&1 || bad "$1 ranks on one host: $(tail -3 "$2.log")"
}

# Where the ranks land: one on each host.
where=$(mn_mpirun 30 1 "$h1" "$h2" -- hostname 2>where.err | sort | tr '\n' ' ')
[ "$where" = "$h1 $h2 " ] && ok "one rank on each host ($where)" || bad "ranks on $where: $(cat where.err)"

local_run 2 one-host.h5
rx0=$(rx_bytes "$h2")
t=$(now)
if TRAINER_BTL=tcp,self mn_mpirun 60 1 "$h1" "$h2" -- "$trainer" "${args[@]}" --checkpoint two-hosts.h5 \
     >two-hosts.log 2>&1; then
  ok "trained on 2 hosts, 1 rank each, TCP only ($(since "$t") s)"
else
  bad "train on 2 hosts: $(tail -5 two-hosts.log)"
fi
# 60 all-reduces of the 2812 gradients (11 kB each): at least half of it comes in each time.
rx=$(($(rx_bytes "$h2") - rx0))
[ "$rx" -gt $((60 * 2812 * 2)) ] && ok "the gradients crossed the link ($rx bytes into $h2)" \
  || bad "only $rx bytes reached $h2"
grep -q 'btl_tcp_if_include' two-hosts.log && ok "the launcher selects the interface" \
  || bad "launcher line: $(head -2 two-hosts.log)"
# The same sums in the same order (exchange.h): a + b, by messages across the hosts, in shared memory on one.
"$compare" one-host.h5 two-hosts.h5 0 && ok "2 hosts x 1 rank = 1 host x 2 ranks, bit for bit" \
  || bad "2 hosts x 1 rank differs from 1 host x 2 ranks"

local_run 4 one-host4.h5
t=$(now)
if mn_mpirun 60 2 "$h1" "$h2" -- "$trainer" "${args[@]}" --checkpoint two-hosts4.h5 >two-hosts4.log 2>&1; then
  ok "trained on 2 hosts, 2 ranks each, shared memory + TCP ($(since "$t") s)"
else
  bad "train on 2 hosts x 2 ranks: $(tail -5 two-hosts4.log)"
fi
# Each host sums its pair in shared memory, then the hosts add their sums: (g0 + g1) + (g2 + g3), the
# pairwise tree the 4 ranks of one host add in too.
"$compare" one-host4.h5 two-hosts4.h5 0 && ok "2 hosts x 2 ranks = 1 host x 4 ranks, bit for bit" \
  || bad "2 hosts x 2 ranks differs from 1 host x 4 ranks"
mn_mpirun 60 2 "$h1" "$h2" -- "$trainer" "${args[@]/--quiet/--max-steps=1}" --checkpoint one-step.h5 \
  >one-step.log 2>&1
grep -q '4 x 1 thread (gradients through node-shared memory)' one-step.log \
  && ok "2 ranks a host: node-shared memory within each host" || bad "exchange: $(grep Ranks one-step.log)"
mn_end

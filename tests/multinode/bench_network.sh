#!/usr/bin/env bash
# bench_network.sh BUILD_DIR [OUT_DIR]: what the network costs the trainer (a benchmark, not a test; 5-8 min).
# On two simulated hosts (cluster-up.sh), with each host's link as it is (a veth pair) and limited by
# `tc qdisc ... tbf` to 10 Gbit/s and 1 Gbit/s:
#  - one TCP stream without MPI (tcp_throughput.py, when python3 is there): what the link carries;
#  - all-reduce time against message size (BUILD_DIR/tests/allreduce_bench, 1 rank per host, TCP), and on
#    one host through shared memory for comparison;
#  - `trainer bench` across the 2 hosts: the all-reduce share of a step, for the three presets;
#  - `trainer bench` on 1 rank: the compute time per image;
# then fits t = a + n*b to each curve and writes the projection of tests/multinode/project.awk.
# Results go to OUT_DIR (default ./bench-network): allreduce-LINK.txt, bench-*.txt, fit.txt, projection.md.
# Needs root. Other load on the machine shows in the numbers: run it on a quiet one.
set -u
build=$(cd "${1:?usage: bench_network.sh BUILD_DIR [OUT_DIR]}" && pwd)
out=${2:-bench-network}
mkdir -p "$out"
out=$(cd "$out" && pwd)
trainer=$build/trainer/trainer ar=$build/tests/allreduce_bench
[ -x "$trainer" ] && [ -x "$ar" ] || { echo "bench_network: build $build first (trainer, allreduce_bench)" >&2; exit 2; }
. "$(dirname "$0")/lib.sh"
mn_begin 1200 2
h1=${MN_HOST[0]} h2=${MN_HOST[1]}
max=$((16 << 20))
cores=$(nproc)
presets="cifar10-cnn fashion-cnn gap-cnn"

# link RATE: limits both hosts' egress to RATE (a tc rate, e.g. 1gbit), or lifts the limit (none). The
# bucket (256 kB at 1 Gbit/s, 1 MB at 10 Gbit/s: about 1-2 ms at the rate; a smaller one costs a single TCP
# stream 5-10% of the rate) lets messages up to its size pass at the veth's own speed: the fits use 1 MiB
# and more.
link() {
  local h burst
  for h in "$h1" "$h2"; do
    ip netns exec "$h" tc qdisc del dev eth0 root 2>/dev/null
    [ "$1" = none ] && continue
    case $1 in 10gbit) burst=1mb ;; *) burst=256kb ;; esac
    ip netns exec "$h" tc qdisc add dev eth0 root tbf rate "$1" burst "$burst" latency 100ms || return 1
  done
}

# What each link carries without MPI: one TCP stream (needs python3; skipped without it).
if command -v python3 >/dev/null; then
  for rate in none 10gbit 1gbit; do
    link "$rate" || continue
    timeout 60 ip netns exec "$h2" python3 "$mn_here/tcp_throughput.py" recv "${MN_NET%.0/24}.2" \
      >"$out/tcp-$rate.recv" 2>&1 &
    receiver=$!
    sleep 0.5
    echo "$rate $(ip netns exec "$h1" timeout 60 python3 "$mn_here/tcp_throughput.py" send "${MN_NET%.0/24}.2")" \
      | tee -a "$out/tcp.txt"
    wait "$receiver"
  done
  link none
fi

# merge FILES...: per size, the lowest median and the lowest minimum of several passes, the repetitions summed.
merge() {
  awk '/^#/ { if (!h++) print; next }
       { if (!($1 in md) || $2 < md[$1]) md[$1] = $2; if (!($1 in mn) || $3 < mn[$1]) mn[$1] = $3; r[$1] += $4
         if (!($1 in seen)) { seen[$1] = 1; order[++k] = $1 } }
       END { for (i = 1; i <= k; i++) print order[i], md[order[i]], mn[order[i]], r[order[i]] }' "$@"
}
# AR_PASSES (default 2) runs of allreduce_bench per link, a few minutes apart, so that a quiet spell of the
# machine shows in the minima.
passes=${AR_PASSES:-2}
for pass in $(seq "$passes"); do
  say "all-reduce on one host (shared memory), pass $pass"
  timeout 300 mpirun -np 2 --bind-to none "$ar" "$max" 1.5 >"$out/allreduce-shm.$pass" 2>&1
  for rate in none 10gbit 1gbit; do
    link "$rate" || { echo "tc tbf $rate failed"; continue; }
    name=$([ "$rate" = none ] && echo veth || echo "$rate")
    say "all-reduce across 2 hosts, link $name, pass $pass"
    TRAINER_BTL=tcp,self mn_mpirun 300 1 "$h1" "$h2" -- "$ar" "$max" 1.5 >"$out/allreduce-$name.$pass" \
      2>"$out/allreduce-$name.err"
  done
done
for name in shm veth 10gbit 1gbit; do merge "$out/allreduce-$name".[0-9]* >"$out/allreduce-$name.txt"; done
for rate in none 10gbit 1gbit; do
  link "$rate" || { echo "tc tbf $rate failed"; continue; }
  name=$([ "$rate" = none ] && echo veth || echo "$rate")
  for m in $presets; do
    say "trainer bench $m across 2 hosts, link $name (1 thread per rank, 32 images per rank)"
    TRAINER_BTL=tcp,self mn_mpirun 300 1 "$h1" "$h2" -- "$trainer" bench --model "$m" --batch-size 64 \
      --steps 30 --repeats 3 --threads 1 --no-peak >"$out/bench-2hosts-$name-$m.txt" 2>&1
  done
done
link none
for m in $presets; do
  for t in 1 "$cores"; do
    say "trainer bench $m, 1 rank, $t threads"
    timeout 300 "$trainer" bench --model "$m" --batch-size 64 --steps 20 --repeats 7 --threads "$t" --no-peak \
      >"$out/bench-1rank-${t}t-$m.txt" 2>&1
  done
done

# Fits (tests/multinode/fit.awk).
for f in "$out"/allreduce-*.txt; do
  awk -v name="$(basename "$f" .txt | sed 's/allreduce-//')" -f "$mn_here/fit.awk" "$f"
done | tee "$out/fit.txt"
# compute MODEL PARAMS THREADS IMG_PER_S / share MODEL LINK SHARE% ALLREDUCE_MS IMG_PER_S
for m in $presets; do
  # The best repeat: the one least slowed down by other load on the machine.
  for t in 1 "$cores"; do
    f=$out/bench-1rank-${t}t-$m.txt
    echo "compute $m $(sed -n 's/^bench: model [^,]*, \([0-9]*\) parameters.*/\1/p' "$f") $t $(awk '/^repeats \(img\/s\):/ { for (i = 3; i <= NF; i++) if ($i > b) b = $i; print b }' "$f")"
  done
  for name in veth 10gbit 1gbit; do
    f=$out/bench-2hosts-$name-$m.txt
    echo "share $m $name $(sed -n 's/^all-reduce share: *//p' "$f") $(awk '$1 == "all-reduce" && $2 + 0 == $2 { print $2; exit }' "$f") $(tail -1 "$f" | awk '{print $2}')"
  done
done | tee "$out/summary.txt"
awk -f "$mn_here/project.awk" "$out/fit.txt" "$out/summary.txt" $([ -s "$out/tcp.txt" ] && echo "$out/tcp.txt") | tee "$out/projection.md"
echo "results in $out"
ok "benchmark ran"
mn_end
